"""Cython softmax / log_softmax / prelu against PyTorch and the reference, forward and backward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from fastconv import dispatch
from fastconv.kernels import reference as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")

TORCH_SM = {"softmax": torch.softmax, "log_softmax": torch.log_softmax}


def _K():
    return dispatch.load("cython")


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)


def _check_sm(name, x, axis, rng):
    K = _K()
    fwd, bwd = getattr(K, name + "_forward"), getattr(K, name + "_backward")
    rfwd, rbwd = getattr(R, name + "_forward"), getattr(R, name + "_backward")
    tol = _tol(x.dtype)
    y = fwd(x, axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_allclose(y, rfwd(x, axis), **tol)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = TORCH_SM[name](tx, axis)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    dy = rng.standard_normal(x.shape).astype(x.dtype)
    dx = bwd(dy, y, axis)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, rbwd(dy, y, axis), **tol)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [
    ((7, 33), -1), ((7, 33), 0), ((3, 5, 17), 1), ((3, 5, 17), -1), ((3, 5, 17), 0),
    ((2, 3, 9, 11), 1), ((2, 3, 9, 11), -1), ((2, 40, 3, 700), 1), ((1000,), 0), ((5, 1), -1),
])
def test_softmax_matches_torch(name, dtype, shape, axis):
    rng = np.random.default_rng(sum(shape) + axis)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    _check_sm(name, x, axis, rng)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_row_lengths(name, dtype):
    """Every row length 1..70 (SIMD tails) on the last axis and a middle axis."""
    rng = np.random.default_rng(5)
    for L in range(1, 71):
        _check_sm(name, (rng.standard_normal((3, L)) * 4).astype(dtype), -1, rng)
        _check_sm(name, (rng.standard_normal((2, L, 3)) * 4).astype(dtype), 1, rng)
    for inner in (15, 16, 17, 513, 1100):  # column blocks and their tails
        _check_sm(name, rng.standard_normal((2, 3, inner)).astype(dtype), 1, rng)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_extreme_values(name, dtype, axis):
    """No overflow (x - max first), -inf entries give 0 / -inf, huge logits keep their differences."""
    K = _K()
    fwd = getattr(K, name + "_forward")
    big = 1e30 if dtype == np.float32 else 1e300
    x = np.array([[big, big - big * 1e-6, 0.0, -big, 1.0, 2.0],
                  [-np.inf, 0.0, 1.0, -np.inf, 3.0, -1.0],
                  [1e-30, -1e-30, 0.0, 88.0, -88.0, 80.0],
                  [1e4, 1e4 + 1, -1e4, 0.5, 1e4 - 2, 3.0]], dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    y = fwd(x, axis)
    want = TORCH_SM[name](torch.from_numpy(x), axis).numpy()
    assert np.isfinite(y).sum() == np.isfinite(want).sum()
    np.testing.assert_allclose(y, want, **_tol(dtype))
    np.testing.assert_allclose(y, getattr(R, name + "_forward")(x, axis), **_tol(dtype))
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(x.shape).astype(dtype)
    bwd = getattr(K, name + "_backward")
    # -inf in a log_softmax output: exp gives 0, dx = dy there
    np.testing.assert_allclose(bwd(dy, y, axis), getattr(R, name + "_backward")(dy, y, axis), **_tol(dtype))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_nan_and_all_inf(name, axis):
    K = _K()
    x = np.array([[1.0, np.nan, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0], [-np.inf] * 4], np.float32)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    y = getattr(K, name + "_forward")(x, axis)
    ref = getattr(R, name + "_forward")
    with np.errstate(invalid="ignore"):
        want = ref(x, axis)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))  # NaN row / all -inf row: NaN
    fin = ~np.isnan(want)
    np.testing.assert_allclose(y[fin], want[fin], rtol=1e-6)
    dy = np.ones_like(x)
    dy[dy.shape[0] // 2] = np.nan
    with np.errstate(invalid="ignore"):
        want_dx = getattr(R, name + "_backward")(dy, y, axis)
    dx = getattr(K, name + "_backward")(dy, y, axis)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(want_dx))


def test_log_softmax_backward_large_y():
    """y > 80 (no log-probability, but must not give garbage): libm's exp, not the fast one."""
    y = np.array([[87.0, 0.0, -3.0, 85.0], [-1.0, -2.0, -0.5, -7.0]], np.float32)
    dy = np.array([[1e-30, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
    for axis in (-1, 0):
        np.testing.assert_allclose(_K().log_softmax_backward(dy, y, axis),
                                   R.log_softmax_backward(dy, y, axis), rtol=1e-5)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_empty_and_bad_input(name):
    K = _K()
    fwd, bwd = getattr(K, name + "_forward"), getattr(K, name + "_backward")
    for shape, axis in (((0, 5), -1), ((0, 5), 0), ((4, 0), 1), ((3, 0, 2), -1)):
        x = np.zeros(shape, np.float32)
        y = fwd(x, axis)
        assert y.shape == shape and y.dtype == np.float32
        assert bwd(x, x, axis).shape == shape
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=f"{name}_forward.*'axis'"):
        fwd(x, 2)
    with pytest.raises(ValueError, match=f"{name}_forward.*'axis'"):
        fwd(x, -3)
    with pytest.raises(TypeError, match=f"{name}_forward.*'axis'"):
        fwd(x, 1.0)
    with pytest.raises(ValueError, match=f"{name}_backward.*'axis'"):
        bwd(x, x, 5)
    with pytest.raises(TypeError, match=f"{name}_forward.*'x'.*int64"):
        fwd(np.ones((2, 3), np.int64), -1)
    with pytest.raises(TypeError, match=f"{name}_forward.*'x'.*float16"):
        fwd(np.ones((2, 3), np.float16), -1)
    with pytest.raises(TypeError, match=f"{name}_forward.*'x'"):
        fwd([[1.0, 2.0]], -1)
    with pytest.raises(ValueError, match=f"{name}_forward.*'x'.*at least 1"):
        fwd(np.float32(1.0), 0)
    with pytest.raises(ValueError, match=f"{name}_forward.*'x'.*at least 1"):
        fwd(np.array(1.0, np.float32), 0)
    with pytest.raises(ValueError, match=f"{name}_backward.*shape"):
        bwd(x, np.ones((3, 2), np.float32), -1)
    with pytest.raises(TypeError, match=f"{name}_backward.*mixed dtypes"):
        bwd(x, np.ones((2, 3)), -1)
    with pytest.raises(ValueError, match=f"{name}_backward.*'y'.*at least 1"):
        bwd(np.array(1.0, np.float32), np.array(1.0, np.float32), 0)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_non_contiguous(name):
    K = _K()
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 40, 9)).astype(np.float32)
    x = base[:, ::2, 1:8]  # strided view: copied
    xc = np.ascontiguousarray(x)
    for axis in (0, 1, 2):
        y = getattr(K, name + "_forward")(x, axis)
        np.testing.assert_allclose(y, getattr(R, name + "_forward")(xc, axis), rtol=1e-5, atol=1e-6)
        dy = rng.standard_normal(base.shape).astype(np.float32)[:, ::2, 1:8]
        np.testing.assert_allclose(getattr(K, name + "_backward")(dy, y.T.copy().T, axis),
                                   getattr(R, name + "_backward")(np.ascontiguousarray(dy), y, axis),
                                   rtol=1e-5, atol=1e-6)


