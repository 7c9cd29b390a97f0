"""Reference pooling kernels and the pooling autograd ops against torch.nn.functional.

Max pooling must reproduce PyTorch's values *and* indices exactly, ties
(first maximum in window order) and NaN (a NaN wins) included; average
pooling PyTorch's divisors for every padding / ceil_mode /
count_include_pad combination; adaptive pooling PyTorch's bins.  Then bad
input, empty batch, non-contiguous input and finite-difference gradchecks.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastconv import functional as FF
from fastconv.kernels.reference import pool as R
from fastconv.tensor import Tensor
from fastconv.testing import gradcheck, rel_error


def _random_windows(n, seed, dilate):
    """Seeded (x_shape, kernel, stride, padding, dilation, ceil_mode) that PyTorch accepts."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 3, 2)) if dilate else (1, 1)
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + tuple(int(v) for v in rng.integers(1, 10, 2))
        cm = bool(rng.integers(2))
        try:
            F.max_pool2d(torch.zeros(shape), k, s, p, d, cm)
        except RuntimeError:
            continue
        out.append((shape, k, s, p, d, cm))
    return out


MAX_CASES = [
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), False),
    ((1, 1, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((2, 2, 9, 10), (3, 2), (2, 3), (1, 1), (2, 1), True),   # dilation + ceil_mode
    ((1, 2, 5, 7), (4, 4), (3, 3), (2, 2), (1, 1), True),    # ceil windows clipped at the bottom/right
    ((1, 1, 6, 5), (1, 1), (2, 1), (0, 0), (1, 1), False),
] + _random_windows(20, 11, dilate=True)


def _max_torch(x, geom, dy):
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty, ti = F.max_pool2d(tx, *geom, return_indices=True)
    ok_for_backward = bool((ti < x.shape[2] * x.shape[3]).all())  # torch writes out of plane otherwise
    if ok_for_backward:
        ty.backward(torch.tensor(dy, dtype=torch.float64))
    return ty.detach().numpy(), ti.numpy(), tx.grad.numpy() if ok_for_backward else None


@pytest.mark.parametrize("values", ["normal", "integers", "nan"])
@pytest.mark.parametrize("case", MAX_CASES, ids=[f"m{i}" for i in range(len(MAX_CASES))])
def test_max_pool2d_matches_torch(case, values):
    shape, *geom = case
    rng = np.random.default_rng(len(shape) + sum(shape) + 100 * MAX_CASES.index(case))
    if values == "normal":
        x = rng.standard_normal(shape)
    else:  # few distinct values: many ties
        x = rng.integers(-2, 3, shape).astype(np.float64)
        if values == "nan":
            x[rng.random(shape) < 0.25] = np.nan
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        y, idx = R.max_pool2d_forward(xd, *geom)
        assert y.dtype == dtype and idx.dtype == np.int64
        dy = rng.standard_normal(y.shape).astype(dtype)
        ry, ridx, rdx = _max_torch(xd, geom, dy)
        np.testing.assert_array_equal(y, ry.astype(dtype))  # max is exact, NaN included
        np.testing.assert_array_equal(idx, ridx)
        dx = R.max_pool2d_backward(dy, idx, xd.shape)
        assert dx.dtype == dtype and dx.shape == xd.shape
        if rdx is not None:
            assert rel_error(dx, rdx) <= (1e-12 if dtype == np.float64 else 1e-6)


def test_max_pool2d_ties_take_first_in_window_order():
    x = np.ones((1, 1, 4, 4))
    y, idx = R.max_pool2d_forward(x, 2, 2, 0, 1, False)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    # overlapping windows, padding: the first *in-bounds* element wins
    y, idx = R.max_pool2d_forward(x, 3, 1, 1, 1, False)
    ry, ridx = F.max_pool2d(torch.tensor(x), 3, 1, 1, return_indices=True)
    np.testing.assert_array_equal(idx, ridx.numpy())
    assert idx[0, 0, 0, 0] == 0 and idx[0, 0, 1, 1] == 0


def test_max_pool2d_nan_and_neg_inf():
    x = np.array([[[[1.0, np.nan, 5.0, np.nan], [-np.inf, -np.inf, 2.0, 3.0]]]])
    y, idx = R.max_pool2d_forward(x, (2, 2), 2, 0, 1, False)
    ry, ridx = F.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, ry.numpy())
    np.testing.assert_array_equal(idx, ridx.numpy())
    assert np.isnan(y).all()
    x = np.full((1, 1, 2, 3), -np.inf)
    y, idx = R.max_pool2d_forward(x, 2, 1, 1, 1, False)  # all -inf: first in-bounds position
    ry, ridx = F.max_pool2d(torch.tensor(x), 2, 1, 1, return_indices=True)
    np.testing.assert_array_equal(idx, ridx.numpy())
    np.testing.assert_array_equal(y, ry.numpy())


