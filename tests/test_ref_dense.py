"""Reference linear kernels and the linear autograd op against PyTorch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv.kernels import reference as R
from fastconv.testing import gradcheck

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape", [(5, 4), (2, 3, 4), (4,), (0, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, xshape, bias, rng):
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal((3, 4)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype) if bias else None
    y = R.linear_forward(x, w, b)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = R.linear_backward(dy, x, w, bias)
    tx, tw = torch.from_numpy(x.copy()).requires_grad_(True), torch.from_numpy(w.copy()).requires_grad_(True)
    tb = torch.from_numpy(b.copy()).requires_grad_(True) if bias else None
    ty = TF.linear(tx, tw, tb)
    ty.backward(torch.from_numpy(dy))
    assert y.shape == tuple(ty.shape) and y.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(dw, tw.grad.numpy(), **tol(dtype))
    assert dx.dtype == dtype and dw.dtype == dtype and dw.flags.c_contiguous
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), **tol(dtype))
    else:
        assert db is None


def test_linear_nan_and_non_contiguous(rng):
    x = rng.standard_normal((4, 6))
    x[2, 1] = np.nan
    w = rng.standard_normal((3, 6))
    y = R.linear_forward(x, w, None)
    assert np.isnan(y[2]).all() and np.isfinite(y[[0, 1, 3]]).all()
    xs = rng.standard_normal((4, 12))[:, ::2]
    ws = rng.standard_normal((6, 3)).T
    np.testing.assert_allclose(R.linear_forward(xs, ws, None), np.ascontiguousarray(xs) @ ws.T, rtol=1e-12)


def test_linear_bad_input():
    x = np.ones((2, 4), np.float32)
    w = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="linear_forward.*'x' shape \\(2, 5\\) has 5 input features.*expects 4"):
        R.linear_forward(np.ones((2, 5), np.float32), w, None)
    with pytest.raises(ValueError, match="linear_forward.*'w' must be 2-D"):
        R.linear_forward(x, np.ones(4, np.float32), None)
    with pytest.raises(ValueError, match="'b' shape \\(4,\\) does not match 3 outputs"):
        R.linear_forward(x, w, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        R.linear_forward(x, w.astype(np.float64), None)
    with pytest.raises(TypeError, match="'x'.*int64"):
        R.linear_forward(np.ones((2, 4), np.int64), w, None)
    with pytest.raises(ValueError, match="linear_forward.*'x' must have at least 1"):
        R.linear_forward(np.float32(1), w, None)
    with pytest.raises(ValueError, match="linear_backward.*'dy' shape \\(2, 4\\) does not match the output shape \\(2, 3\\)"):
        R.linear_backward(np.ones((2, 4), np.float32), x, w, True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_linear(dtype, rng):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    w = rng.standard_normal((5, 4)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    xt, wt, bt = (fc.Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
    y = F.linear(xt, wt, bt)
    dy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(dy)
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
    ty = TF.linear(tx, tw, tb)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol(dtype))
    for ours, theirs in ((xt, tx), (wt, tw), (bt, tb)):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), **tol(dtype))
        assert ours.grad.dtype == dtype


def test_gradcheck(rng):
    x = fc.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = fc.Tensor(rng.standard_normal((2, 4)), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(2), requires_grad=True)
    assert gradcheck(F.linear, [x, w, b])
    assert gradcheck(lambda a, ww: F.linear(a, ww), [x, w])
    x1 = fc.Tensor(rng.standard_normal(4), requires_grad=True)
    assert gradcheck(F.linear, [x1, w, b])
