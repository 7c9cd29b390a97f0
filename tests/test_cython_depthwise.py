"""Depthwise conv2d (C / groups == 1) SIMD kernels of the Cython backend's 'direct' algorithm.

Forward, backward-input and backward-weight against PyTorch (float64 truth) and the NumPy
reference, float32 and float64, at every instruction-set level this CPU runs (AVX-512 /
AVX2 / SSE2 builds of the same kernels): row tails (widths not multiples of the vector
width), narrow rows, odd sizes, N = 1, strides, dilation, channel multipliers, padding
0..3 (wider than the filter's reach), 3x3 / 5x5 / other filters.
"""
import numpy as np
import pytest
import torch

import fastconv
from fastconv.kernels.reference import conv as REF
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
DW = pytest.importorskip("fastconv.kernels.cython._conv_direct", reason="Cython conv extension not built")

F = torch.nn.functional
TOL = {np.float32: 2e-6, np.float64: 1e-13}
MAX_LEVEL = DW._simd_level(-1)
LEVELS = sorted({0, min(1, MAX_LEVEL), MAX_LEVEL})

# (N, C, H, W), multiplier K / C, (R, S), stride, padding, dilation
CASES = [
    ((2, 3, 7, 9), 1, (3, 3), 1, 1, 1),          # rows narrower than a vector
    ((1, 2, 20, 37), 1, (3, 3), 1, 1, 1),        # tails after full vectors, two-row blocks + odd last row
    ((2, 2, 17, 16), 1, (3, 3), 1, 0, 1),        # padding 0, width exactly 16
    ((1, 3, 11, 33), 2, (3, 3), 1, 2, 1),        # padding 2, multiplier 2 (K = 2C)
    ((1, 2, 9, 18), 1, (3, 3), 1, 3, 1),         # padding beyond the filter (backward: negative padding)
    ((2, 2, 15, 21), 1, (3, 3), 2, 1, 1),        # stride 2 (phase-split buffer, scatter backward)
    ((1, 2, 12, 40), 1, (3, 3), (2, 1), 1, 1),   # stride (2, 1)
    ((1, 2, 14, 19), 1, (3, 3), 1, 2, 2),        # dilation 2
    ((1, 3, 13, 23), 1, (5, 5), 1, 2, 1),        # 5x5
    ((2, 2, 16, 35), 3, (5, 5), 2, 2, 1),        # 5x5 stride 2, multiplier 3
    ((1, 2, 10, 12), 1, (7, 7), 1, 3, 1),        # generic filter
    ((1, 2, 9, 11), 2, (3, 2), (1, 2), (0, 1), (1, 2)),  # asymmetric everything
    ((2, 1, 6, 5), 1, (1, 1), 1, 0, 1),          # 1x1, C = 1
    ((1, 4, 1, 1), 1, (3, 3), 1, 1, 1),          # 1x1 image
    ((1, 2, 5, 64), 1, (3, 1), 3, (1, 0), 1),    # stride 3, 3x1
    ((1, 2, 9, 10), 2, (1, 3), 2, (0, 1), 1),    # stride > filter height: input rows no output reads
    # unpadded-input path (stride 1, 'same' or no column padding, rows >= a vector + S)
    ((1, 2, 13, 29), 1, (3, 3), 1, (2, 1), 1),   # odd row count, row padding != column padding
    ((1, 2, 11, 24), 2, (3, 3), 1, 1, 1),        # multiplier: backward-input accumulates
    ((2, 3, 9, 40), 2, (5, 5), 1, (0, 2), 1),    # 5x5 'same' columns, multiplier
    ((1, 2, 7, 45), 1, (5, 5), 1, 0, 1),         # 5x5 no padding
    ((1, 2, 6, 33), 1, (5, 5), 1, 2, 1),         # 5x5 'same', width = 1 + a multiple of every vector
    # shapes the SIMD kernels leave to the scalar loops
    ((1, 2, 5, 40), 1, (3, 3), 1, 9, 9),         # tap shift (S - 1) * dilation > 16
    ((1, 1, 3, 40), 2, (1, 33), 1, (0, 16), 1),  # filter wider than 32
]


def _data(case, dtype, seed=0):
    xs, mult, (R, S), st, pad, dil = case
    rng = np.random.default_rng(seed)
    C = xs[1]
    x = rng.standard_normal(xs)
    w = rng.standard_normal((C * mult, 1, R, S))
    b = rng.standard_normal(C * mult)
    y = F.conv2d(torch.tensor(x), torch.tensor(w), None, st, pad, dil, C)
    dy = rng.standard_normal(tuple(y.shape))
    return x, w, b, dy