def test_max_pool2d_window_without_input():
    # 2-tap window with dilation 3 and padding 1 over H = 2 reads rows -1 and 2: no input at all.
    # PyTorch returns -inf with an out-of-plane index; we match it, and give no gradient for it.
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y, idx = R.max_pool2d_forward(x, 2, 1, 1, 3, False)
    ry, ridx = F.max_pool2d(torch.tensor(x), 2, 1, 1, 3, return_indices=True)
    np.testing.assert_array_equal(y, ry.numpy())
    np.testing.assert_array_equal(idx, ridx.numpy())
    dx = R.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    assert not dx.any()


AVG_CASES = [
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1), False),
    ((1, 2, 5, 7), (4, 4), (3, 3), (2, 2), True),   # ceil windows past the right padding
    ((1, 1, 6, 6), (3, 2), (3, 1), (1, 1), True),
    ((2, 1, 3, 8), (2, 3), None, (1, 0), False),    # stride None = kernel
] + [(c[0], c[1], c[2], c[3], c[5]) for c in _random_windows(12, 22, dilate=False)]


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("case", AVG_CASES, ids=[f"a{i}" for i in range(len(AVG_CASES))])
def test_avg_pool2d_matches_torch(case, cip):
    shape, k, s, p, cm = case
    rng = np.random.default_rng(sum(shape) + 7 * AVG_CASES.index(case))
    x = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, k, s, p, cm, cip)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    for dtype in (np.float64, np.float32):
        tol = 1e-12 if dtype == np.float64 else 1e-6
        y = R.avg_pool2d_forward(x.astype(dtype), k, s, p, cm, cip)
        dx = R.avg_pool2d_backward(dy.astype(dtype), shape, k, s, p, cm, cip)
        assert y.dtype == dtype and dx.dtype == dtype and dx.shape == shape
        assert rel_error(y, ty.detach().numpy()) <= tol
        assert rel_error(dx, tx.grad.numpy()) <= tol


ADAPTIVE_CASES = [((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), (5, 5)), ((2, 2, 4, 3), (7, 5)), ((1, 1, 9, 10), (1, 1)),
                  ((2, 3, 10, 7), (4, 3)), ((1, 2, 3, 11), (2, 6)), ((1, 1, 6, 6), (None, 4)), ((1, 1, 7, 8), 3)]


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=[f"ad{i}" for i in range(len(ADAPTIVE_CASES))])
def test_adaptive_avg_pool2d_matches_torch(case):
    shape, out = case
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.adaptive_avg_pool2d(tx, out)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    for dtype in (np.float64, np.float32):
        tol = 1e-12 if dtype == np.float64 else 1e-6
        y = R.adaptive_avg_pool2d_forward(x.astype(dtype), out)
        dx = R.adaptive_avg_pool2d_backward(dy.astype(dtype), shape)
        assert y.dtype == dtype and dx.dtype == dtype and dx.shape == shape and dx.flags.c_contiguous
        assert rel_error(y, ty.detach().numpy()) <= tol
        assert rel_error(dx, tx.grad.numpy()) <= tol


