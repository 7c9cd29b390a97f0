"""Cython pooling kernels against PyTorch (float64 truth) and the NumPy reference."""
import numpy as np
import pytest
import torch

import fastconv

PL = pytest.importorskip("fastconv.kernels.cython.pool", reason="Cython pool extension not built")
F = torch.nn.functional
TOL = {np.float32: 1e-6, np.float64: 1e-13}


def _max_configs(n, seed=3):
    rng = np.random.default_rng(seed)
    out = [((2, 3, 9, 11), 3, 2, 1, 1, False), ((2, 3, 9, 11), 3, 2, 1, 1, True),
           ((1, 2, 8, 7), (2, 3), (1, 2), (1, 0), (2, 1), True), ((3, 2, 6, 6), 2, None, 0, 1, False),
           ((1, 1, 5, 5), 5, 1, 2, 1, False), ((2, 2, 7, 4), (1, 4), (3, 1), (0, 2), 1, True)]
    for _ in range(n):
        k = tuple(int(v) for v in rng.integers(1, 5, size=2))
        s = tuple(int(v) for v in rng.integers(1, 4, size=2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 3, size=2))
        H = d[0] * (k[0] - 1) + 1 + int(rng.integers(0, 8))
        W = d[1] * (k[1] - 1) + 1 + int(rng.integers(0, 8))
        out.append(((int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W), k, s, p, d, bool(rng.integers(0, 2))))
    return out


MAX = _max_configs(10)
AVG = [c for c in MAX if c[4] == 1] + [((2, 3, 10, 9), (3, 4), (2, 3), (1, 2), 1, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", MAX, ids=[f"m{i}" for i in range(len(MAX))])
def test_max_pool_matches_torch(cfg, dtype, rng):
    xs, k, s, p, d, cm = cfg
    x = rng.standard_normal(xs).astype(dtype)
    x.reshape(-1)[: x.size // 3] = np.round(x.reshape(-1)[: x.size // 3])  # ties
    x[0, 0, 0, 0] = -np.inf
    y, idx = PL.max_pool2d_forward(x, k, s, p, d, cm)
    tx = torch.tensor(x, requires_grad=True)
    ty, ti = F.max_pool2d(tx, k, s, p, d, cm, return_indices=True)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    assert idx.dtype == np.int64 and y.dtype == dtype
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    dx = PL.max_pool2d_backward(dy, idx, xs)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    assert dx.dtype == dtype


def test_max_pool_nan_and_ties():
    x = np.array([[[[1.0, 1.0, np.nan, 2.0], [np.nan, 1.0, 5.0, 5.0], [-np.inf, -np.inf, 0.0, 0.0]]]])
    for dt in (np.float32, np.float64):
        xd = x.astype(dt)
        y, idx = PL.max_pool2d_forward(xd, 2, 1, 0, 1, False)
        ty, ti = F.max_pool2d(torch.tensor(xd), 2, 1, 0, 1, False, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
        allinf = np.full((1, 1, 2, 2), -np.inf, dt)
        y, idx = PL.max_pool2d_forward(allinf, 2, 2, 0, 1, False)
        assert y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inc", [True, False])
@pytest.mark.parametrize("cfg", AVG, ids=[f"a{i}" for i in range(len(AVG))])
def test_avg_pool_matches_torch(cfg, inc, dtype, rng):
    xs, k, s, p, _, cm = cfg
    x = rng.standard_normal(xs)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, k, s, p, cm, inc)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    y = PL.avg_pool2d_forward(x.astype(dtype), k, s, p, cm, inc)
    dx = PL.avg_pool2d_backward(dy.astype(dtype), xs, k, s, p, cm, inc)
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,out", [((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), 1), ((2, 1, 6, 10), (None, 3)),
                                    ((1, 2, 3, 4), (5, 7)), ((2, 2, 13, 11), (13, 11)), ((1, 1, 1, 1), 2)])
def test_adaptive_avg_pool_matches_torch(xs, out, dtype, rng):
    x = rng.standard_normal(xs)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.adaptive_avg_pool2d(tx, out)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    y = PL.adaptive_avg_pool2d_forward(x.astype(dtype), out)
    dx = PL.adaptive_avg_pool2d_backward(dy.astype(dtype), xs)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])


