"""Scaled dot-product attention as one autograd Function."""
from ..tensor import Function, Tensor
from ._base import KernelFunction, prepare, tensor_arg

__all__ = ["scaled_dot_product_attention"]


class ScaledDotProductAttention(KernelFunction, Function):
    """(q, k, v, mask) -> out; the mask is not differentiated."""

    def forward(self, q, k, v, mask, scale=None, is_causal=False, backend=None):
        prepare(self, q, backend)
        out, lse = self.k("scaled_dot_product_attention_forward")(q, k, v, mask, scale, is_causal)
        self.scale, self.is_causal = scale, is_causal
        self.save_for_backward(q, k, v, out, lse, mask)
        return out

    def backward(self, dout):
        q, k, v, out, lse, mask = self.saved
        dq, dk, dv = self.k("scaled_dot_product_attention_backward")(
            dout, q, k, v, out, lse, mask, self.scale, self.is_causal)
        return dq, dk, dv, None


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, backend=None):
    """softmax(query key^T * scale + mask) value, like torch.nn.functional.scaled_dot_product_attention.

    query (..., L, E), key (..., S, E), value (..., S, Ev) with the same leading
    dimensions.  ``attn_mask``: None, bool (True = attend) or an additive float
    mask broadcastable to (..., L, S); not combined with ``is_causal``.  Rows whose
    keys are all masked give 0 (and no gradient), as in PyTorch.  Attention
    dropout is not implemented: ``dropout_p`` must be 0.
    """
    op = "scaled_dot_product_attention"
    if dropout_p != 0:
        raise ValueError(f"{op}: dropout_p={dropout_p!r} is not supported (attention dropout is not "
                         "implemented); pass dropout_p=0.0 and apply dropout to the output instead")
    q, k, v = (tensor_arg(n, a, op) for n, a in (("query", query), ("key", key), ("value", value)))
    if isinstance(attn_mask, Tensor):
        attn_mask = attn_mask.data
    return ScaledDotProductAttention.apply(q, k, v, attn_mask, scale=scale, is_causal=is_causal, backend=backend)
