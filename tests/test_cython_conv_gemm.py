"""The packed-GEMM conv path (kernels/cython/_conv_gemm.{pxi,h}: AVX-512 8x48 micro-kernel,
im2col straight into packed panels, column space spanning images) against PyTorch in
float64, and against the OpenBLAS path it replaces.  Shapes are chosen for the edges:
K not a multiple of 8, C*R*S not a multiple of 48 (and several 48-panels), chunks that
start mid-row and span images, strides / padding / dilation, depth blocking (PK_KC),
tiny workspaces (many chunks) and 1-3 threads."""
import zlib

import numpy as np
import pytest
import torch

import fastconv
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
F = torch.nn.functional
needs_packed = pytest.mark.skipif(not getattr(CV, "_PK_OK", False), reason="CPU without AVX-512F: packed path off")

# (x shape, K, (R, S), stride, padding, dilation)
CASES = [
    ((3, 6, 14, 14), 16, (5, 5), 1, 0, 1),       # lenet c3: 100 columns per image, images share chunks
    ((2, 5, 13, 11), 13, (3, 3), 1, 1, 1),       # K = 13 (two A panels, 3 padding rows)
    ((2, 3, 23, 21), 10, (7, 7), 2, 3, 1),       # stem-like: stride 2, crs 147 (4 B panels)
    ((1, 20, 9, 9), 24, (3, 3), 2, 1, 1),        # strided, crs 180
    ((2, 8, 11, 12), 7, (5, 5), 1, 2, 1),        # alexnet-like 5x5 pad 2, crs 200
    ((2, 4, 10, 9), 5, (3, 2), (1, 2), (2, 0), (2, 1)),  # asymmetric stride / pad / dilation
    ((1, 1, 5, 5), 1, (5, 5), 1, 0, 1),          # one output pixel, K = 1, C = 1
    ((4, 2, 6, 7), 3, (1, 1), 2, 1, 1),          # 1x1 with stride and padding (not the '1x1' algo)
    ((2, 3, 4, 4), 6, (3, 3), 1, 4, 1),          # padding larger than the image
    ((2, 3, 9, 10), 4, (3, 2), 1, (1, 2), (2, 3)),  # stride 1 + dilation (shifted-input paths)
    ((1, 2, 40, 45), 8, (3, 3), 2, 1, 1),        # stride 2, rows of 23 (16-wide AVX-512 gather + tail)
    ((2, 6, 9, 11), 5, (1, 1), 2, 0, 1),         # 1x1 stride 2, no padding: table gather on x itself
    ((2, 3, 38, 37), 33, (3, 3), 2, 0, 1),       # 3x3 stride 2, no padding, rows of 18; dW: taps variant
    ((1, 13, 10, 10), 17, (2, 2), 2, 1, 1),      # dx in 4 channel ranges of 4 (2x2 taps: even starts), tail 1
]


def _data(case, seed):
    xs, K, (R, S), st, pad, dil = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((K, xs[1], R, S))
    b = rng.standard_normal(K)
    y = F.conv2d(torch.tensor(x), torch.tensor(w), None, st, pad, dil)
    dy = rng.standard_normal(tuple(y.shape))
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    ty = F.conv2d(tx, tw, tb, st, pad, dil)
    ty.backward(torch.tensor(dy))
    truth = (ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy())
    return [v.astype(np.float32) for v in (x, w, b, dy)], truth


def _run(case, x, w, b, dy, monkeypatch=None):
    xs, K, ks, st, pad, dil = case
    if monkeypatch is not None:  # the shape rules off: every case takes the packed path
        monkeypatch.setattr(CV, "_pk_eligible", lambda dt, g, ws=None, which=-1, pq=0, f=CV._pk_eligible: f(dt, g))
    return (CV.conv2d_forward(x, w, b, st, pad, dil, 1, algo="gemm"),
            CV.conv2d_backward_input(dy, w, xs, st, pad, dil, 1, algo="gemm"),
            CV.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, 1, algo="gemm"))


@pytest.fixture
def knobs(monkeypatch):
    old = fastconv.config.get_num_threads()
    yield monkeypatch
    fastconv.set_num_threads(old)