def test_pool_matches_reference(rng):
    from fastconv.kernels import reference as R

    if not hasattr(R, "max_pool2d_forward"):  # the reference pool is written concurrently
        pytest.fail("reference max_pool2d_forward missing")
    x = rng.standard_normal((2, 3, 11, 10))
    for xs, k, s, p, d, cm in MAX[:6]:
        x = rng.standard_normal(xs)
        y, i = PL.max_pool2d_forward(x, k, s, p, d, cm)
        ry, ri = R.max_pool2d_forward(x, k, s, p, d, cm)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_allclose(PL.max_pool2d_backward(y, i, xs), R.max_pool2d_backward(y, i, xs), rtol=1e-12)
        if d == 1:
            for inc in (True, False):
                y = PL.avg_pool2d_forward(x, k, s, p, cm, inc)
                np.testing.assert_allclose(y, R.avg_pool2d_forward(x, k, s, p, cm, inc), rtol=1e-12)
                np.testing.assert_allclose(PL.avg_pool2d_backward(y, xs, k, s, p, cm, inc),
                                           R.avg_pool2d_backward(y, xs, k, s, p, cm, inc), rtol=1e-12)
        y = PL.adaptive_avg_pool2d_forward(x, (3, 2))
        np.testing.assert_allclose(y, R.adaptive_avg_pool2d_forward(x, (3, 2)), rtol=1e-12)
        np.testing.assert_allclose(PL.adaptive_avg_pool2d_backward(y, xs), R.adaptive_avg_pool2d_backward(y, xs), rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_pool_empty_nan_threads(threads, rng):
    old = fastconv.config.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        x = np.zeros((0, 3, 8, 8), np.float32)
        y, i = PL.max_pool2d_forward(x, 2, 2, 0, 1, False)
        assert y.shape == (0, 3, 4, 4) and i.shape == y.shape
        assert PL.max_pool2d_backward(y, i, x.shape).shape == x.shape
        assert PL.avg_pool2d_forward(x, 3, 2, 1, True, False).shape == (0, 3, 5, 5)  # ceil mode
        assert PL.avg_pool2d_backward(y, x.shape, 2, 2, 0, False, True).shape == x.shape
        assert PL.adaptive_avg_pool2d_forward(x, 3).shape == (0, 3, 3, 3)
        assert PL.adaptive_avg_pool2d_backward(np.zeros((0, 3, 3, 3), np.float32), x.shape).shape == x.shape
        x = rng.standard_normal((4, 16, 64, 64)).astype(np.float32)  # big enough to use threads
        x[1, 2, 10, 10] = np.nan
        y, i = PL.max_pool2d_forward(x, 3, 2, 1, 1, False)
        ty, ti = F.max_pool2d(torch.tensor(x), 3, 2, 1, 1, False, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(i, ti.numpy())
        assert np.isnan(PL.avg_pool2d_forward(x, 2, 2, 0, False, True)[1, 2, 5, 5])
        assert np.isnan(PL.adaptive_avg_pool2d_forward(x, 1)[1, 2, 0, 0])
        a = PL.avg_pool2d_forward(x, 3, 2, 1, True, False)
        np.testing.assert_allclose(a, F.avg_pool2d(torch.tensor(x), 3, 2, 1, True, False).numpy(), rtol=1e-5, atol=1e-6)
    finally:
        fastconv.set_num_threads(old)


def test_pool_non_contiguous_input(rng):
    x = rng.standard_normal((2, 3, 9, 16))[:, :, :, ::2]
    y, i = PL.max_pool2d_forward(x, 2, 2, 0, 1, False)
    ty, ti = F.max_pool2d(torch.tensor(x), 2, 2, 0, 1, False, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    dy = rng.standard_normal((2, 3, 4, 8))[:, :, :, ::2]
    dx = PL.max_pool2d_backward(dy, i[:, :, :, :].copy(order="F"), x.shape)
    tx = torch.tensor(x, requires_grad=True)
    F.max_pool2d(tx, 2, 2, 0, 1, False).backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy())
    np.testing.assert_allclose(PL.avg_pool2d_forward(x, 2, 2, 0, False, True),
                               F.avg_pool2d(torch.tensor(x), 2, 2, 0).numpy(), rtol=1e-12)


def test_pool_invalid_arguments():
    x = np.ones((2, 3, 8, 8), np.float32)
    y, idx = PL.max_pool2d_forward(x, 2, 2, 0, 1, False)
    dy = np.ones_like(y)
    bad = [
        (TypeError, "max_pool2d_forward.*'x'", lambda: PL.max_pool2d_forward(x.astype(np.int32), 2, 2, 0, 1, False)),
        (TypeError, "NumPy or CuPy array", lambda: PL.max_pool2d_forward(x.tolist(), 2, 2, 0, 1, False)),
        (ValueError, "4-D", lambda: PL.max_pool2d_forward(x[0], 2, 2, 0, 1, False)),
        (ValueError, "kernel_size", lambda: PL.max_pool2d_forward(x, 0, 2, 0, 1, False)),
        (ValueError, "stride", lambda: PL.max_pool2d_forward(x, 2, 0, 0, 1, False)),
        (TypeError, "stride", lambda: PL.max_pool2d_forward(x, 2, 1.5, 0, 1, False)),
        (ValueError, "padding", lambda: PL.max_pool2d_forward(x, 2, 2, 2, 1, False)),
        (ValueError, "dilation", lambda: PL.max_pool2d_forward(x, 2, 2, 0, 0, False)),
        (ValueError, "larger than the padded input", lambda: PL.max_pool2d_forward(x, 9, 1, 0, 1, False)),
        (TypeError, "argmax", lambda: PL.max_pool2d_backward(dy, idx.astype(np.float32), x.shape)),
        (ValueError, "shape", lambda: PL.max_pool2d_backward(dy[:, :, 1:], idx, x.shape)),
        (ValueError, "'dy'", lambda: PL.max_pool2d_backward(dy, idx, (2, 4, 8, 8))),
        (ValueError, "outside the input plane", lambda: PL.max_pool2d_backward(dy, idx + 64, x.shape)),
        (ValueError, "outside the input plane", lambda: PL.max_pool2d_backward(dy, idx - 100, x.shape)),
        (TypeError, "x_shape", lambda: PL.max_pool2d_backward(dy, idx, None)),
        (ValueError, "x_shape", lambda: PL.max_pool2d_backward(dy, idx, (2, 3, 8))),
        (TypeError, "avg_pool2d_forward.*'x'", lambda: PL.avg_pool2d_forward(x.astype(np.int64), 2, 2, 0, False, True)),
        (ValueError, "padding", lambda: PL.avg_pool2d_forward(x, 2, 2, (0, 3), False, True)),
        (ValueError, "'dy'", lambda: PL.avg_pool2d_backward(dy, x.shape, 3, 2, 0, False, True)),
        (TypeError, "avg_pool2d_backward.*'dy'", lambda: PL.avg_pool2d_backward("dy", x.shape, 2, 2, 0, False, True)),
        (TypeError, "output_size", lambda: PL.adaptive_avg_pool2d_forward(x, 2.5)),
        (ValueError, "output_size", lambda: PL.adaptive_avg_pool2d_forward(x, (2, 2, 2))),
        (ValueError, "output_size", lambda: PL.adaptive_avg_pool2d_forward(x, 0)),
        (ValueError, "non-empty", lambda: PL.adaptive_avg_pool2d_forward(x[:, :, :0], 2)),
        (ValueError, "'dy'", lambda: PL.adaptive_avg_pool2d_backward(dy, (2, 4, 8, 8))),
        (TypeError, "float16", lambda: PL.adaptive_avg_pool2d_backward(dy.astype(np.float16), x.shape)),
    ]
    for exc, msg, call in bad:
        with pytest.raises(exc, match=msg):
            call()


# ---------------------------------------------------------------- SIMD / blocking paths of _pool_impl.h
# every instruction-set build of the loops this CPU runs (2 AVX-512, 1 AVX2, 0 baseline x86-64)
LEVELS = sorted({0, min(1, PL._simd_level()), PL._simd_level()})


@pytest.fixture(params=LEVELS, ids=[f"isa{v}" for v in LEVELS])
def isa(request):
    PL._simd_level(request.param)
    assert PL._simd_level() == request.param
    yield request.param
    PL._simd_level(-1)


def _threads(n):
    old = fastconv.config.get_num_threads()
    fastconv.set_num_threads(n)
    return old


# widths around the vector lengths (8 / 16 lanes), strides 1, 2 (own copies) and 3 (generic),
# row blocks (H * L above the 2048-output block), dilation, ceil_mode with padding
SIMD_MAX = [((1, 2, 9, 15), 3, 2, 1, 1, False), ((2, 1, 8, 16), 3, 2, 1, 1, True),
            ((1, 1, 11, 17), 2, 2, 0, 1, True), ((1, 2, 7, 33), (3, 2), (1, 1), (1, 0), 1, False),
            ((1, 1, 70, 131), 3, 1, 1, 1, False), ((1, 1, 90, 65), 3, 2, 1, 1, True),
            ((2, 1, 13, 47), 3, 3, 1, 1, True), ((1, 2, 12, 37), (3, 3), (2, 3), (1, 1), (2, 3), True),
            ((1, 1, 5, 64), (1, 5), (1, 4), (0, 2), (1, 1), False), ((3, 1, 6, 31), 4, 2, 2, 1, True),
            # 2x2 stride 2 without padding: the direct one-pass path (odd sizes leave a row / column out)
            ((2, 3, 28, 28), 2, 2, 0, 1, False), ((1, 1, 9, 37), 2, 2, 0, 1, False), ((1, 2, 8, 40), 2, None, 0, 1, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", SIMD_MAX, ids=[f"s{i}" for i in range(len(SIMD_MAX))])
def test_max_pool_simd_paths(cfg, dtype, rng, isa):
    xs, k, s, p, d, cm = cfg
    x = rng.standard_normal(xs).astype(dtype)
    x.reshape(-1)[::3] = np.round(x.reshape(-1)[::3])  # ties between taps
    ty, ti = F.max_pool2d(torch.tensor(x), k, s, p, d, cm, return_indices=True)
    old = _threads(2)
    try:
        y, idx = PL.max_pool2d_forward(x, k, s, p, d, cm)
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    y1, i1 = PL.max_pool2d_forward(x, k, s, p, d, cm)  # one thread: same answer
    np.testing.assert_array_equal(y1, y)
    np.testing.assert_array_equal(i1, idx)


def test_max_pool_nan_inf_borders(isa):
    """NaN wins (the last NaN of a window is reported), +-inf, windows that only see padding and
    -inf, at the borders of every SIMD path (stride 1, 2, 3; padding; dilation)."""
    rng = np.random.default_rng(7)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((2, 2, 19, 35)).astype(dt)
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, 40, replace=False)] = np.nan
        flat[rng.choice(flat.size, 40, replace=False)] = -np.inf
        flat[rng.choice(flat.size, 10, replace=False)] = np.inf
        x[0, 1, :4, :] = -np.inf  # whole windows of -inf next to the padding
        x[1, 0, :, :3] = np.nan   # NaN runs at the left border
        x[1, 1] = -np.inf          # an all -inf plane
        for k, s, p, d, cm in [(3, 2, 1, 1, False), (3, 1, 1, 1, True), (2, 2, 1, 1, True), (2, 2, 0, 1, False),
                               (3, 3, 1, 2, True), ((2, 4), (1, 3), (1, 2), (2, 1), False)]:
            y, idx = PL.max_pool2d_forward(x, k, s, p, d, cm)
            ty, ti = F.max_pool2d(torch.tensor(x), k, s, p, d, cm, return_indices=True)
            np.testing.assert_array_equal(y, ty.numpy())
            np.testing.assert_array_equal(idx, ti.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_bwd_overlapping_windows(dtype, rng):
    """Overlapping windows route repeated argmax positions to the same dx (summed), 2 threads."""
    x = np.round(rng.standard_normal((3, 4, 21, 18)) * 2).astype(dtype)  # many ties
    y, idx = PL.max_pool2d_forward(x, 3, 1, 1, 1, False)
    dy = rng.standard_normal(y.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    F.max_pool2d(tx, 3, 1, 1, 1, False).backward(torch.tensor(dy))
    old = _threads(2)
    try:
        dx = PL.max_pool2d_backward(dy, idx, x.shape)
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype] * 10)


SIMD_AVG = [((1, 2, 9, 15), 3, 2, 1, False), ((2, 1, 8, 16), 3, 2, 1, True), ((1, 1, 11, 17), 2, 2, 0, True),
            ((1, 1, 70, 131), 3, 1, 1, False), ((2, 1, 13, 47), 3, 3, 1, True), ((1, 2, 12, 37), (3, 4), (2, 3), (1, 2), True),
            ((3, 1, 6, 31), 4, 2, 2, True), ((1, 1, 33, 20), (5, 1), (3, 1), (2, 0), False),
            ((2, 3, 28, 28), 2, 2, 0, False), ((1, 1, 9, 37), 2, 2, 0, False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", SIMD_AVG, ids=[f"v{i}" for i in range(len(SIMD_AVG))])
def test_avg_pool_simd_paths(cfg, dtype, rng, isa):
    xs, k, s, p, cm = cfg
    x = rng.standard_normal(xs)
    for inc in (True, False):
        tx = torch.tensor(x, requires_grad=True)
        ty = F.avg_pool2d(tx, k, s, p, cm, inc)
        dy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        for nt in (1, 2):
            old = _threads(nt)
            try:
                y = PL.avg_pool2d_forward(x.astype(dtype), k, s, p, cm, inc)
                dx = PL.avg_pool2d_backward(dy.astype(dtype), xs, k, s, p, cm, inc)
            finally:
                fastconv.set_num_threads(old)
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
            np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,out", [((2, 3, 14, 14), (7, 7)), ((1, 2, 12, 18), (4, 3)), ((2, 5, 7, 7), 1),
                                    ((1, 3, 23, 29), (1, 1)), ((1, 1, 40, 40), 1), ((1, 2, 9, 6), (9, 6)),
                                    ((2, 3, 13, 29), (5, 7)), ((1, 2, 5, 40), (3, 17)), ((1, 1, 3, 4), (5, 9))])
def test_adaptive_avg_pool_fast_paths(xs, out, dtype, rng, isa):
    """Global pooling (per-plane reduction, > 256-element planes), bins that tile the input
    (average-pool kernel) and general overlapping / upsampling bins (separable passes) against
    PyTorch, with NaN propagation."""
    x = rng.standard_normal(xs) + 3.0  # an offset makes float32 summation error visible
    x[0, 0, 0, 0] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    ty = F.adaptive_avg_pool2d(tx, out)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    y = PL.adaptive_avg_pool2d_forward(x.astype(dtype), out)
    dx = PL.adaptive_avg_pool2d_backward(dy.astype(dtype), xs)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype] * 4)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])


