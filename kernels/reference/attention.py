"""Scaled dot-product attention: forward and backward side by side.

    scores = q k^T * scale + mask          (..., L, S)
    out    = softmax(scores, axis=-1) v    (..., L, Ev)
    lse    = logsumexp(scores, axis=-1)    (..., L)

q (..., L, E), k (..., S, E), v (..., S, Ev) share their leading (batch, head)
dimensions.  ``mask`` is None, a bool array (True = attend) or an additive
float array of q's dtype, broadcastable to (..., L, S).  ``is_causal`` applies
PyTorch's top-left aligned causal mask (query i attends keys j <= i) and may
not be combined with an explicit mask.  ``scale`` None means 1/sqrt(E).

Fully masked rows (every key masked out) follow PyTorch (>= 2.5): their output
is 0, their lse is -inf and they contribute no gradient -- no NaN appears.
NaN in q, k or v (or in a float mask) still propagates to the output.

The backward never re-normalises: it rebuilds the probabilities as
exp(scores - lse) from the forward's lse.
"""
import math

import numpy as np

from .. import _checks as C
from ._util import xp_of

__all__ = ["scaled_dot_product_attention_forward", "scaled_dot_product_attention_backward"]


def _check(op, q, k, v, mask, scale, is_causal):
    q = C.array(op, "q", q, min_ndim=2)
    k = C.array(op, "k", k, min_ndim=2)
    v = C.array(op, "v", v, min_ndim=2)
    C.same_dtype(op, q=q, k=k, v=v)
    C.same_device(op, q=q, k=k, v=v, mask=mask)
    if not (q.ndim == k.ndim == v.ndim) or q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"{op}: q, k, v must share their leading dimensions; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: embedding size of q {tuple(q.shape)} does not match k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: sequence length of k {tuple(k.shape)} does not match v {tuple(v.shape)}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"{op}: argument 'is_causal' must be a bool, got {is_causal!r}")
    scores_shape = q.shape[:-1] + (k.shape[-2],)
    if mask is not None:
        mask = C.array(op, "mask", mask, dtypes=None)
        if mask.dtype.kind != "b" and mask.dtype != q.dtype:
            raise TypeError(f"{op}: argument 'mask' must be bool or {q.dtype} like q, got {mask.dtype}")
        if is_causal:
            raise ValueError(f"{op}: an explicit 'mask' must not be given together with is_causal=True")
        try:
            ok = np.broadcast_shapes(tuple(mask.shape), scores_shape) == scores_shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: 'mask' shape {tuple(mask.shape)} is not broadcastable to the scores {scores_shape}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    else:
        scale = C.number(op, "scale", scale)
    return q, k, v, mask, scale


def _scores(xp, q, k, mask, scale, is_causal):
    """Masked, scaled scores (..., L, S)."""
    s = q @ xp.swapaxes(k, -1, -2)
    s *= s.dtype.type(scale)
    L, S = s.shape[-2:]
    if is_causal:
        mask = xp.tril(xp.ones((L, S), dtype=bool))
    if mask is not None:
        if mask.dtype.kind == "b":
            s = xp.where(mask, s, s.dtype.type(-xp.inf))
        else:
            s += mask
    return s


def _probs(xp, s, lse):
    """exp(s - lse); rows with lse = -inf (fully masked) give 0, not NaN."""
    dead = xp.isneginf(lse)[..., None]
    return xp.where(dead, s.dtype.type(0), xp.exp(s - xp.where(dead, s.dtype.type(0), lse[..., None])))


def scaled_dot_product_attention_forward(q, k, v, mask, scale, is_causal):
    """-> (out (..., L, Ev), lse (..., L))."""
    op = "scaled_dot_product_attention_forward"
    q, k, v, mask, scale = _check(op, q, k, v, mask, scale, is_causal)
    xp = xp_of(q)
    s = _scores(xp, q, k, mask, scale, is_causal)
    if s.shape[-1] == 0:  # no keys at all: every row is fully masked
        return xp.zeros(q.shape[:-1] + v.shape[-1:], q.dtype), xp.full(q.shape[:-1], -xp.inf, q.dtype)
    m = s.max(axis=-1)
    m = xp.where(xp.isneginf(m), s.dtype.type(0), m)  # fully masked rows: shift by 0
    p = xp.exp(s - m[..., None])
    denom = p.sum(axis=-1)
    dead = denom == 0  # fully masked rows
    denom = xp.where(dead, s.dtype.type(1), denom)
    lse = xp.where(dead, s.dtype.type(-xp.inf), m + xp.log(denom))
    p /= denom[..., None]
    return p @ v, lse


def scaled_dot_product_attention_backward(dout, q, k, v, out, lse, mask, scale, is_causal):
    """-> (dq, dk, dv).  The probabilities are rebuilt from ``lse``; the mask gets no gradient."""
    op = "scaled_dot_product_attention_backward"
    q, k, v, mask, scale = _check(op, q, k, v, mask, scale, is_causal)
    dout = C.array(op, "dout", dout)
    out = C.array(op, "out", out)
    lse = C.array(op, "lse", lse)
    C.same_dtype(op, q=q, dout=dout, out=out, lse=lse)
    out_shape = q.shape[:-1] + v.shape[-1:]
    C.same_shape(op, "dout", dout, "out", out)
    if tuple(out.shape) != out_shape:
        raise ValueError(f"{op}: 'out' shape {tuple(out.shape)} must be {out_shape}")
    if tuple(lse.shape) != q.shape[:-1]:
        raise ValueError(f"{op}: 'lse' shape {tuple(lse.shape)} must be {q.shape[:-1]}")
    xp = xp_of(q)
    p = _probs(xp, _scores(xp, q, k, mask, scale, is_causal), lse)
    dv = xp.swapaxes(p, -1, -2) @ dout
    dp = dout @ xp.swapaxes(v, -1, -2)
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))  # softmax backward: rowsum(P*dP) = rowsum(dO*O)
    ds *= ds.dtype.type(scale)
    dq = ds @ k
    dk = xp.swapaxes(ds, -1, -2) @ q
    return dq, dk, dv