def test_nan_stays_in_its_windows():
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 5, 5] = np.inf
    tx = torch.tensor(x)
    for y, ry in (
        (R.avg_pool2d_forward(x, 2, 2, 0, False, True), F.avg_pool2d(tx, 2)),
        (R.adaptive_avg_pool2d_forward(x, (4, 4)), F.adaptive_avg_pool2d(tx, 4)),
        (R.max_pool2d_forward(x, 3, 3, 0, 1, False)[0], F.max_pool2d(tx, 3)),
    ):
        np.testing.assert_array_equal(y, ry.numpy())
        assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y).sum() == 1
    dy = np.zeros((1, 1, 3, 3))
    dy[0, 0, 1, 1] = np.nan
    dx = R.adaptive_avg_pool2d_backward(dy, (1, 1, 6, 6))
    assert np.isnan(dx).sum() == 4 and np.isnan(dx[0, 0, 2:4, 2:4]).all()
    dx = R.avg_pool2d_backward(dy, (1, 1, 6, 6), 2, 2, 0, False, True)
    assert np.isnan(dx).sum() == 4 and np.isnan(dx[0, 0, 2:4, 2:4]).all()


def test_empty_batch_and_non_contiguous():
    x = np.zeros((0, 3, 6, 6), np.float32)
    y, idx = R.max_pool2d_forward(x, 2, 2, 0, 1, False)
    assert y.shape == idx.shape == (0, 3, 3, 3)
    assert R.max_pool2d_backward(y, idx, x.shape).shape == x.shape
    assert R.avg_pool2d_forward(x, 3, 1, 1, True, False).shape == (0, 3, 6, 6)
    assert R.avg_pool2d_backward(np.zeros((0, 3, 6, 6), np.float32), x.shape, 3, 1, 1, True, False).shape == x.shape
    assert R.adaptive_avg_pool2d_forward(x, 4).shape == (0, 3, 4, 4)
    assert R.adaptive_avg_pool2d_backward(np.zeros((0, 3, 4, 4), np.float32), x.shape).shape == x.shape
    rng = np.random.default_rng(9)
    big = rng.standard_normal((2, 3, 10, 14))
    xn = big[:, :, ::2, 1::2]  # non-contiguous
    tx = torch.tensor(np.ascontiguousarray(xn))
    y, idx = R.max_pool2d_forward(xn, 2, 1, 1, 1, False)
    ry, ridx = F.max_pool2d(tx, 2, 1, 1, return_indices=True)
    np.testing.assert_array_equal(idx, ridx.numpy())
    assert rel_error(R.avg_pool2d_forward(xn, 3, 2, 1, True, False), F.avg_pool2d(tx, 3, 2, 1, True, False)) < 1e-12
    assert rel_error(R.adaptive_avg_pool2d_forward(xn, 3), F.adaptive_avg_pool2d(tx, 3)) < 1e-12
    dx = R.max_pool2d_backward(np.asfortranarray(np.ones(y.shape)), np.asfortranarray(idx), xn.shape)
    assert dx.sum() == y.size


# ---------------------------------------------------------------- bad input

X = np.zeros((2, 3, 6, 6), np.float32)


def test_bad_rank():
    with pytest.raises(ValueError, match="max_pool2d_forward.*'x'.*4-D"):
        R.max_pool2d_forward(X[0], 2, 2, 0, 1, False)
    with pytest.raises(ValueError, match="avg_pool2d_forward.*'x'.*4-D"):
        R.avg_pool2d_forward(X[..., None], 2, 2, 0, False, True)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_forward.*'x'.*4-D"):
        R.adaptive_avg_pool2d_forward(X[0], 2)
    with pytest.raises(ValueError, match="max_pool2d_backward.*'x_shape'"):
        R.max_pool2d_backward(np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), np.int64), (2, 3, 6))


