"""Polyphase Winograd forward for stride-2 convolutions (Cython conv, ``algo='winograd_s2'``).

Against the NumPy reference in float64 (the truth, on the same float32 data) and PyTorch:
filters 1x1 .. 8x8 (also non-square), odd and even H / W, paddings 0 .. 3, N = 1, C = 1,
K not a multiple of 16 / 48 (the 8x16 / 8x32 tail kernels), bias or not, several tile blocks
and two threads.  Also: 'auto' picks it where ``pick`` says so, forced calls it cannot run
raise ValueError, N = 0 gives an empty result, NaN propagates.
"""
import numpy as np
import pytest
import torch

import fastconv
from fastconv.kernels.reference import conv as REF
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
WS = pytest.importorskip("fastconv.kernels.cython._conv_wino_s2", reason="Cython conv extension not built")
pytestmark = pytest.mark.skipif(not WS.AVAILABLE, reason="winograd_s2 needs a CPU with AVX-512F")

TOL = 5e-6  # measured 3e-7 .. 1e-6 (see the module docstring)

# (N, C, H, W), K, (R, S), padding
CASES = [
    ((1, 1, 9, 9), 3, (3, 3), 1),          # N = 1, C = 1, one tile
    ((2, 16, 28, 28), 24, (3, 3), 1),      # 7 x 7 tiles per image, K < 48 (8x32 kernel)
    ((1, 3, 13, 11), 5, (4, 2), 2),        # odd sizes, non-square filter, K = 5 (8x16 kernel)
    ((3, 5, 17, 20), 50, (3, 3), 0),       # K = 50: a full 48-panel and a 2-column tail
    ((2, 8, 30, 31), 100, (1, 1), 0),      # 1x1 stride 2, K = 100 (48 + 48 + 4)
    ((1, 4, 16, 15), 7, (2, 2), 3),        # padding 3 > filter: whole tiles of padding
    ((2, 6, 12, 12), 9, (4, 4), 2),        # 4x4 (the largest filter), even sizes
    ((1, 2, 8, 7), 4, (3, 1), (1, 0)),     # 3x1, asymmetric padding
    ((2, 4, 70, 66), 20, (3, 3), 1),       # 2 x 9 x 9 tiles: several blocks (threads)
    ((2, 3, 30, 30), 8, (7, 7), 3),        # stem-like 7x7: 2 x 2 blocks of sub-phases
    ((1, 2, 17, 19), 5, (5, 5), 2),        # 5x5, odd sizes
    ((2, 3, 20, 21), 50, (6, 8), 3),       # 6x8, K tail
    ((1, 4, 13, 12), 7, (7, 2), (3, 0)),   # 7x2: blocks along one side only
    ((1, 3, 8, 8), 4, (8, 8), 0),          # 8x8 (the largest), one output row of tiles
]


def _data(xs, K, RS, seed, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((K, xs[1]) + RS).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    return x, w, b


@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_forward_matches_reference_and_torch(case, nt):
    xs, K, RS, pad = CASES[case]
    x, w, b = _data(xs, K, RS, 10 + case, bias=case % 3 != 1)
    old = fastconv.get_num_threads()
    fastconv.set_num_threads(nt)
    try:
        y = CV.conv2d_forward(x, w, b, 2, pad, 1, 1, algo="winograd_s2")
    finally:
        fastconv.set_num_threads(old)
    b64 = None if b is None else b.astype(np.float64)
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b64, 2, pad, 1, 1)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert rel_error(y, ref) < TOL
    tb = None if b is None else torch.from_numpy(b)
    t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), tb, 2, pad).numpy()
    assert rel_error(y, t) < 2 * TOL


def test_gemm_and_winograd_s2_agree_on_a_resnet_downsampling_shape():
    x, w, b = _data((1, 32, 28, 28), 64, (3, 3), 3)
    yg = CV.conv2d_forward(x, w, b, 2, 1, 1, 1, algo="gemm")
    yw = CV.conv2d_forward(x, w, b, 2, 1, 1, 1, algo="winograd_s2")
    assert rel_error(yw, yg) < TOL