def test_gradcheck_cython_pools():
    """End to end through the autograd Functions on the Cython backend (float64 central differences),
    covering the phase-plane, 2x2 direct, row-gather backward, global and general adaptive paths."""
    from fastconv import functional as FF
    from fastconv.tensor import Tensor
    from fastconv.testing import gradcheck

    rng = np.random.default_rng(13)
    x = Tensor(rng.permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) * 0.1, requires_grad=True)  # distinct values
    assert gradcheck(lambda t: FF.max_pool2d(t, 3, 2, 1, ceil_mode=True, backend="cython"), [x])
    assert gradcheck(lambda t: FF.max_pool2d(t, 2, 2, 0, backend="cython"), [x])
    assert gradcheck(lambda t: FF.max_pool2d(t, 2, 1, 0, dilation=2, backend="cython"), [x])
    assert gradcheck(lambda t: FF.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False, backend="cython"), [x])
    assert gradcheck(lambda t: FF.avg_pool2d(t, 2, 2, 0, backend="cython"), [x])
    assert gradcheck(lambda t: FF.adaptive_avg_pool2d(t, (4, 3), backend="cython"), [x])
    assert gradcheck(lambda t: FF.adaptive_avg_pool2d(t, 1, backend="cython"), [x])


def test_large_outputs_streaming_stores(rng):
    """Outputs of 8 MB or more are written with non-temporal stores (forward y / argmax, max-pool
    dx): same answers as PyTorch, one thread and two."""
    x = rng.standard_normal((1, 16, 384, 384)).astype(np.float32)  # 9.4 MB in; y + argmax 7 MB
    x[0, 3, 100, 100] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    ty, ti = F.max_pool2d(tx, 3, 1, 1, return_indices=True)  # 28 MB of y + argmax
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(dy))
    for nt in (1, 2):
        old = _threads(nt)
        try:
            y, idx = PL.max_pool2d_forward(x, 3, 1, 1, 1, False)
            dx = PL.max_pool2d_backward(dy, idx, x.shape)  # 9.4 MB dx
            a = PL.avg_pool2d_forward(x, 3, 1, 1, False, True)  # 9.4 MB y
        finally:
            fastconv.set_num_threads(old)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a, F.avg_pool2d(torch.tensor(x), 3, 1, 1).numpy(), rtol=1e-5, atol=1e-6)
