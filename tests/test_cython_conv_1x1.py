"""The Cython 1x1 (pointwise) conv forward (``_conv_1x1.h`` / ``_conv_1x1.pxi``).

float32 on AVX-512 CPUs runs the unpacked 8x48 kernel: 48-column panels over the
column space of all images side by side (a panel's 16-lane vectors may take lanes
from two images), 8-row blocks of W with a row tail, bias in the epilogue, work
units split evenly over the items.  The shapes below hit: columns not a multiple
of 16/48, panels spanning 2+ images, hw < 16 (OpenBLAS fallback), K not a multiple
of 8, N = 1, C = 1, groups, bias / no bias, many threads on few units.  Each runs
with the kernel on and off (the OpenBLAS fallback, also float64's path) against
PyTorch in float64.

Backward-weight (``_conv_1x1_bw.h``): dW += dY . X^T with the reduction over the column
space; A = the operand with more rows (K >= C: dY, else X, output transposed), 6-row
blocks, B packed transposed in 64-row panels (16 x 16 transposes, masked at the ends of
per-image runs), chunks of 256 columns spanning images, parts = reduction segments x row
ranges.  The shapes hit both orientations, M % 6 tails, Nv not a multiple of 16 / 64,
several panels, chunks crossing images, segments split over parts (L >= 2048), empty row
ranges, hw < 16, groups, threads 1/2/3, prefetches off, and the plain-loop fallback.
"""
import numpy as np
import pytest
import torch

import fastconv
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")

F = torch.nn.functional
HAS_AVX512 = CV._pw_use_avx512()

# (N, C, H, W, K, groups)
SHAPES = [
    (1, 1, 1, 1, 1, 1),        # hw < 16: BLAS path even with AVX-512
    (2, 17, 9, 11, 13, 1),     # hw 99: panels across the image boundary, K tail 5
    (3, 64, 7, 7, 130, 1),     # hw 49 (ResNet res5 size), K tail 2, 17 row blocks
    (5, 7, 4, 4, 9, 1),        # hw 16: every vector of a panel from one image, panels span 3
    (3, 5, 1, 17, 3, 1),       # hw 17: lanes split 1 / 15, K < 8
    (7, 3, 2, 9, 21, 1),       # hw 18
    (1, 40, 10, 10, 16, 1),    # N = 1: 3 panels, last one partial (4 columns)
    (1, 8, 12, 12, 8, 1),      # hw 144 = 3 whole panels, one row block
    (4, 6, 5, 5, 8, 2),        # groups 2
    (3, 8, 7, 7, 12, 4),       # groups 4, Kg 3
    (2, 300, 6, 9, 24, 1),     # deep C (prefetch share per block > 1 row)
    (1, 3, 4, 5, 72, 1),       # K 72 = 9 blocks, C 3 < blocks (empty prefetch shares)
]


def _ref(x, w, b, groups):
    t = lambda a: None if a is None else torch.from_numpy(a).double()
    return F.conv2d(t(x), t(w), t(b), groups=groups).numpy()


@pytest.fixture(params=[True, False], ids=["kernel", "blas"])
def kernel(request):
    if request.param and not HAS_AVX512:
        pytest.skip("CPU without AVX-512F: only the BLAS path exists")
    prev = CV._pw_use_avx512()
    CV._pw_use_avx512(request.param)
    yield request.param
    CV._pw_use_avx512(prev)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_float64_torch(kernel, shape, bias, dtype):
    N, C, H, W, K, g = shape
    rng = np.random.default_rng(hash(shape) % 2 ** 32)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // g, 1, 1)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    y = CV.conv2d_forward(x, w, b, 1, 0, 1, g, algo="1x1")
    assert y.dtype == dtype and y.shape == (N, K, H, W)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert rel_error(y, _ref(x, w, b, g)) < tol
    # every element, not just the norm (a missed store or a stray lane shows here)
    np.testing.assert_allclose(y, _ref(x, w, b, g), rtol=1e-3 if dtype == np.float32 else 1e-10,
                               atol=1e-4 if dtype == np.float32 else 1e-11)