def _truth(x, w, b, dy, st, pad, dil, groups):
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    ty = F.conv2d(tx, tw, tb, st, pad, dil, groups)
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()


@pytest.fixture
def level():
    yield
    DW._simd_level(-1)


def _run(case, dtype):
    xs, mult, ks, st, pad, dil = case
    x, w, b, dy = (v.astype(dtype) for v in _data(case, dtype))
    g = xs[1]
    y = CV.conv2d_forward(x, w, b, st, pad, dil, g, algo="direct")
    dx = CV.conv2d_backward_input(dy, w, xs, st, pad, dil, g, algo="direct")
    dw = CV.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g, algo="direct")
    return (x, w, b, dy), (y, dx, dw)


@pytest.mark.parametrize("lv", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[f"d{i}" for i in range(len(CASES))])
def test_depthwise_matches_torch(case, dtype, lv, level):
    assert DW._simd_level(lv) == lv
    (x, w, b, dy), outs = _run(case, dtype)
    truth = _truth(*(v.astype(np.float64) for v in (x, w, b, dy)), case[3], case[4], case[5], case[0][1])
    for name, got, ref in zip(("forward", "backward_input", "backward_weight"), outs, truth):
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert rel_error(got, ref) <= TOL[dtype], (name, rel_error(got, ref))


@pytest.mark.parametrize("case", CASES[::3], ids=[f"d{i}" for i in range(0, len(CASES), 3)])
def test_depthwise_matches_reference(case):
    (x, w, b, dy), (y, dx, dw) = _run(case, np.float64)
    xs, mult, ks, st, pad, dil = case
    g = xs[1]
    assert rel_error(y, REF.conv2d_forward(x, w, b, st, pad, dil, g)) <= 1e-13
    assert rel_error(dx, REF.conv2d_backward_input(dy, w, xs, st, pad, dil, g)) <= 1e-13
    assert rel_error(dw, REF.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g)) <= 1e-13


def test_auto_algo_takes_the_depthwise_path():
    case = ((2, 8, 14, 14), 1, (3, 3), 1, 1, 1)
    x, w, b, dy = (v.astype(np.float32) for v in _data(case, np.float32))
    y = CV.conv2d_forward(x, w, b, 1, 1, 1, 8)
    assert np.array_equal(y, CV.conv2d_forward(x, w, b, 1, 1, 1, 8, algo="direct"))
    ref = _truth(*(v.astype(np.float64) for v in (x, w, b, dy)), 1, 1, 1, 8)[0]
    assert rel_error(y, ref) <= TOL[np.float32]


def test_levels_agree_and_threads_are_deterministic(level):
    """Every instruction set gives the same answer within rounding; the thread count changes
    nothing (backward-weight sums each image's taps, then the images in a fixed order)."""
    case = ((4, 6, 23, 45), 2, (3, 3), 1, 1, 1)
    res = {}
    old = fastconv.config.get_num_threads()
    try:
        for lv in LEVELS:
            DW._simd_level(lv)
            for nt in (1, 2, 3):
                fastconv.set_num_threads(nt)
                res[lv, nt] = _run(case, np.float32)[1]
    finally:
        fastconv.set_num_threads(old)
    for lv in LEVELS:
        for nt in (2, 3):
            for a, b in zip(res[lv, 1], res[lv, nt]):
                assert np.array_equal(a, b), (lv, nt)
        for a, b in zip(res[LEVELS[0], 1], res[lv, 1]):
            assert rel_error(a, b) <= 2e-6, lv


def test_nan_and_inf_propagate_only_where_they_reach():
    C, H, W = 2, 9, 20
    x = np.zeros((1, C, H, W), np.float32)
    w = np.ones((C, 1, 3, 3), np.float32)
    x[0, 0, 4, 7] = np.nan
    x[0, 1, 0, 0] = np.inf
    y = CV.conv2d_forward(x, w, None, 1, 1, 1, C, algo="direct")
    assert np.isnan(y[0, 0, 3:6, 6:9]).all() and np.isfinite(np.delete(y[0, 0].ravel(), [r * W + c for r in range(3, 6) for c in range(6, 9)])).all()
    assert np.isposinf(y[0, 1, 0:2, 0:2]).all() and np.isfinite(y[0, 1, 2:]).all() and np.isfinite(y[0, 1, :, 2:]).all()
    # the padding stays zero for the next planes: nothing leaks into another image/channel
    x2 = np.concatenate([x, np.ones_like(x)])
    y2 = CV.conv2d_forward(x2, w, None, 1, 1, 1, C, algo="direct")
    assert np.isfinite(y2[1]).all()
    dy = np.ones_like(y2)
    dw = CV.conv2d_backward_weight(dy, x2, w.shape, 1, 1, 1, C, algo="direct")
    assert np.isnan(dw[0]).all() and np.isinf(dw[1]).any()
    dy = np.zeros_like(y2)
    dy[0, 0, 4, 7] = np.nan
    dx = CV.conv2d_backward_input(dy, w, x2.shape, 1, 1, 1, C, algo="direct")
    assert np.isnan(dx[0, 0, 3:6, 6:9]).all() and np.isfinite(dx[1]).all() and np.isfinite(dx[0, 1]).all()


