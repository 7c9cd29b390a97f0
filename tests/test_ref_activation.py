"""Reference activation kernels and their autograd ops against torch.nn.functional."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv.kernels import reference as R
from fastconv.testing import gradcheck

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def torch_pair(fn, x, dy):
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    y = fn(t)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), t.grad.numpy()


ELEMENTWISE = [
    # name, kernel forward, kernel backward (dy, x, y), torch fn
    ("leaky_relu", lambda x: R.leaky_relu_forward(x, 0.1), lambda dy, x, y: R.leaky_relu_backward(dy, x, 0.1),
     lambda t: TF.leaky_relu(t, 0.1)),
    ("sigmoid", R.sigmoid_forward, lambda dy, x, y: R.sigmoid_backward(dy, y), torch.sigmoid),
    ("tanh", R.tanh_forward, lambda dy, x, y: R.tanh_backward(dy, y), torch.tanh),
    ("gelu", lambda x: R.gelu_forward(x, "none"), lambda dy, x, y: R.gelu_backward(dy, x, "none"), TF.gelu),
    ("gelu_tanh", lambda x: R.gelu_forward(x, "tanh"), lambda dy, x, y: R.gelu_backward(dy, x, "tanh"),
     lambda t: TF.gelu(t, approximate="tanh")),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fwd,bwd,tfn", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
@pytest.mark.parametrize("shape", [(0, 3), (7,), (3, 4, 5)])
def test_elementwise_matches_torch(name, fwd, bwd, tfn, dtype, shape, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y = fwd(x)
    dx = bwd(dy, x, y)
    ty, tdx = torch_pair(tfn, x, dy)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, ty, **TOL[dtype])
    np.testing.assert_allclose(dx, tdx, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_extremes_and_nan(dtype):
    x = np.array([-1e4, -100.0, -0.0, 0.0, 100.0, 1e4, np.nan], dtype=dtype)
    dy = np.ones_like(x)
    for name, fwd, bwd, tfn in ELEMENTWISE:
        y = fwd(x)
        ty, tdx = torch_pair(tfn, x, dy)
        assert np.isfinite(y[:-1]).all(), name
        assert np.isnan(y[-1]), name
        np.testing.assert_allclose(y, ty, rtol=1e-6, atol=1e-30, err_msg=name)
        dx = bwd(dy, x, y)  # at NaN: whatever torch gives (NaN, or the slope for leaky_relu)
        np.testing.assert_allclose(dx, tdx, rtol=1e-5, atol=1e-30, err_msg=name)
    # sigmoid saturates exactly, never overflows
    with np.errstate(over="raise"):
        s = R.sigmoid_forward(x[:-1])
    assert s[0] == 0 and s[-1] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,wshape", [((4, 3, 5, 2), (3,)), ((4, 3), (3,)), ((4, 3, 5), (1,)), ((6,), (1,)),
                                           ((0, 3, 2), (3,))])
def test_prelu_matches_torch(dtype, xshape, wshape, rng):
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.uniform(0.05, 0.5, wshape).astype(dtype)
    dy = rng.standard_normal(xshape).astype(dtype)
    y = R.prelu_forward(x, w)
    dx, dw = R.prelu_backward(dy, x, w)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(w.copy()).requires_grad_(True)
    ty = TF.prelu(tx, tw)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    assert dw.dtype == dtype and dw.shape == wshape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_softmax_matches_torch(kind, axis, dtype, rng):
    x = (rng.standard_normal((4, 5, 6)) * 4).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    fwd, bwd = getattr(R, f"{kind}_forward"), getattr(R, f"{kind}_backward")
    y = fwd(x, axis)
    dx = bwd(dy, y, axis)
    ty, tdx = torch_pair(lambda t: getattr(torch, kind)(t, axis), x, dy)
    np.testing.assert_allclose(y, ty, rtol=TOL[dtype]["rtol"], atol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_huge_logits_and_nan(dtype):
    x = np.array([[1e4, -1e4, 0.0], [1e4, 1e4 - 1, -3.0], [np.nan, 1.0, 2.0], [3e4, 3e4, 3e4]], dtype=dtype)
    dy = np.ones_like(x)
    for kind in ("softmax", "log_softmax"):
        y = getattr(R, f"{kind}_forward")(x, 1)
        ty, tdx = torch_pair(lambda t: getattr(torch, kind)(t, 1), x, dy)
        assert np.isnan(y[2]).all(), kind
        assert np.isfinite(y[[0, 1, 3]]).all(), kind
        np.testing.assert_allclose(y, ty, rtol=1e-6, atol=1e-6, err_msg=kind)
        dx = getattr(R, f"{kind}_backward")(dy, y, 1)
        np.testing.assert_allclose(dx, tdx, rtol=1e-5, atol=1e-6, err_msg=kind)
    np.testing.assert_allclose(R.log_softmax_forward(x, 1)[0], [0.0, -2e4, -1e4])


def test_softmax_empty():
    for shape, axis in [((0, 5), 1), ((3, 0), 1), ((0, 5), 0)]:
        x = np.zeros(shape, np.float32)
        assert R.softmax_forward(x, axis).shape == shape
        assert R.log_softmax_forward(x, axis).shape == shape
        assert R.softmax_backward(x, x, axis).shape == shape


def test_bad_input():
    f32 = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="sigmoid_forward.*'x'.*int64"):
        R.sigmoid_forward(np.arange(3))
    with pytest.raises(TypeError, match="gelu_forward.*'x'"):
        R.gelu_forward([1.0], "none")
    with pytest.raises(ValueError, match="gelu_forward.*approximate"):
        R.gelu_forward(f32, "fast")
    with pytest.raises(TypeError, match="leaky_relu_forward.*negative_slope"):
        R.leaky_relu_forward(f32, "0.1")
    with pytest.raises(ValueError, match="tanh_backward.*shape"):
        R.tanh_backward(f32, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="sigmoid_backward.*mixed dtypes"):
        R.sigmoid_backward(f32, f32.astype(np.float64))
    with pytest.raises(ValueError, match="softmax_forward.*axis"):
        R.softmax_forward(f32, 2)
    with pytest.raises(TypeError, match="log_softmax_forward.*axis"):
        R.log_softmax_forward(f32, 1.0)
    with pytest.raises(ValueError, match="softmax_forward.*at least 1"):
        R.softmax_forward(np.float32(1.0), 0)
    with pytest.raises(ValueError, match="prelu_forward.*weight.*channels"):
        R.prelu_forward(f32, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="prelu_forward.*1-D"):
        R.prelu_forward(f32, np.ones((3, 1), np.float32))
    with pytest.raises(TypeError, match="prelu_forward.*mixed dtypes"):
        R.prelu_forward(f32, np.ones(3, np.float64))
    with pytest.raises(TypeError, match="softmax_forward.*int"):
        F.softmax(fc.Tensor(np.arange(6).reshape(2, 3)))


def test_non_contiguous_is_copied(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    for kind in ("softmax", "log_softmax"):
        np.testing.assert_allclose(getattr(R, f"{kind}_forward")(x, 1),
                                   getattr(R, f"{kind}_forward")(np.ascontiguousarray(x), 1))
    np.testing.assert_allclose(R.gelu_forward(x.T, "none"), R.gelu_forward(np.ascontiguousarray(x.T), "none"))
    w = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], np.float32)[::2]
    np.testing.assert_allclose(R.prelu_forward(x.T[:, :3], w), R.prelu_forward(np.ascontiguousarray(x.T[:, :3]), w.copy()))


# ---- autograd ops -------------------------------------------------------------------

def _t(rng, *shape, scale=1.0):
    return fc.Tensor(rng.standard_normal(shape) * scale, requires_grad=True, dtype=np.float64)


@pytest.mark.parametrize("fn", [
    lambda x: F.leaky_relu(x, 0.2), F.sigmoid, F.tanh, F.gelu, lambda x: F.gelu(x, approximate="tanh"),
    lambda x: F.softmax(x, dim=1), lambda x: F.log_softmax(x, dim=0), F.softmax, F.log_softmax,
    lambda x: F.relu6(x * 4),
], ids=["leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "softmax1", "log_softmax0", "softmax", "log_softmax",
        "relu6"])
def test_gradcheck(fn, rng):
    x = _t(rng, 3, 4)
    assert gradcheck(fn, [x])


def test_gradcheck_prelu(rng):
    x = _t(rng, 2, 3, 4)
    w = fc.Tensor(rng.uniform(0.1, 0.4, 3), requires_grad=True, dtype=np.float64)
    assert gradcheck(F.prelu, [x, w])


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_matches_torch(dtype, rng):
    x = (rng.standard_normal((3, 5)) * 4).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    cases = [
        (lambda t: F.relu6(t), TF.relu6),
        (lambda t: F.leaky_relu(t), TF.leaky_relu),
        (lambda t: F.gelu(t, approximate="tanh"), lambda t: TF.gelu(t, approximate="tanh")),
        (lambda t: F.softmax(t, dim=0), lambda t: TF.softmax(t, dim=0)),
        (lambda t: F.log_softmax(t), lambda t: TF.log_softmax(t, dim=-1)),
        (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh),
    ]
    for ours, theirs in cases:
        t = fc.Tensor(x.copy(), requires_grad=True)
        y = ours(t)
        y.backward(dy)
        ty, tdx = torch_pair(theirs, x, dy)
        assert y.dtype == dtype and t.grad.dtype == dtype
        np.testing.assert_allclose(y.numpy(), ty, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t.grad, tdx, rtol=1e-4, atol=1e-5)


def test_relu6_boundaries_like_torch():
    x = np.array([0.0, 6.0, np.nan, -1.0, 7.0, 3.0, -0.0])
    t = fc.Tensor(x.copy(), requires_grad=True)
    y = F.relu6(t)
    y.backward(np.ones_like(x))
    ty, tdx = torch_pair(TF.relu6, x, np.ones_like(x))
    np.testing.assert_array_equal(y.numpy(), ty)
    np.testing.assert_array_equal(t.grad, tdx)
    with pytest.raises(TypeError, match="relu6.*int64"):
        F.relu6(fc.Tensor(np.arange(3)))