@pytest.mark.parametrize("nt", [1, 2, 5])
def test_thread_counts(kernel, nt):
    """Any split of the work units over threads gives the right y, every element written
    (the output comes from np.empty: a missed store leaves garbage)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 20, 7, 9)).astype(np.float32)
    w = rng.standard_normal((11, 20, 1, 1)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    prev = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(nt)
        y = CV.conv2d_forward(x, w, b, 1, 0, 1, 1, algo="1x1")
    finally:
        fastconv.set_num_threads(prev)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, _ref(x, w, b, 1), rtol=1e-4, atol=1e-4)


def test_nan_propagates_and_empty_batch(kernel):
    x = np.ones((2, 9, 6, 6), np.float32)
    x[1, 4, 2, 3] = np.nan
    w = np.ones((10, 9, 1, 1), np.float32)
    y = CV.conv2d_forward(x, w, None, 1, 0, 1, 1, algo="1x1")
    assert np.isnan(y[1, :, 2, 3]).all()
    assert np.isfinite(np.delete(y.reshape(2, 10, 36)[1], 2 * 6 + 3, axis=1)).all() and np.isfinite(y[0]).all()
    e = CV.conv2d_forward(np.ones((0, 9, 6, 6), np.float32), w, None, 1, 0, 1, 1)
    assert e.shape == (0, 10, 6, 6)


def test_non_contiguous_input_and_auto_algo(kernel):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 12, 8, 10)).astype(np.float32)[:, ::2]  # strided channels
    w = rng.standard_normal((9, 6, 1, 1)).astype(np.float32)
    y = CV.conv2d_forward(x, w, None, 1, 0, 1, 1)  # auto picks '1x1'
    np.testing.assert_allclose(y, _ref(np.ascontiguousarray(x), w, None, 1), rtol=1e-4, atol=1e-4)


def test_hook_reports_setting():
    prev = CV._pw_use_avx512()
    try:
        assert CV._pw_use_avx512(False) is False
        assert CV._pw_use_avx512(True) is HAS_AVX512
    finally:
        CV._pw_use_avx512(prev)


@pytest.mark.skipif(not HAS_AVX512, reason="CPU without AVX-512F: the kernel does not run")
def test_without_panel_buffer_plain_loops():
    """If the panel buffer cannot be allocated the kernel falls back to plain loops: same y."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 11, 5, 7)).astype(np.float32)
    w = rng.standard_normal((10, 11, 1, 1)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    prev = CV._pw_use_avx512()
    try:
        CV._pw_use_avx512(True)
        CV._pw_no_buffer(True)
        y = CV.conv2d_forward(x, w, b, 1, 0, 1, 1, algo="1x1")
    finally:
        CV._pw_no_buffer(False)
        CV._pw_use_avx512(prev)
    np.testing.assert_allclose(y, _ref(x, w, b, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not HAS_AVX512, reason="CPU without AVX-512F: the kernel does not run")
@pytest.mark.parametrize("shift", [0, 1, 4, 12, 15])
@pytest.mark.parametrize("shape", [(3, 9, 4, 8, 11, 1), (2, 5, 4, 4, 17, 1), (2, 6, 7, 7, 8, 2)],
                         ids=["hw32", "hw16", "hw49g2"])
def test_panel_shift(shift, shape):
    """Panels that start `shift` columns early (as when y's rows are not 64-byte aligned):
    the first panel's low lanes and the last panel's high lanes are masked off."""
    N, C, H, W, K, g = shape
    rng = np.random.default_rng(11)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C // g, 1, 1)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    prev, prev_nt = CV._pw_use_avx512(), fastconv.get_num_threads()
    try:
        CV._pw_use_avx512(True)
        CV._pw_force_shift(shift)
        for nt in (1, 3):
            fastconv.set_num_threads(nt)
            y = CV.conv2d_forward(x, w, b, 1, 0, 1, g, algo="1x1")
            np.testing.assert_allclose(y, _ref(x, w, b, g), rtol=1e-4, atol=1e-4)
    finally:
        CV._pw_force_shift(-1)
        CV._pw_use_avx512(prev)
        fastconv.set_num_threads(prev_nt)


# backward-input through the same kernel (W read transposed); not yet called by
# conv2d_backward_input, so driven through the module's _pw_backward_input
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nchunk", [1, 3])
def test_backward_input_matches_float64_torch(kernel, shape, dtype, nchunk):
    N, C, H, W, K, g = shape
    rng = np.random.default_rng(hash(shape) % 2 ** 32 + 1)
    dy = rng.standard_normal((N, K, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // g, 1, 1)).astype(dtype)
    dx = CV._pw_backward_input(dy, w, g, nchunk)
    ref = torch.nn.grad.conv2d_input((N, C, H, W), torch.from_numpy(w).double(), torch.from_numpy(dy).double(),
                                     groups=g).numpy()
    assert dx.dtype == dtype and dx.shape == (N, C, H, W)
    assert rel_error(dx, ref) < (2e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(dx, ref, rtol=1e-3 if dtype == np.float32 else 1e-10,
                               atol=1e-4 if dtype == np.float32 else 1e-11)


@pytest.mark.skipif(not HAS_AVX512, reason="CPU without AVX-512F: the kernel does not run")
@pytest.mark.parametrize("shift", [0, 5, 12])
def test_backward_input_panel_shift(shift):
    rng = np.random.default_rng(13)
    dy = rng.standard_normal((3, 11, 4, 8)).astype(np.float32)
    w = rng.standard_normal((11, 19, 1, 1)).astype(np.float32)
    ref = torch.nn.grad.conv2d_input((3, 19, 4, 8), torch.from_numpy(w).double(), torch.from_numpy(dy).double()).numpy()
    try:
        CV._pw_force_shift(shift)
        dx = CV._pw_backward_input(dy, w, 1, 2)
    finally:
        CV._pw_force_shift(-1)
    np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- backward-weight
BW_SHAPES = SHAPES + [
    (3, 70, 15, 20, 130, 1),   # A = dY (M 130, tail 4), Nv 70: 2 panels, chunks cross images (hw 300)
    (2, 130, 15, 20, 70, 1),   # A = X, dW^T: the transposed add with m / j tails
    (1, 200, 48, 48, 24, 1),   # N = 1, L 2304: reduction segments over the parts
    (2, 9, 32, 40, 7, 1),      # L 2560, M 9: more parts than row blocks (empty ranges)
    (4, 64, 7, 7, 64, 1),      # K = C, 7x7: a chunk spans 6 images
    (2, 16, 3, 5, 40, 2),      # groups 2, hw 15 < 16
]


def _ref_dw(dy, x, K, g):
    return torch.nn.grad.conv2d_weight(torch.from_numpy(x).double(), (K, x.shape[1] // g, 1, 1),
                                       torch.from_numpy(dy).double(), groups=g).numpy()


def _bw(dy, x, K, g, nt):
    prev = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(nt)
        return CV.conv2d_backward_weight(dy, x, (K, x.shape[1] // g, 1, 1), 1, 0, 1, g, algo="1x1")
    finally:
        fastconv.set_num_threads(prev)


@pytest.mark.parametrize("shape", BW_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nt", [1, 3])
def test_backward_weight_matches_float64_torch(kernel, shape, dtype, nt):
    N, C, H, W, K, g = shape
    rng = np.random.default_rng(hash(shape) % 2 ** 32 + 2)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    dy = rng.standard_normal((N, K, H, W)).astype(dtype)
    dw = _bw(dy, x, K, g, nt)
    ref = _ref_dw(dy, x, K, g)
    assert dw.dtype == dtype and dw.shape == (K, C // g, 1, 1)
    assert rel_error(dw, ref) < (2e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(dw, ref, rtol=1e-3 if dtype == np.float32 else 1e-10,
                               atol=1e-3 if dtype == np.float32 else 1e-10)


@pytest.mark.skipif(not HAS_AVX512, reason="CPU without AVX-512F: the kernel does not run")
@pytest.mark.parametrize("mode", ["no_buffer", "no_prefetch", "kc17", "kc1", "minseg1"])
@pytest.mark.parametrize("nt", [1, 2])
def test_backward_weight_fallbacks_and_settings(mode, nt):
    """Plain loops when the part buffer cannot be allocated; prefetches off; chunks of 17 / 1
    columns (chunk ends inside 16-column blocks, one piece a column); a segment per part:
    the same dW."""
    rng = np.random.default_rng(17)
    shapes = [(2, 70, 15, 20, 13, 1), (3, 11, 12, 12, 20, 1), (2, 9, 32, 40, 7, 1), (3, 20, 5, 5, 80, 2)]
    prev = CV._pw_use_avx512()
    defaults = CV._pwb_tune()
    settings = {"no_prefetch": dict(pfa=False, pfb=False), "kc17": dict(kc=17), "kc1": dict(kc=1),
                "minseg1": dict(minseg=1)}
    try:
        CV._pw_use_avx512(True)
        for N, C, H, W, K, g in shapes:
            x = rng.standard_normal((N, C, H, W)).astype(np.float32)
            dy = rng.standard_normal((N, K, H, W)).astype(np.float32)
            if mode == "no_buffer":
                CV._pw_no_buffer(True)
            else:
                CV._pwb_tune(**settings[mode])
            dw = _bw(dy, x, K, g, nt)
            CV._pw_no_buffer(False)
            CV._pwb_tune(*defaults)
            np.testing.assert_allclose(dw, _ref_dw(dy, x, K, g), rtol=1e-4, atol=1e-3)
    finally:
        CV._pw_no_buffer(False)
        CV._pwb_tune(*defaults)
        CV._pw_use_avx512(prev)


def test_backward_weight_tune_hook_validates():
    defaults = CV._pwb_tune()
    assert defaults == (True, True, 256, 1024)
    with pytest.raises(ValueError, match="kc"):
        CV._pwb_tune(kc=0)
    with pytest.raises(ValueError, match="minseg"):
        CV._pwb_tune(minseg=0)
    assert CV._pwb_tune() == defaults


@pytest.mark.parametrize("nt", [1, 2])
def test_backward_weight_nan_and_empty_batch(kernel, nt):
    x = np.ones((2, 9, 6, 6), np.float32)
    x[1, 4, 2, 3] = np.nan
    dy = np.ones((2, 70, 6, 6), np.float32)
    dw = _bw(dy, x, 70, 1, nt)
    assert np.isnan(dw[:, 4]).all() and np.isfinite(np.delete(dw, 4, axis=1)).all()
    np.testing.assert_allclose(np.delete(dw, 4, axis=1), 72.0)
    dw = _bw(np.ones((2, 5, 6, 6), np.float32), x, 5, 1, nt)  # A = X: the NaN row of dW^T
    assert np.isnan(dw[:, 4]).all() and np.isfinite(np.delete(dw, 4, axis=1)).all()
    e = CV.conv2d_backward_weight(np.ones((0, 5, 6, 6), np.float32), np.ones((0, 9, 6, 6), np.float32),
                                  (5, 9, 1, 1), 1, 0, 1, 1)
    assert e.shape == (5, 9, 1, 1) and not e.any()