@needs_packed
@pytest.mark.parametrize("case", CASES, ids=[f"c{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("mode", ["default", "tiny_chunks_3threads", "kc_blocks_2threads", "shift_always_2threads",
                                  "shift_never", "bw_taps_always_3threads"])
def test_packed_matches_torch(case, mode, knobs):
    if mode == "tiny_chunks_3threads":   # 48-column chunks: chunks start mid-row and mid-image
        knobs.setattr(CV, "PK_BYTES", 1)
        knobs.setattr(CV, "PK_BW_COLS", 16)  # backward-weight: 16-column chunks
        fastconv.set_num_threads(3)
    elif mode == "kc_blocks_2threads":   # depth passes of 16 (C accumulates across passes)
        knobs.setattr(CV, "PK_KC", 16)
        knobs.setattr(CV, "PK_BW_KC", 16)
        knobs.setattr(CV, "PK_PADCOPY", "always")  # forward im2col from the padded copy too
        fastconv.set_num_threads(2)
    elif mode == "shift_always_2threads":  # stride-1 forward over the padded width (no im2col)
        knobs.setattr(CV, "PK_SHIFT", "always")
        knobs.setattr(CV, "PK_BYTES", 30000)
        fastconv.set_num_threads(2)
    elif mode == "bw_taps_always_3threads":  # backward-weight: taps variant everywhere, 40-column chunks
        knobs.setattr(CV, "PK_BW_TAPS", "always")
        knobs.setattr(CV, "PK_BW_COLS", 40)
        fastconv.set_num_threads(3)
    else:  # im2col everywhere; the forward's im2col checks bounds on x itself (no padded copy)
        knobs.setattr(CV, "PK_SHIFT", "never")
        knobs.setattr(CV, "PK_PADCOPY", "never")
    (x, w, b, dy), truth = _data(case, zlib.crc32(repr(case).encode()))
    assert CV._pk_eligible(x.dtype, 1)
    for got, ref, name in zip(_run(case, x, w, b, dy, knobs), truth, ("forward", "backward_input", "backward_weight")):
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert rel_error(got, ref) <= 2e-6, (name, rel_error(got, ref))


@needs_packed
def test_packed_agrees_with_openblas_path(knobs):
    case = ((3, 7, 12, 10), 9, (3, 5), (2, 1), (1, 2), 1)
    (x, w, b, dy), truth = _data(case, 3)
    packed = _run(case, x, w, b, dy, knobs)
    knobs.setattr(CV, "use_packed", False)
    assert not CV._pk_eligible(x.dtype, 1)
    blas = _run(case, x, w, b, dy)
    for p, q, t in zip(packed, blas, truth):
        assert rel_error(p, q) <= 2e-6 and rel_error(q, t) <= 2e-6


def test_packed_path_scope():
    """float64 and grouped convs keep the BLAS path; auto picks 'gemm' (hence packed) for 5x5."""
    assert not CV._pk_eligible(np.dtype(np.float64), 1)
    assert not CV._pk_eligible(np.dtype(np.float32), 2)
    f32 = np.dtype(np.float32)
    assert all(CV._pk_eligible(f32, 1, (192, 64, 5, 5), d) == CV._PK_OK for d in (0, 1, 2))  # alexnet
    assert CV._pk_eligible(f32, 1, (64, 3, 7, 7), 0) == CV._PK_OK      # stem forward
    assert CV._pk_eligible(f32, 1, (64, 3, 7, 7), 2, 112 * 112) == CV._PK_OK  # stem dW: the taps variant
    assert CV._bw_taps_pays(64, 147) and CV._bw_taps_pays(256, 1152)   # stem, strided_3x3: taps variant
    assert not CV._bw_taps_pays(16, 150) and not CV._bw_taps_pays(40, 192)  # K fills 32-wide tiles badly
    assert not CV._pk_eligible(f32, 1, (16, 3, 3, 3), 2, 32 * 32)      # 27 of 48 columns, K 16: OpenBLAS
    assert CV._pk_eligible(f32, 1, (16, 6, 5, 5), 2, 100) == CV._PK_OK  # lenet_c3 dW: small images
    assert not CV._pk_eligible(f32, 1, (6, 1, 5, 5), 0)                # lenet_c1: depth 25
    assert not CV._pk_eligible(f32, 1, (6, 1, 5, 5), 1)                # lenet_c1 dx: depth 6
    assert not CV._pk_eligible(f32, 1, (120, 16, 5, 5), 0, 1)          # LeNet C5 (1x1 output): a dense layer
    assert CV._shift_pays(10, 10, 14, 48)                              # lenet_c3: 144 columns for 100
    assert not CV._shift_pays(1, 1, 5, 48)                             # C5: 48 columns for 1
    (x, w, b, dy), _ = _data(CASES[0], 0)
    x, w, b = (v.astype(np.float64) for v in (x, w, b))
    y = CV.conv2d_forward(x, w, b, 1, 0, 1, 1)
    ref = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b)).numpy()
    assert y.dtype == np.float64 and rel_error(y, ref) <= 1e-12