def test_softmax_threads_agree():
    """The thread count changes the split only: results are bit-identical."""
    from fastconv import config

    K = _K()
    x = np.random.default_rng(4).standard_normal((64, 300, 5)).astype(np.float32)
    old = config.get_num_threads()
    try:
        outs = []
        for nt in (1, 2):
            config.set_num_threads(nt)
            outs.append([K.softmax_forward(x, 1), K.log_softmax_forward(x, -1), K.prelu_backward(x, x, x[0, :300, 0])])
        for a, b in zip(outs[0][:2], outs[1][:2]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(outs[0][2][1], outs[1][2][1])
    finally:
        config.set_num_threads(old)


# ---- prelu ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,nw", [
    ((4, 3, 5, 7), 3), ((4, 3, 5, 7), 1), ((2, 17), 17), ((2, 17), 1), ((33,), 1), ((3, 5, 70), 5),
    ((2, 2, 9000), 1), ((1, 1, 8193), 1), ((2, 16, 40, 40), 16), ((0, 3, 4), 3), ((0, 3), 1),
])
def test_prelu_matches_torch(dtype, shape, nw):
    K = _K()
    rng = np.random.default_rng(sum(shape) + nw)
    x = rng.standard_normal(shape).astype(dtype)
    if x.size:
        x.reshape(-1)[:2] = [0.0, -0.0]
    w = rng.uniform(-0.5, 0.5, nw).astype(dtype)
    tol = _tol(dtype)
    y = K.prelu_forward(x, w)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y, R.prelu_forward(x, w))
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw = K.prelu_backward(dy, x, w)
    rdx, rdw = R.prelu_backward(dy, x, w)
    assert dx.dtype == dtype and dw.dtype == dtype and dw.shape == w.shape
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_allclose(dw, rdw, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    if x.size:
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tw = torch.from_numpy(w.copy()).requires_grad_(True)
        ty = TF.prelu(tx, tw)
        np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)
    else:
        np.testing.assert_array_equal(dw, np.zeros(nw, dtype))