def test_bad_window():
    with pytest.raises(ValueError, match="max_pool2d_forward.*'stride' must be >= 1"):
        R.max_pool2d_forward(X, 2, 0, 0, 1, False)
    with pytest.raises(ValueError, match="max_pool2d_forward.*'dilation' must be >= 1"):
        R.max_pool2d_forward(X, 2, 2, 0, (1, 0), False)
    with pytest.raises(ValueError, match="avg_pool2d_forward.*'padding' must be >= 0"):
        R.avg_pool2d_forward(X, 2, 2, -1, False, True)
    with pytest.raises(ValueError, match="avg_pool2d_forward.*at most half the kernel"):
        R.avg_pool2d_forward(X, 3, 1, 2, False, True)
    with pytest.raises(ValueError, match="max_pool2d_forward.*'kernel_size' must be >= 1"):
        R.max_pool2d_forward(X, 0, 1, 0, 1, False)
    with pytest.raises(ValueError, match="max_pool2d_forward.*larger than the padded input"):
        R.max_pool2d_forward(X, (7, 2), 1, 0, 1, False)
    with pytest.raises(ValueError, match="max_pool2d_forward.*larger than the padded input"):
        R.max_pool2d_forward(X, 3, 1, 0, 3, False)  # dilated window 7 > 6
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_forward.*'output_size' must be >= 1"):
        R.adaptive_avg_pool2d_forward(X, (0, 2))
    with pytest.raises(ValueError, match="non-empty"):
        R.max_pool2d_forward(np.zeros((1, 1, 0, 4)), 1, 1, 0, 1, False)
    with pytest.raises(ValueError, match="non-empty"):
        R.adaptive_avg_pool2d_forward(np.zeros((1, 1, 4, 0)), 1)


def test_bad_dtype_and_types():
    with pytest.raises(TypeError, match="max_pool2d_forward.*'x'.*int64"):
        R.max_pool2d_forward(X.astype(np.int64), 2, 2, 0, 1, False)
    with pytest.raises(TypeError, match="avg_pool2d_forward.*'x' must be a NumPy or CuPy array"):
        R.avg_pool2d_forward(X.tolist(), 2, 2, 0, False, True)
    with pytest.raises(TypeError, match="max_pool2d_backward.*'argmax'.*float32"):
        R.max_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.float32), X.shape)
    with pytest.raises(TypeError, match="max_pool2d_forward.*'kernel_size' must be an int"):
        R.max_pool2d_forward(X, 2.0, 2, 0, 1, False)
    with pytest.raises(TypeError, match="adaptive_avg_pool2d_forward.*'output_size'"):
        R.adaptive_avg_pool2d_forward(X, 2.5)


def test_backward_shape_checks():
    dy = np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="max_pool2d_backward.*'dy'.*'argmax'"):
        R.max_pool2d_backward(dy, np.zeros((2, 3, 3, 2), np.int64), X.shape)
    with pytest.raises(ValueError, match="max_pool2d_backward.*\\(N, C\\)"):
        R.max_pool2d_backward(dy, np.zeros((2, 3, 3, 3), np.int64), (2, 4, 6, 6))
    with pytest.raises(ValueError, match="avg_pool2d_backward.*'dy'.*\\(2, 3, 3, 3\\)"):
        R.avg_pool2d_backward(dy[:, :, :2], X.shape, 2, 2, 0, False, True)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_backward.*\\(N, C\\)"):
        R.adaptive_avg_pool2d_backward(dy, (2, 2, 6, 6))


# ------------------------------------------------------- autograd functional

def _grad_vs_torch(fc_out, t_out, x, tx, rng):
    dy = rng.standard_normal(fc_out.shape)
    fc_out.backward(dy)
    t_out.backward(torch.tensor(dy))
    assert rel_error(fc_out, t_out.detach().numpy()) < 1e-12
    assert rel_error(x.grad, tx.grad.numpy()) < 1e-12


