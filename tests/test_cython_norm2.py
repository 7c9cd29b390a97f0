"""Cython layer norm and dropout against PyTorch and the reference, forward and backward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv
from fastconv import dispatch
from fastconv.kernels import reference as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")


def K():
    return dispatch.load("cython")


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@pytest.fixture
def threads():
    old = fastconv.get_num_threads()
    yield fastconv.set_num_threads
    fastconv.set_num_threads(old)


# ---- layer norm ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ns", [((4, 7, 10), (10,)), ((3, 5, 6), (5, 6)), ((2, 33), 33), ((5, 2), (2,))])
@pytest.mark.parametrize("affine", ["both", "gamma", "beta", "none"])
def test_layer_norm_matches_torch(dtype, shape, ns, affine):
    rng = np.random.default_rng(len(shape) + shape[-1])
    nst = (ns,) if isinstance(ns, int) else ns
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    g = rng.standard_normal(nst).astype(dtype) if affine in ("both", "gamma") else None
    b = rng.standard_normal(nst).astype(dtype) if affine in ("both", "beta") else None
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tg = torch.from_numpy(g.copy()).requires_grad_(True) if g is not None else None
    tb = torch.from_numpy(b.copy()).requires_grad_(True) if b is not None else None
    ty = TF.layer_norm(tx, nst, tg, tb, 1e-5)
    y, mean, rstd = K().layer_norm_forward(x, ns, g, b, 1e-5)
    tol = 3e-6 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and rel(y, ty.detach().numpy()) < tol
    ry, rm, rr = R.layer_norm_forward(x, ns, g, b, 1e-5)
    assert mean.shape == rm.shape and rel(mean, rm) < tol and rel(rstd, rr) < tol and rel(y, ry) < tol
    dy = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx, dg, db = K().layer_norm_backward(dy, x, ns, g, mean, rstd)
    # dx cancels to ~0 for a single normalized element: measure against the size of dy * gamma * rstd
    scale = np.linalg.norm(dy) * float(np.abs(rstd).max()) * (float(np.abs(g).max()) if g is not None else 1.0)
    assert np.linalg.norm(dx - tx.grad.numpy()) <= 10 * tol * max(np.linalg.norm(tx.grad.numpy()), scale)
    if g is None:
        assert dg is None and db is None
    else:
        assert dg.shape == nst and rel(dg, tg.grad.numpy()) < 10 * tol
        tdb = tb.grad.numpy() if b is not None else dy.reshape(-1, *nst).sum(axis=0)
        assert rel(db, tdb) < 10 * tol
    rdx, rdg, rdb = R.layer_norm_backward(dy, x, ns, g, mean, rstd)
    assert np.linalg.norm(dx - rdx) <= 10 * tol * max(np.linalg.norm(rdx), scale)


def test_layer_norm_large_offset_and_threads(threads):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 128)) + 1e4).astype(np.float32)
    g = rng.standard_normal(128).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ty = TF.layer_norm(torch.from_numpy(x.astype(np.float64)), (128,))
    outs = []
    for nt in (1, 2):
        threads(nt)
        y, m, r = K().layer_norm_forward(x, 128, g, None, 1e-5)
        outs.append((y, K().layer_norm_backward(dy, x, 128, g, m, r)))
        assert rel(y / g, ty.numpy()) < 1e-3  # float32 input rounding at 1e4 dominates
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1][0], outs[1][1][0])
    np.testing.assert_allclose(outs[0][1][1], outs[1][1][1], rtol=1e-6)


def test_layer_norm_empty_nan_noncontiguous():
    x = np.zeros((0, 3, 4), np.float32)
    y, m, r = K().layer_norm_forward(x, 4, None, None, 1e-5)
    assert y.shape == x.shape and m.shape == (0, 3, 1)
    dx, dg, db = K().layer_norm_backward(x, x, 4, np.ones(4, np.float32), m, r)
    assert dx.shape == x.shape and dg.shape == (4,) and not dg.any() and not db.any()
    x = np.arange(24, dtype=np.float64).reshape(4, 6)
    x[1, 2] = np.nan
    y, m, r = K().layer_norm_forward(x, 6, None, None, 1e-5)
    assert np.isnan(y[1]).all() and not np.isnan(y[[0, 2, 3]]).any()
    xt = np.random.default_rng(2).standard_normal((6, 4)).T  # non-contiguous
    np.testing.assert_allclose(K().layer_norm_forward(xt, 6, None, None, 1e-5)[0],
                               R.layer_norm_forward(xt, 6, None, None, 1e-5)[0], atol=1e-12)


@pytest.mark.parametrize("call,exc", [
    (lambda k: k.layer_norm_forward([[1.0]], 1, None, None, 1e-5), TypeError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3), np.int64), 3, None, None, 1e-5), TypeError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3)), 4, None, None, 1e-5), ValueError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3)), (), None, None, 1e-5), ValueError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3)), "3", None, None, 1e-5), TypeError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3)), 3, np.ones(4), None, 1e-5), ValueError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3)), 3, np.ones(3, np.float32), None, 1e-5), TypeError),
    (lambda k: k.layer_norm_forward(np.ones((2, 3)), 3, None, None, -1.0), ValueError),
    (lambda k: k.layer_norm_backward(np.ones((2, 3)), np.ones((2, 4)), 3, None, np.ones((2, 1)), np.ones((2, 1))),
     ValueError),
    (lambda k: k.layer_norm_backward(np.ones((2, 3)), np.ones((2, 3)), 3, None, np.ones((2,)), np.ones((2, 1))),
     ValueError),
    (lambda k: k.layer_norm_backward(np.ones((2, 3)), np.ones((2, 3)), 3, None, np.ones((2, 1), np.float32),
                                     np.ones((2, 1))), TypeError),
])
def test_layer_norm_bad_inputs(call, exc):
    with pytest.raises(exc, match="layer_norm"):
        call(K())


# ---- dropout ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_deterministic_across_threads(dtype, threads):
    x = np.random.default_rng(3).standard_normal((257, 301)).astype(dtype)
    masks = []
    for nt in (1, 2, 1):
        threads(nt)
        y, mask = K().dropout_forward(x, 0.3, 1234)
        assert mask.dtype == dtype
        np.testing.assert_array_equal(y, x * mask)
        masks.append(mask)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])
    assert not np.array_equal(masks[0], K().dropout_forward(x, 0.3, 1235)[1])
    # backward: the reference's dy * mask (dispatch falls through)
    dy = np.ones_like(x)
    with dispatch.use_backend("cython"):
        name, fn = dispatch.resolve("dropout_backward", "cpu")
        np.testing.assert_array_equal(fn(dy, masks[0]), masks[0])
    assert name == "reference"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keep_rate_and_values(p):
    n = 200_000
    x = np.ones(n, np.float32)
    y, mask = K().dropout_forward(x, p, 7)
    keep = mask != 0
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(keep.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_allclose(mask[keep], np.float32(1 / (1 - p)))
    # neighbouring elements are not correlated (a hash of the index, not a short-period sequence)
    k = keep.astype(np.float64) - keep.mean()
    assert abs((k[1:] * k[:-1]).mean()) / keep.var() < 0.02
    # statistics of dropout through torch have the same expectation: E[y] = x
    assert abs(y.astype(np.float64).mean() - 1) < 5 * np.sqrt(p / (1 - p) / n)


def test_dropout_edges():
    x = np.array([[1.0, np.nan, -2.0]], np.float64)
    y, m = K().dropout_forward(x, 0.0, 0)
    np.testing.assert_array_equal(m, np.ones_like(x))
    assert np.isnan(y[0, 1])
    y, m = K().dropout_forward(x, 1.0, 0)
    assert not m.any()
    y, m = K().dropout_forward(np.zeros((0, 5), np.float32), 0.5, 0)
    assert y.shape == (0, 5) and m.shape == (0, 5)
    y, m = K().dropout_forward(x, 0.5, 2**64 - 1)  # largest seed accepted
    assert set(np.unique(m)) <= {0.0, 2.0}


@pytest.mark.parametrize("args,exc", [
    (([1.0], 0.5, 0), TypeError),
    ((np.ones(3), 1.5, 0), ValueError),
    ((np.ones(3), -0.1, 0), ValueError),
    ((np.ones(3), 0.5, -1), ValueError),
    ((np.ones(3), 0.5, 1.5), TypeError),
    ((np.ones(3, np.int32), 0.5, 0), TypeError),
])
def test_dropout_bad_inputs(args, exc):
    with pytest.raises(exc, match="dropout_forward"):
        K().dropout_forward(*args)