def test_empty_batch():
    x = np.zeros((0, 4, 8, 8), np.float32)
    w = np.ones((4, 1, 3, 3), np.float32)
    assert CV.conv2d_forward(x, w, None, 1, 1, 1, 4, algo="direct").shape == (0, 4, 8, 8)
    dy = np.zeros((0, 4, 8, 8), np.float32)
    assert CV.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 4, algo="direct").shape == x.shape
    assert not CV.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 4, algo="direct").any()


def test_row_borders_mask_the_neighbouring_elements(level):
    """The unpadded path loads across each row's border (the neighbouring row / plane) and
    masks those lanes: NaN / inf next to a border must not leak into the other row."""
    for lv in LEVELS:
        DW._simd_level(lv)
        for dtype in (np.float32, np.float64):
            for k, pad in ((3, 1), (5, 2)):
                C, H, W = 3, 7, 37
                x = np.random.default_rng(1).standard_normal((2, C, H, W)).astype(dtype)
                x[:, :, :, -1] = np.nan  # last column of every row
                x[:, :, :, 0] = np.inf   # first column of every row
                w = np.ones((C, 1, k, k), dtype)
                y = CV.conv2d_forward(x, w, None, 1, pad, 1, C, algo="direct")
                assert np.isfinite(y[..., pad + 1:W - pad - 1]).all(), (lv, dtype, k)
                assert np.isnan(y[..., -1]).all() and np.isposinf(y[..., 0]).all(), (lv, dtype, k)
                dx = CV.conv2d_backward_input(x, w, x.shape, 1, pad, 1, C, algo="direct")
                assert np.isfinite(dx[..., pad + 1:W - pad - 1]).all(), (lv, dtype, k)


def _guarded(nbytes):
    """A writable float buffer of nbytes (a multiple of the page size) between two
    inaccessible pages: reading one element before or after it faults."""
    import ctypes
    import mmap
    page = mmap.PAGESIZE
    m = mmap.mmap(-1, nbytes + 2 * page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.mprotect(addr, page, 0) or libc.mprotect(addr + page + nbytes, page, 0):
        pytest.skip("mprotect unavailable")
    return m, page


@pytest.mark.skipif(not hasattr(__import__("os"), "sysconf"), reason="POSIX only")
def test_planes_at_inaccessible_pages(level):
    """x / dy filling whole pages between inaccessible ones: the kernels' reads across the
    first and last rows' borders must stay inside the array (a fault crashes the test)."""
    import mmap
    for lv in LEVELS:
        DW._simd_level(lv)
        for dtype in (np.float32, np.float64):
            n = mmap.PAGESIZE // np.dtype(dtype).itemsize
            for k, pad in ((3, 1), (5, 2)):
                shape = (1, 1, n // 32, 32)
                m, page = _guarded(mmap.PAGESIZE)
                x = np.frombuffer(m, dtype=dtype, count=n, offset=page).reshape(shape)
                x[...] = np.random.default_rng(2).standard_normal(shape)
                w = np.random.default_rng(3).standard_normal((1, 1, k, k)).astype(dtype)
                y = CV.conv2d_forward(x, w, None, 1, pad, 1, 1, algo="direct")
                dx = CV.conv2d_backward_input(x, w, shape, 1, pad, 1, 1, algo="direct")
                tx, tw = torch.tensor(x.astype(np.float64)), torch.tensor(w.astype(np.float64))
                assert rel_error(y, F.conv2d(tx, tw, None, 1, pad).numpy()) <= TOL[dtype]
                ref = torch.nn.grad.conv2d_input(shape, tw, tx, 1, pad).numpy()
                assert rel_error(dx, ref) <= TOL[dtype]
                del x