@needs_packed
def test_packed_nan_and_empty():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((11, 4, 3, 3)).astype(np.float32)
    x[2, 1, 4, 4] = np.nan
    y = CV.conv2d_forward(x, w, None, 1, 1, 1, 1, algo="gemm")
    assert np.isnan(y[2, :, 4, 4]).all() and np.isfinite(y[:2]).all() and np.isfinite(y[2, :, 0, 0]).all()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw = CV.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1, algo="gemm")
    assert np.isnan(dw[:, 1]).all() and np.isfinite(dw[:, 0]).all()
    dy[0, 3, 2, 2] = np.nan
    dx = CV.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1, algo="gemm")
    assert np.isnan(dx[0, :, 2, 2]).all() and np.isfinite(dx[1:]).all()
    e = np.zeros((0, 4, 9, 9), np.float32)
    assert CV.conv2d_forward(e, w, None, 1, 1, 1, 1, algo="gemm").shape == (0, 11, 9, 9)
    assert not CV.conv2d_backward_weight(np.zeros((0, 11, 9, 9), np.float32), e, w.shape, 1, 1, 1, 1).any()


@needs_packed
@pytest.mark.parametrize("case", [
    ((2, 3, 30, 29), 64, (7, 7), 2, 3, 1),     # stem-like: auto picks the taps variant (C*R*S 147)
    ((1, 5, 17, 19), 40, (3, 3), 2, 1, 1),     # K 40: a second, partly filled 32-wide dY^T panel; N = 1
    ((2, 4, 12, 11), 33, (5, 5), 1, 2, 1),     # 5x5: blocks of 8 taps across filter rows, crs 100 (tail 4)
], ids=["stem", "k40", "k33_5x5"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bw_taps_variant(case, threads, knobs):
    """Backward-weight taps variant (auto pick) against float64 torch, also in float64 (which
    keeps the OpenBLAS path) and with a NaN in x (it reaches exactly the taps that touch it)."""
    xs, K, (R, S), st, pad, dil = case
    fastconv.set_num_threads(threads)
    knobs.setattr(CV, "PK_BW_COLS", 64)  # several chunks, some spanning images
    (x, w, b, dy), (_, _, dw_ref) = _data(case, 11)
    assert CV._pk_eligible(x.dtype, 1, w.shape, 2, 1024) and CV._bw_taps_pays(K, xs[1] * R * S)
    dw = CV.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, 1, algo="gemm")
    assert dw.dtype == np.float32 and rel_error(dw, dw_ref) <= 2e-6
    dw64 = CV.conv2d_backward_weight(dy.astype(np.float64), x.astype(np.float64), w.shape, st, pad, dil, 1, algo="gemm")
    ref64 = torch.ops.aten.convolution_backward(
        torch.tensor(dy, dtype=torch.float64), torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
        None, [st] * 2, [pad] * 2, [dil] * 2, False, [0, 0], 1, [False, True, False])[1].numpy()
    assert dw64.dtype == np.float64 and rel_error(dw64, ref64) <= 1e-12
    x[0, 1, 5, 6] = np.nan
    dwn = CV.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, 1, algo="gemm")
    tn = torch.ops.aten.convolution_backward(torch.tensor(dy), torch.tensor(x), torch.tensor(w), None, [st] * 2,
                                             [pad] * 2, [dil] * 2, False, [0, 0], 1, [False, True, False])[1].numpy()
    assert (np.isnan(dwn) == np.isnan(tn)).all() and np.isnan(dwn).any() and not np.isnan(dwn).all()