def test_auto_follows_pick():
    shapes = [((8, 128, 56, 56), (256, 128, 3, 3), (1, 1)), ((8, 3, 224, 224), (64, 3, 7, 7), (3, 3)),
              ((2, 16, 28, 28), (24, 16, 3, 3), (1, 1))]
    for xs, ws, pad in shapes:
        _, algo = CV._setup("conv2d_forward", xs, ws, 2, pad, 1, 1, "auto", np.float32)
        expect = WS.pick(xs, ws, pad) if not WS.eligible(np.float32, ws, (2, 2), (1, 1), 1) else None
        if expect == "winograd_s2":
            assert algo == "winograd_s2"
        else:
            assert algo != "winograd_s2"
        # float64 never goes to it
        _, algo64 = CV._setup("conv2d_forward", xs, ws, 2, pad, 1, 1, "auto", np.float64)
        assert algo64 != "winograd_s2"
    # strided_3x3 and resnet_conv1 (issue #4's shapes) are taken
    assert WS.pick((8, 128, 56, 56), (256, 128, 3, 3), (1, 1)) == "winograd_s2"
    assert WS.pick((8, 3, 224, 224), (64, 3, 7, 7), (3, 3)) == "winograd_s2"


@pytest.mark.parametrize("kw, dtype", [
    (dict(stride=1), np.float32),
    (dict(stride=(2, 1)), np.float32),
    (dict(dilation=2), np.float32),
    (dict(groups=2), np.float32),
    (dict(R=9), np.float32),
    (dict(), np.float64),
])
def test_forced_ineligible_raises(kw, dtype):
    R = kw.get("R", 3)
    x = np.zeros((1, 4, 12, 12), dtype)
    w = np.zeros((4, 4 // kw.get("groups", 1), R, R), dtype)
    with pytest.raises(ValueError, match="winograd_s2"):
        CV.conv2d_forward(x, w, None, kw.get("stride", 2), 1, kw.get("dilation", 1), kw.get("groups", 1),
                          algo="winograd_s2")


def test_backward_ops_reject_it():
    dy = np.zeros((1, 4, 6, 6), np.float32)
    w = np.zeros((4, 4, 3, 3), np.float32)
    x = np.zeros((1, 4, 12, 12), np.float32)
    with pytest.raises(ValueError, match="winograd_s2"):
        CV.conv2d_backward_input(dy, w, x.shape, 2, 1, 1, 1, algo="winograd_s2")
    with pytest.raises(ValueError, match="winograd_s2"):
        CV.conv2d_backward_weight(dy, x, w.shape, 2, 1, 1, 1, algo="winograd_s2")


def test_empty_batch_and_nan():
    x, w, b = _data((0, 3, 10, 10), 5, (3, 3), 1)
    y = CV.conv2d_forward(x, w, b, 2, 1, 1, 1, algo="winograd_s2")
    assert y.shape == (0, 5, 5, 5)
    x, w, b = _data((1, 3, 10, 10), 5, (3, 3), 2)
    x[0, 1, 4, 5] = np.nan
    y = CV.conv2d_forward(x, w, b, 2, 1, 1, 1, algo="winograd_s2")
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 2, 1, 1, 1)
    assert np.isnan(y[np.isnan(ref)]).all() and np.isnan(ref).any()
    # outputs whose 4x4 Winograd tile saw no NaN stay finite and right
    ok = ~np.isnan(y)
    assert ok.any() and np.allclose(y[ok], ref[ok], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shift", [0, 4, 12])
def test_whole_row_output_stores_at_any_alignment(shift):
    """Four side-by-side tiles go out as 16-float rows, streamed where 64-byte aligned: y at
    every 16-byte offset of a cache line (rows of 32 floats: all aligned or none)."""
    x, w, b = _data((2, 5, 64, 66), 21, (3, 3), 7)
    buf = np.empty(2 * 21 * 32 * 33 + 64, np.float32)
    base = (-(buf.ctypes.data // 4)) % 16 + shift
    y = buf[base:base + 2 * 21 * 32 * 33].reshape(2, 21, 32, 33)
    WS.forward(x, w, b, (1, 1), y, 2)
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 2, 1, 1, 1)
    assert rel_error(y, ref) < TOL
    x2 = np.ascontiguousarray(x[:, :, :, :64])  # rows of 32 outputs: 128 bytes
    n2 = 2 * 21 * 32 * 32
    buf2 = np.empty(n2 + 64, np.float32)
    base2 = (-(buf2.ctypes.data // 4)) % 16 + shift
    y2 = buf2[base2:base2 + n2].reshape(2, 21, 32, 32)
    WS.forward(x2, w, b, (1, 1), y2, 1)
    ref2 = REF.conv2d_forward(x2.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 2, 1, 1, 1)
    assert rel_error(y2, ref2) < TOL