def test_prelu_nan_and_non_contiguous():
    K = _K()
    x = np.array([[1.0, np.nan, -2.0], [-1.0, 0.5, np.nan]], np.float32)
    w = np.array([0.25, 0.5, 2.0], np.float32)
    y = K.prelu_forward(x, w)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    dx, dw = K.prelu_backward(np.ones_like(x), x, w)
    assert np.isnan(dw[1]) and np.isnan(dw[2]) and dw[0] == -1.0
    base = np.random.default_rng(2).standard_normal((4, 6, 10)).astype(np.float32)
    xs, ws = base[:, ::2, ::3], np.array([0.1, -0.2, 0.3], np.float32)
    np.testing.assert_array_equal(K.prelu_forward(xs, ws), R.prelu_forward(np.ascontiguousarray(xs), ws))
    dx, dw = K.prelu_backward(xs, xs, ws[::1])
    rdx, rdw = R.prelu_backward(np.ascontiguousarray(xs), np.ascontiguousarray(xs), ws)
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_allclose(dw, rdw, rtol=1e-5)


def test_prelu_bad_input():
    K = _K()
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="prelu_forward.*'weight'.*3 channels"):
        K.prelu_forward(x, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="prelu_forward.*'weight'.*1-D"):
        K.prelu_forward(x, np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="prelu_forward.*'weight'"):
        K.prelu_forward(np.ones(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="prelu_forward.*mixed dtypes"):
        K.prelu_forward(x, np.ones(3))
    with pytest.raises(TypeError, match="prelu_forward.*'x'.*int64"):
        K.prelu_forward(np.ones((2, 3), np.int64), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="prelu_forward.*'weight'"):
        K.prelu_forward(x, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="prelu_backward.*shape"):
        K.prelu_backward(np.ones((2, 3, 5), np.float32), x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="prelu_backward.*'weight'"):
        K.prelu_backward(x, x, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="prelu_backward.*mixed dtypes"):
        K.prelu_backward(x, x, np.ones(3))


# ---- autograd through the Cython kernels -----------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gradcheck_cython(dim):
    import fastconv as fc
    import fastconv.functional as F
    from fastconv.testing import gradcheck

    rng = np.random.default_rng(7)
    x = fc.Tensor(rng.standard_normal((3, 4, 5)), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda t: F.softmax(t, dim=dim, backend="cython"), [x])
    assert gradcheck(lambda t: F.log_softmax(t, dim=dim, backend="cython"), [x])
    w = fc.Tensor(rng.uniform(0.1, 0.4, 4), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda t, u: F.prelu(t, u, backend="cython"), [x, w])