def test_functional_2d():
    rng = np.random.default_rng(10)
    a = rng.standard_normal((2, 3, 7, 8))
    x, tx = Tensor(a.copy(), requires_grad=True), torch.tensor(a, requires_grad=True)
    y, idx = FF.max_pool2d(x, 3, 2, 1, dilation=(1, 2), ceil_mode=True, return_indices=True, backend="reference")
    ty, tidx = F.max_pool2d(tx, 3, 2, 1, dilation=(1, 2), ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    _grad_vs_torch(y, ty, x, tx, rng)
    for fc, tf in ((lambda t: FF.avg_pool2d(t, (3, 2), padding=1, ceil_mode=True, count_include_pad=False,
                                            backend="reference"),
                    lambda t: F.avg_pool2d(t, (3, 2), padding=1, ceil_mode=True, count_include_pad=False)),
                   (lambda t: FF.adaptive_avg_pool2d(t, (3, 5), backend="reference"),
                    lambda t: F.adaptive_avg_pool2d(t, (3, 5))),
                   (lambda t: FF.global_avg_pool2d(t, backend="reference"),
                    lambda t: F.adaptive_avg_pool2d(t, 1)),
                   (lambda t: FF.max_pool2d(t[0], 2, backend="reference"),  # unbatched (C, H, W)
                    lambda t: F.max_pool2d(t[0], 2))):
        x, tx = Tensor(a.copy(), requires_grad=True), torch.tensor(a, requires_grad=True)
        _grad_vs_torch(fc(x), tf(tx), x, tx, rng)


def test_functional_1d():
    rng = np.random.default_rng(12)
    a = rng.standard_normal((2, 3, 11))
    for fc, tf in ((lambda t: FF.max_pool1d(t, 3, 2, 1, dilation=2, ceil_mode=True, backend="reference"),
                    lambda t: F.max_pool1d(t, 3, 2, 1, dilation=2, ceil_mode=True)),
                   (lambda t: FF.avg_pool1d(t, 4, 3, 2, ceil_mode=True, count_include_pad=False, backend="reference"),
                    lambda t: F.avg_pool1d(t, 4, 3, 2, ceil_mode=True, count_include_pad=False)),
                   (lambda t: FF.adaptive_avg_pool1d(t, 4, backend="reference"),
                    lambda t: F.adaptive_avg_pool1d(t, 4)),
                   (lambda t: FF.avg_pool1d(t[1], 2, backend="reference"), lambda t: F.avg_pool1d(t[1], 2))):
        x, tx = Tensor(a.copy(), requires_grad=True), torch.tensor(a, requires_grad=True)
        _grad_vs_torch(fc(x), tf(tx), x, tx, rng)
    y, idx = FF.max_pool1d(Tensor(a), 3, return_indices=True, backend="reference")
    ty, tidx = F.max_pool1d(torch.tensor(a), 3, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    assert idx.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="max_pool1d.*'kernel_size' must have 1 value"):
        FF.max_pool1d(Tensor(a), (2, 2), backend="reference")
    with pytest.raises(ValueError, match="avg_pool1d.*'x' must be 3-D"):
        FF.avg_pool1d(Tensor(a[None]), 2, backend="reference")


def test_gradcheck_pools():
    rng = np.random.default_rng(13)
    x = Tensor(rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) * 0.1, requires_grad=True)  # distinct values
    assert gradcheck(lambda t: FF.max_pool2d(t, 3, 2, 1, ceil_mode=True, backend="reference"), [x])
    assert gradcheck(lambda t: FF.max_pool2d(t, 2, 1, 0, dilation=2, backend="reference"), [x])
    x = Tensor(rng.standard_normal((2, 2, 5, 6)), requires_grad=True)
    assert gradcheck(lambda t: FF.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False,
                                             backend="reference"), [x])
    assert gradcheck(lambda t: FF.avg_pool2d(t, (2, 3), (1, 2), (1, 1), backend="reference"), [x])
    assert gradcheck(lambda t: FF.adaptive_avg_pool2d(t, (3, 4), backend="reference"), [x])
    x = Tensor(rng.standard_normal((2, 2, 7)), requires_grad=True)
    assert gradcheck(lambda t: FF.avg_pool1d(t, 3, 2, 1, backend="reference"), [x])
    assert gradcheck(lambda t: FF.adaptive_avg_pool1d(t, 3, backend="reference"), [x])
