"""Cython mse / huber / bce_with_logits (kernels/cython/_loss_reg.pyx) against PyTorch and the reference."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
from fastconv import dispatch
from fastconv.kernels.reference import loss as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")
REDUCTIONS = ("mean", "sum", "none")
DTYPES = (np.float32, np.float64)
SHAPES = [(0, 5), (1,), (7, 13), (3, 5, 37)]  # empty, one element, odd widths (simd tails)


def K():
    return dispatch.load("cython")


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def data(shape, dtype, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    return x, t


def dloss_for(loss, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, np.shape(loss)).astype(loss.dtype)


def torch_run(fn, x, t, dloss, **kw):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    loss = fn(xt, torch.from_numpy(t), **kw)
    loss.backward(torch.from_numpy(np.asarray(dloss)))
    return loss.detach().numpy(), xt.grad.numpy()


# ---- mse / huber ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_pair_matches_torch_and_reference(loss, shape, reduction, dtype):
    x, t = data(shape, dtype)
    k = K()
    if loss == "mse":
        args, tfn, kw = (), TF.mse_loss, {}
    else:
        args, tfn, kw = (0.7,), TF.huber_loss, {"delta": 0.7}
    fwd, bwd = getattr(k, f"{loss}_forward"), getattr(k, f"{loss}_backward")
    y = fwd(x, t, *args, reduction)
    assert y.dtype == dtype and y.shape == (shape if reduction == "none" else ())
    g = dloss_for(y)
    dx = bwd(g, x, t, *args, reduction)
    assert dx.dtype == dtype and dx.shape == x.shape
    ry = getattr(R, f"{loss}_forward")(x, t, *args, reduction)
    rdx = getattr(R, f"{loss}_backward")(g, x, t, *args, reduction)
    np.testing.assert_allclose(y, ry, equal_nan=True, **tol(dtype))
    np.testing.assert_allclose(dx, rdx, **tol(dtype))
    ty, tdx = torch_run(tfn, x, t, g, reduction=reduction, **kw)
    np.testing.assert_allclose(y, ty, equal_nan=True, **tol(dtype))
    np.testing.assert_allclose(dx, tdx, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_huber_both_branches_and_delta(dtype):
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.49, 0.5, 0.51, 2.0, 1e3], dtype)
    t = np.zeros_like(x)
    for delta in (0.5, 1, 2.5):
        for red in REDUCTIONS:
            y = K().huber_forward(x, t, delta, red)
            np.testing.assert_allclose(y, R.huber_forward(x, t, delta, red), **tol(dtype))
            g = dloss_for(y)
            np.testing.assert_allclose(K().huber_backward(g, x, t, delta, red), R.huber_backward(g, x, t, delta, red),
                                       **tol(dtype))


# ---- bce_with_logits --------------------------------------------------------------------------

def bce_data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.random(shape).astype(dtype)
    t[..., ::3] = np.round(t[..., ::3])  # hard labels too
    return x, t


def weight_of(wshape, dtype, seed):
    if wshape is None:
        return None
    return np.random.default_rng(seed).uniform(0.2, 3.0, wshape).astype(dtype)


# (logits shape, weight shape, pos_weight shape): every broadcast pattern the reference accepts
BCE_CASES = [
    ((7, 13), None, None), ((7, 13), (7, 13), None), ((7, 13), None, (13,)), ((7, 13), (13,), (13,)),
    ((7, 13), (7, 1), (1, 13)), ((7, 13), (), (1,)), ((3, 5, 37), (5, 1), (37,)), ((3, 5, 37), (3, 1, 1), None),
    ((3, 5, 37), (5, 37), (3, 5, 37)), ((0, 4), (4,), (4,)), ((1,), (1,), (1,)), ((600,), (600,), ()),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,wshape,pwshape", BCE_CASES)
def test_bce_matches_torch_and_reference(shape, wshape, pwshape, reduction, dtype):
    x, t = bce_data(shape, dtype)
    w, pw = weight_of(wshape, dtype, 2), weight_of(pwshape, dtype, 3)
    k = K()
    y = k.bce_with_logits_forward(x, t, w, pw, reduction)
    assert y.dtype == dtype and y.shape == (shape if reduction == "none" else ())
    g = dloss_for(y)
    dx = k.bce_with_logits_backward(g, x, t, w, pw, reduction)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(y, R.bce_with_logits_forward(x, t, w, pw, reduction), equal_nan=True, **tol(dtype))
    np.testing.assert_allclose(dx, R.bce_with_logits_backward(g, x, t, w, pw, reduction), **tol(dtype))
    tw = None if w is None else torch.from_numpy(w)
    tpw = None if pw is None else torch.from_numpy(pw)
    ty, tdx = torch_run(TF.binary_cross_entropy_with_logits, x, t, g, weight=tw, pos_weight=tpw, reduction=reduction)
    np.testing.assert_allclose(y, ty, equal_nan=True, **tol(dtype))
    np.testing.assert_allclose(dx, tdx, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pos", [False, True])
def test_bce_large_logits_no_overflow(dtype, pos):
    x = np.array([-100.0, -88.5, -30.0, -1e-3, 0.0, 30.0, 88.5, 100.0, 1e4, -1e4], dtype)
    for tv in (0.0, 1.0, 0.3):
        t = np.full_like(x, tv)
        pw = np.full_like(x, 2.5) if pos else None
        with np.errstate(all="raise"):
            y = K().bce_with_logits_forward(x, t, None, pw, "none")
            dx = K().bce_with_logits_backward(np.ones_like(x), x, t, None, pw, "none")
        assert np.isfinite(y).all() and np.isfinite(dx).all()
        ty, tdx = torch_run(TF.binary_cross_entropy_with_logits, x, t, np.ones_like(x), reduction="none",
                            pos_weight=None if pw is None else torch.from_numpy(pw))
        np.testing.assert_allclose(y, ty, **tol(dtype))
        np.testing.assert_allclose(dx, tdx, **tol(dtype))
    # tiny losses keep their relative accuracy (log1p, not log(1 + e))
    y = K().bce_with_logits_forward(np.array([20.0, 30.0], dtype), np.ones(2, dtype), None, None, "none")
    np.testing.assert_allclose(y, np.exp(-np.array([20.0, 30.0])), rtol=1e-5)


# ---- NaN, threads, layout ---------------------------------------------------------------------

CALLS = {
    "mse": (lambda k, x, t, r: k.mse_forward(x, t, r), lambda k, g, x, t, r: k.mse_backward(g, x, t, r)),
    "huber": (lambda k, x, t, r: k.huber_forward(x, t, 1.0, r), lambda k, g, x, t, r: k.huber_backward(g, x, t, 1.0, r)),
    "bce": (lambda k, x, t, r: k.bce_with_logits_forward(x, t, None, None, r),
            lambda k, g, x, t, r: k.bce_with_logits_backward(g, x, t, None, None, r)),
    "bce_w": (lambda k, x, t, r: k.bce_with_logits_forward(x, t, W[x.dtype.type][0], W[x.dtype.type][1], r),
              lambda k, g, x, t, r: k.bce_with_logits_backward(g, x, t, W[x.dtype.type][0], W[x.dtype.type][1], r)),
}
W = {dt: (np.linspace(0.5, 2, 37).astype(dt), np.linspace(3, 1, 37).astype(dt)) for dt in DTYPES}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CALLS))
def test_nan_propagates(name, dtype):
    fwd, bwd = CALLS[name]
    x, t = data((5, 37), dtype)
    x[2, 3] = np.nan
    t[4, 36] = np.nan
    for r in ("mean", "sum"):
        assert np.isnan(fwd(K(), x, t, r))
    y = fwd(K(), x, t, "none")
    assert np.isnan(y[2, 3]) and np.isnan(y[4, 36]) and np.isfinite(np.delete(y.ravel(), [2 * 37 + 3, 4 * 37 + 36])).all()
    dx = bwd(K(), np.ones_like(y), x, t, "none")
    assert np.isnan(dx[2, 3]) and np.isnan(dx[4, 36])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CALLS))
def test_threads_identical(name, dtype):
    fwd, bwd = CALLS[name]
    x, t = data((1001, 37), dtype)  # ~37K elements: 10 reduction blocks, threaded at 2+ threads
    x = np.tile(x, (5, 1))
    t = np.tile(t, (5, 1))
    old = fc.get_num_threads()
    out = {}
    try:
        for nt in (1, 2):
            fc.set_num_threads(nt)
            out[nt] = [fwd(K(), x, t, r) for r in REDUCTIONS]
            out[nt] += [bwd(K(), dloss_for(y), x, t, r) for y, r in zip(out[nt], REDUCTIONS)]
    finally:
        fc.set_num_threads(old)
    for a, b in zip(out[1], out[2]):
        assert a.tobytes() == b.tobytes()
    for y, r in zip(out[1][:3], REDUCTIONS):
        if r != "none":
            np.testing.assert_allclose(y, fwd(R, x, t, r), rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", list(CALLS))
def test_non_contiguous_inputs(name):
    fwd, bwd = CALLS[name]
    x, t = data((5, 74), np.float32)
    xs, ts = x[:, ::2], t[:, ::2]
    for r in REDUCTIONS:
        y = fwd(K(), xs, ts, r)
        np.testing.assert_allclose(y, fwd(R, xs, ts, r), rtol=1e-5, atol=1e-6)
        g = dloss_for(y)
        if r == "none":
            g = np.asfortranarray(g)
        np.testing.assert_allclose(bwd(K(), g, xs, ts, r), bwd(R, g, xs, ts, r), rtol=1e-5, atol=1e-6)


# ---- errors -----------------------------------------------------------------------------------

def test_bad_arguments():
    k = K()
    x, t = data((4, 6), np.float32)
    with pytest.raises(ValueError, match="reduction"):
        k.mse_forward(x, t, "avg")
    with pytest.raises(ValueError, match="reduction"):
        k.bce_with_logits_backward(np.float32(1), x, t, None, None, "max")
    with pytest.raises(ValueError, match="'pred' shape"):
        k.huber_forward(x, t[:, :5], 1.0, "mean")
    with pytest.raises(TypeError, match="mixed dtypes"):
        k.mse_forward(x, t.astype(np.float64), "sum")
    with pytest.raises(TypeError, match="'pred'"):
        k.mse_forward(x.astype(np.int32), t, "sum")
    with pytest.raises(TypeError, match="'logits'"):
        k.bce_with_logits_forward(x.tolist(), t, None, None, "sum")
    with pytest.raises(TypeError, match="'target'"):
        k.bce_with_logits_forward(x, t.astype(np.float16), None, None, "sum")
    for delta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="delta"):
            k.huber_forward(x, t, delta, "mean")
    with pytest.raises(TypeError, match="delta"):
        k.huber_backward(np.float32(1), x, t, "1", "mean")
    with pytest.raises(ValueError, match="'weight' shape"):
        k.bce_with_logits_forward(x, t, np.ones(4, np.float32), None, "mean")
    with pytest.raises(ValueError, match="'pos_weight' shape"):
        k.bce_with_logits_backward(np.float32(1), x, t, None, np.ones((2, 4, 6), np.float32), "mean")
    with pytest.raises(TypeError, match="mixed dtypes"):
        k.bce_with_logits_forward(x, t, np.ones(6), None, "mean")
    with pytest.raises(ValueError, match="'dloss' must have shape"):
        k.mse_backward(np.ones((4, 6), np.float32), x, t, "mean")
    with pytest.raises(ValueError, match="'dloss' must have shape"):
        k.bce_with_logits_backward(np.ones(6, np.float32), x, t, None, None, "none")
    with pytest.raises(TypeError, match="dloss"):
        k.huber_backward(np.float64(1), x, t, 1.0, "sum")
    with pytest.raises(TypeError, match="'dloss'"):
        k.mse_backward(None, x, t, "sum")
