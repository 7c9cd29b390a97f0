"""Blocked CPU attention (kernels/cython/attention.py) against torch and the reference, forward and backward."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv
from fastconv import dispatch
from fastconv.kernels.cython import attention as A
from fastconv.kernels.reference import attention as R

TOL = {np.float32: 3e-5, np.float64: 1e-12}


def _mask(kind, rng, shape):
    if kind is None or kind == "causal":
        return None
    if kind == "bool":
        m = rng.random(shape) > 0.3
        m[..., 0] = True
        return m
    m = rng.standard_normal(shape)
    m[..., 1] = -np.inf
    return m


CASES = [  # batch dims, L, S, E, Ev, mask kind, mask shape
    ((2, 3), 4, 6, 5, 3, None, None),
    ((2,), 9, 9, 4, 4, "causal", None),
    ((1, 2), 6, 3, 4, 2, "causal", None),
    ((2, 3), 3, 7, 4, 5, "causal", None),
    ((2, 3), 4, 6, 5, 3, "bool", (4, 6)),
    ((2, 3), 5, 6, 5, 3, "bool", (2, 1, 5, 6)),  # leading dims that cannot merge into one view
    ((2, 3), 4, 6, 5, 3, "float", (3, 1, 6)),
    ((), 7, 6, 5, 3, "float", (7, 6)),
]


@pytest.fixture(params=[1 << 17, 7], ids=["one-block", "many-blocks"])
def block(request, monkeypatch):
    """Run each case with the default block size and with tiny blocks (many blocks, ragged last one)."""
    monkeypatch.setattr(A, "BLOCK", request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,L,S,E,Ev,kind,mshape", CASES)
def test_matches_torch_and_reference(dtype, batch, L, S, E, Ev, kind, mshape, block):
    rng = np.random.default_rng(L * 31 + S)
    q = rng.standard_normal(batch + (L, E)).astype(dtype)
    k = rng.standard_normal(batch + (S, E)).astype(dtype)
    v = rng.standard_normal(batch + (S, Ev)).astype(dtype)
    mask = _mask(kind, rng, mshape)
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(dtype)
    causal = kind == "causal"
    scale = 0.7 if kind == "float" else None
    dout = rng.standard_normal(batch + (L, Ev)).astype(dtype)
    out, lse = A.scaled_dot_product_attention_forward(q, k, v, mask, scale, causal)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tm = None if mask is None else torch.tensor(mask)
    tout = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal, scale=scale)
    tout.backward(torch.tensor(dout))
    tol = TOL[dtype]
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    rout, rlse = R.scaled_dot_product_attention_forward(q, k, v, mask, scale, causal)
    np.testing.assert_allclose(lse, rlse, rtol=tol, atol=tol)
    assert out.dtype == dtype and lse.dtype == dtype and lse.shape == batch + (L,)
    grads = A.scaled_dot_product_attention_backward(dout, q, k, v, out, lse, mask, scale, causal)
    ref = R.scaled_dot_product_attention_backward(dout, q, k, v, rout, rlse, mask, scale, causal)
    for g, t, r in zip(grads, (tq, tk, tv), ref):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=10 * tol, atol=10 * tol)
        np.testing.assert_allclose(g, r, rtol=10 * tol, atol=10 * tol)


def test_fully_masked_rows_nan_and_empty(block):
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    mask = np.ones((4, 5), bool)
    mask[2] = False
    out, lse = A.scaled_dot_product_attention_forward(q, k, v, mask, None, False)
    assert (out[:, 2] == 0).all() and np.isneginf(lse[:, 2]).all() and np.isfinite(out).all()
    dq, dk, dv = A.scaled_dot_product_attention_backward(np.ones_like(out), q, k, v, out, lse, mask, None, False)
    assert (dq[:, 2] == 0).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    q2 = q.copy()
    q2[1, 3, 0] = np.nan
    out, lse = A.scaled_dot_product_attention_forward(q2, k, v, None, None, False)
    assert np.isnan(out[1, 3]).all() and np.isnan(lse[1, 3]) and np.isfinite(out[0]).all()
    for shapes in (((0, 4, 3), (0, 5, 3), (0, 5, 2)), ((2, 0, 3), (2, 5, 3), (2, 5, 2))):
        qe, ke, ve = (np.zeros(s) for s in shapes)
        out, lse = A.scaled_dot_product_attention_forward(qe, ke, ve, None, None, False)
        assert out.shape == shapes[0][:2] + (2,) and lse.shape == shapes[0][:2]
        grads = A.scaled_dot_product_attention_backward(out, qe, ke, ve, out, lse, None, None, False)
        assert [g.shape for g in grads] == [s for s in shapes]
    out, lse = A.scaled_dot_product_attention_forward(q, np.zeros((2, 0, 3)), np.zeros((2, 0, 2)), None, None, False)
    assert (out == 0).all() and np.isneginf(lse).all()


def test_memory_is_blocked(monkeypatch):
    """No score array larger than one block is ever built (the NumPy path, taken with a mask;
    the compiled no-mask path keeps one block of LB_ELEMS scores per thread)."""
    seen = []
    real = A._block_scores

    def spy(*a):
        s, kend = real(*a)
        seen.append(s.size)
        return s, kend

    monkeypatch.setattr(A, "_block_scores", spy)
    monkeypatch.setattr(A, "BLOCK", 4096)
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((3, 200, 8)).astype(np.float32) for _ in range(3))
    mask = np.tril(np.ones((200, 200), bool))  # causal, as a mask: the NumPy path
    out, lse = A.scaled_dot_product_attention_forward(q, k, v, mask, None, False)
    A.scaled_dot_product_attention_backward(out, q, k, v, out, lse, mask, None, False)
    assert max(seen) <= 4096 and len(seen) >= 2 * 200 // (4096 // 200)


def test_registered_for_dispatch():
    if not dispatch.available("cython")[0]:
        pytest.skip("Cython extension not built")
    assert dispatch.load("cython").scaled_dot_product_attention_forward is A.scaled_dot_product_attention_forward


@pytest.mark.parametrize("args,exc", [
    ((np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3), np.float32), None, None, False), TypeError),
    ((np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 3)), None, None, False), ValueError),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((5, 3)), None, None, False), ValueError),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 3)), np.ones((3, 4), bool), None, False), ValueError),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 3)), np.ones((2, 4), np.float32), None, False), TypeError),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 3)), np.ones((2, 4), bool), None, True), ValueError),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 3)), None, None, 1), TypeError),
    ((np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 3)), None, "x", False), TypeError),
    (([[1.0]], np.ones((4, 3)), np.ones((4, 3)), None, None, False), TypeError),
    ((np.ones(3), np.ones((4, 3)), np.ones((4, 3)), None, None, False), ValueError),
])
def test_bad_inputs(args, exc):
    with pytest.raises(exc, match="scaled_dot_product_attention_forward"):
        A.scaled_dot_product_attention_forward(*args)


def test_backward_bad_inputs():
    q, k, v = np.ones((2, 3)), np.ones((4, 3)), np.ones((4, 2))
    out, lse = A.scaled_dot_product_attention_forward(q, k, v, None, None, False)
    with pytest.raises(ValueError, match="lse"):
        A.scaled_dot_product_attention_backward(out, q, k, v, out, lse[:1], None, None, False)
    with pytest.raises(ValueError, match="out"):
        A.scaled_dot_product_attention_backward(out[:, :1], q, k, v, out[:, :1], lse, None, None, False)
    with pytest.raises(TypeError, match="backward"):
        A.scaled_dot_product_attention_backward(out.astype(np.float32), q, k, v, out, lse, None, None, False)


@pytest.mark.parametrize("lb", [None, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_compiled_forward_blocks_and_threads(dtype, causal, lb, monkeypatch):
    """The compiled no-mask forward and backward (_attn.pyx, blocks of query rows over OpenMP
    threads) against the reference: L below, at and past a block (and L > S for causal), odd
    E / Ev, 1-3 threads."""
    from fastconv.kernels.reference import attention as RA
    AT = pytest.importorskip("fastconv.kernels.cython._attn")
    assert A._attn is AT
    if lb:
        monkeypatch.setattr(AT, "LB", lb)
        monkeypatch.setattr(AT, "LB_CAUSAL", lb)
    rng = np.random.default_rng(5)
    prev = fastconv.get_num_threads()
    try:
        for nt in (1, 2, 3):
            fastconv.set_num_threads(nt)
            for L, S in ((1, 1), (63, 70), (64, 64), (65, 9), (130, 131)):
                q = rng.standard_normal((2, 3, L, 5)).astype(dtype)
                k = rng.standard_normal((2, 3, S, 5)).astype(dtype)
                v = rng.standard_normal((2, 3, S, 7)).astype(dtype)
                out, lse = A.scaled_dot_product_attention_forward(q, k, v, None, 0.3, causal)
                rout, rlse = RA.scaled_dot_product_attention_forward(q, k, v, None, 0.3, causal)
                tol = 1e-5 if dtype == np.float32 else 1e-12
                np.testing.assert_allclose(out, rout, rtol=tol, atol=tol)
                np.testing.assert_allclose(lse, rlse, rtol=tol, atol=tol)
                do = rng.standard_normal(out.shape).astype(dtype)
                got = A.scaled_dot_product_attention_backward(do, q, k, v, out, lse, None, 0.3, causal)
                want = RA.scaled_dot_product_attention_backward(do, q, k, v, rout, rlse, None, 0.3, causal)
                for g, w in zip(got, want):
                    assert g.shape == w.shape and g.dtype == dtype
                    np.testing.assert_allclose(g, w, rtol=10 * tol, atol=10 * tol)
    finally:
        fastconv.set_num_threads(prev)


@pytest.mark.parametrize("causal", [False, True])
def test_compiled_forward_polynomial_exp_extremes(causal):
    """float32 softmax rows use _fast_exp.h's inlined exp: scores spanning ~[-300, 300] (exp
    arguments down to -600: underflow, denormals, 0), row lengths off the SIMD width, and a NaN
    key (every row that sees it turns NaN) against the float64 reference."""
    from fastconv.kernels.reference import attention as RA
    pytest.importorskip("fastconv.kernels.cython._attn")
    rng = np.random.default_rng(11)
    for S in (1, 17, 33, 100):
        q = rng.standard_normal((3, 21, 8)).astype(np.float32)
        k = rng.standard_normal((3, S, 8)).astype(np.float32)
        v = rng.standard_normal((3, S, 4)).astype(np.float32)
        out, lse = A.scaled_dot_product_attention_forward(q, k, v, None, 40.0, causal)
        rout, rlse = RA.scaled_dot_product_attention_forward(*(a.astype(np.float64) for a in (q, k, v)), None, 40.0,
                                                             causal)
        np.testing.assert_allclose(out, rout, rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(lse, rlse, rtol=2e-5, atol=2e-4)
        k[1, S // 2, 3] = np.nan
        out, lse = A.scaled_dot_product_attention_forward(q, k, v, None, 40.0, causal)
        seen = np.arange(21) >= S // 2 if causal else np.ones(21, bool)
        assert np.isnan(out[1][seen]).all() and np.isnan(lse[1][seen]).all()
        assert np.isfinite(out[1][~seen]).all() and np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mm", [True, False])
def test_compiled_unpacked_gemm(mm, causal, monkeypatch):
    """float32 on AVX-512 CPUs: the GEMMs in fa_mm_f32 (8x32 register tiles; forward without a
    causal mask, backward both ways; the scale folded into the transposed keys, p^T and ds^T read
    through strides) instead of OpenBLAS (mm=False).  Full and partial tiles in every dimension
    (E, Ev, S up to 2 tiles + tail; L not a multiple of 8 or of a block), 1 and 2 threads,
    against the float64 reference."""
    from fastconv.kernels.reference import attention as RA
    AT = pytest.importorskip("fastconv.kernels.cython._attn")
    monkeypatch.setattr(AT, "MM", mm)
    rng = np.random.default_rng(12)
    prev = fastconv.get_num_threads()
    try:
        for nt, (B, L, S, E, Ev, lb) in itertools.product((1, 2), ((3, 70, 77, 64, 40, None), (2, 33, 96, 33, 64, 16),
                                                                     (1, 1, 1, 1, 1, None), (2, 9, 31, 16, 32, 8))):
            fastconv.set_num_threads(nt)
            monkeypatch.setattr(AT, "LB", lb or 256)
            monkeypatch.setattr(AT, "LB_CAUSAL", lb or 32)
            q = rng.standard_normal((B, L, E)).astype(np.float32)
            k = rng.standard_normal((B, S, E)).astype(np.float32)
            v = rng.standard_normal((B, S, Ev)).astype(np.float32)
            out, lse = A.scaled_dot_product_attention_forward(q, k, v, None, None, causal)
            r64 = [a.astype(np.float64) for a in (q, k, v)]
            rout, rlse = RA.scaled_dot_product_attention_forward(*r64, None, None, causal)
            np.testing.assert_allclose(out, rout, rtol=2e-5, atol=2e-5)
            np.testing.assert_allclose(lse, rlse, rtol=2e-5, atol=2e-5)
            do = rng.standard_normal(out.shape).astype(np.float32)
            got = A.scaled_dot_product_attention_backward(do, q, k, v, out, lse, None, None, causal)
            want = RA.scaled_dot_product_attention_backward(do.astype(np.float64), *r64, rout, rlse, None, None, causal)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)
    finally:
        fastconv.set_num_threads(prev)
