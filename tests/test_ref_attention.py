"""Scaled dot-product attention: reference kernels and autograd Function against torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv.kernels.reference import attention as A
from fastconv.testing import gradcheck

TOL = {np.float32: 3e-5, np.float64: 1e-12}


def _mask(kind, rng, shape):
    if kind is None or kind == "causal":
        return None
    if kind == "bool":
        m = rng.random(shape) > 0.3
        m[..., 0] = True  # no fully masked rows here (tested separately)
        return m
    m = rng.standard_normal(shape)
    m[..., 1] = -np.inf  # additive -inf masks out a key
    return m


CASES = [  # batch dims, L, S, E, Ev, mask kind, mask shape (None: full scores shape)
    ((2, 3), 4, 6, 5, 3, None, None),
    ((2,), 5, 5, 4, 4, "causal", None),
    ((1, 2), 6, 3, 4, 2, "causal", None),  # L > S
    ((2, 3), 3, 7, 4, 5, "causal", None),  # L < S
    ((2, 3), 4, 6, 5, 3, "bool", (4, 6)),  # broadcast over batch and heads
    ((2, 3), 4, 6, 5, 3, "bool", (2, 1, 4, 6)),
    ((2, 3), 4, 6, 5, 3, "float", (3, 1, 6)),  # broadcast over queries
    ((), 4, 6, 5, 3, "float", (4, 6)),  # no batch dims
]


def _torch_sdpa(q, k, v, mask, causal, scale, dout):
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tm = None if mask is None else torch.tensor(mask)
    out = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal, scale=scale)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), [t.grad.numpy() for t in (tq, tk, tv)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,L,S,E,Ev,kind,mshape", CASES)
@pytest.mark.parametrize("scale", [None, 0.7])
def test_kernels_match_torch(dtype, batch, L, S, E, Ev, kind, mshape, scale, rng):
    q, k, v = (rng.standard_normal(batch + s).astype(dtype) for s in ((L, E), (S, E), (S, Ev)))
    mask = _mask(kind, rng, mshape or batch + (L, S))
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(dtype)
    causal = kind == "causal"
    dout = rng.standard_normal(batch + (L, Ev)).astype(dtype)
    ref_out, ref_grads = _torch_sdpa(q, k, v, mask, causal, scale, dout)
    out, lse = A.scaled_dot_product_attention_forward(q, k, v, mask, scale, causal)
    assert out.dtype == dtype and lse.shape == batch + (L,)
    np.testing.assert_allclose(out, ref_out, rtol=TOL[dtype], atol=TOL[dtype])
    grads = A.scaled_dot_product_attention_backward(dout, q, k, v, out, lse, mask, scale, causal)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=TOL[dtype], atol=TOL[dtype])
    # lse is the log-sum-exp of the masked, scaled scores
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) * (scale or 1 / np.sqrt(E))
    if causal:
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    elif mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    np.testing.assert_allclose(lse, np.log(np.exp(s).sum(-1)), rtol=TOL[dtype] * 10)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zero_like_torch(kind, rng):
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 2))
    mask = np.ones((3, 5), bool) if kind == "bool" else np.zeros((3, 5))
    if kind == "bool":
        mask[1] = False
    else:
        mask[1] = -np.inf
    dout = rng.standard_normal((2, 3, 2))
    ref_out, ref_grads = _torch_sdpa(q, k, v, mask, False, None, dout)
    with np.errstate(all="raise"):  # no hidden invalid operations either
        out, lse = A.scaled_dot_product_attention_forward(q, k, v, mask, None, False)
        grads = A.scaled_dot_product_attention_backward(dout, q, k, v, out, lse, mask, None, False)
    assert np.all(out[:, 1] == 0) and np.all(np.isneginf(lse[:, 1])) and np.isfinite(out).all()
    np.testing.assert_allclose(out, ref_out, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=1e-12)
        assert np.isfinite(g).all()


def test_nan_propagates(rng):
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    q[1, 0] = np.nan
    out, _ = A.scaled_dot_product_attention_forward(q, k, v, None, None, False)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    # NaN in a value column spreads down that column even through masked keys (0 * NaN), as in torch
    v[2, 0] = np.nan
    q = rng.standard_normal((3, 4))
    out, _ = A.scaled_dot_product_attention_forward(q, k, v, None, None, True)
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1]).all()
    ref = TF.scaled_dot_product_attention(*(torch.tensor(a) for a in (q, k, v)), is_causal=True).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_empty_batch():
    q, k, v = np.zeros((0, 2, 3, 4)), np.zeros((0, 2, 5, 4)), np.zeros((0, 2, 5, 6))
    out, lse = A.scaled_dot_product_attention_forward(q, k, v, None, None, False)
    assert out.shape == (0, 2, 3, 6) and lse.shape == (0, 2, 3)
    dq, dk, dv = A.scaled_dot_product_attention_backward(np.zeros_like(out), q, k, v, out, lse, None, None, False)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


@pytest.mark.parametrize("kind", [None, "causal", "bool", "float"])
def test_functional_matches_torch_and_gradcheck(kind, rng):
    B, L, S, E, Ev = (2, 2), 3, 4, 3, 2
    q, k, v = (rng.standard_normal(B + s) for s in ((L, E), (S, E), (S, Ev)))
    mask = _mask(kind, rng, (L, S))
    causal = kind == "causal"
    fq, fk, fv = (fc.Tensor(a.copy(), requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(fq, fk, fv, attn_mask=None if mask is None else fc.Tensor(mask),
                                         is_causal=causal)
    dout = rng.standard_normal(out.shape)
    (out * fc.Tensor(dout)).sum().backward()
    ref_out, ref_grads = _torch_sdpa(q, k, v, mask, causal, None, dout)
    np.testing.assert_allclose(out.data, ref_out, atol=1e-12)
    for t, r in zip((fq, fk, fv), ref_grads):
        np.testing.assert_allclose(t.grad, r, atol=1e-12)
    T = lambda a: fc.Tensor(a[:1, :1].copy(), requires_grad=True)  # noqa: E731  (small for finite differences)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask, is_causal=causal),
                     [T(q), T(k), T(v)])


def test_bad_inputs():
    q, k, v = np.ones((2, 3, 4)), np.ones((2, 5, 4)), np.ones((2, 5, 6))
    fwd = A.scaled_dot_product_attention_forward
    with pytest.raises(ValueError, match="embedding size of q"):
        fwd(q, np.ones((2, 5, 3)), v, None, None, False)
    with pytest.raises(ValueError, match="sequence length of k"):
        fwd(q, k, np.ones((2, 4, 6)), None, None, False)
    with pytest.raises(ValueError, match="leading dimensions"):
        fwd(q, np.ones((3, 5, 4)), np.ones((3, 5, 6)), None, None, False)
    with pytest.raises(ValueError, match="'mask' shape .* not broadcastable"):
        fwd(q, k, v, np.ones((3, 4), bool), None, False)
    with pytest.raises(ValueError, match="'mask' shape .* not broadcastable"):
        fwd(q, k, v, np.ones((4, 2, 3, 5), bool), None, False)  # would enlarge the batch
    with pytest.raises(TypeError, match="'mask' must be bool or float64"):
        fwd(q, k, v, np.ones((3, 5), np.float32), None, False)
    with pytest.raises(ValueError, match="together with is_causal"):
        fwd(q, k, v, np.ones((3, 5), bool), None, True)
    with pytest.raises(TypeError, match="mixed dtypes"):
        fwd(q.astype(np.float32), k, v, None, None, False)
    with pytest.raises(ValueError, match="'q' must have at least 2 dimensions"):
        fwd(np.ones(4), k, v, None, None, False)
    with pytest.raises(ValueError, match="'lse' shape"):
        A.scaled_dot_product_attention_backward(np.ones((2, 3, 6)), q, k, v, np.ones((2, 3, 6)), np.ones((2, 4)),
                                                None, None, False)
    with pytest.raises(ValueError, match="dropout_p=0.1 is not supported"):
        F.scaled_dot_product_attention(fc.Tensor(q), fc.Tensor(k), fc.Tensor(v), dropout_p=0.1)
