"""Cython Winograd F(2x2, 5x5) backward-weight ('winograd5' for conv2d_backward_weight).

Forced through ``conv``'s entry point and the module's own, against float64 PyTorch (the truth),
float32 PyTorch and the NumPy reference: odd and even planes, padding 0 to 4 (also asymmetric),
N = 1, C = 1, channel counts that are not multiples of the vector width (16 / 8) or the 4-row
register block, float32 and float64.  Blocks of tiles are forced small and odd (blocks start
mid-row and cross images) and the partial-sum slots varied; 1, 2 and 3 threads give bitwise
equal results (the slot sums do not depend on the thread count).

Tolerances (relative Frobenius error against float64 truth): float32 3e-5, float64 1e-12.
Measured: float32 0.4e-6 to 1.9e-6 on small shapes, 5.9e-6 on alexnet_5x5 (bound 2e-5 here),
float64 ~5e-16 to 1e-14.
"""
import zlib

import numpy as np
import pytest
import torch

from fastconv.kernels.reference import conv as REF
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
W5 = pytest.importorskip("fastconv.kernels.cython._conv_winograd5", reason="Cython Winograd-5 extension not built")

F = torch.nn.functional
TOL = {np.float32: 3e-5, np.float64: 1e-12}

# (N, C, H, W, K, padding)
SHAPES = [
    (1, 1, 7, 9, 2, 0),        # N = 1, C = 1, odd 3 x 5 output
    (2, 5, 9, 8, 3, 1),        # odd / even planes, padding 1, K = 3 (below the 4-row block)
    (2, 20, 11, 13, 5, 2),     # C = 20: one vector (float32) + a channel tail
    (1, 33, 8, 8, 19, 3),      # C = 33: two vectors + tail; K = 19; padding 3
    (3, 2, 5, 6, 4, 4),        # padding 4: 9 x 10 output, tiles mostly on padding
    (2, 3, 6, 45, 6, (1, 3)),  # wide rows: runs of 16 tiles and a shorter one, asymmetric padding
    (2, 16, 12, 10, 24, 2),    # even sizes, C = 16
]


def _data(N, C, H, W, K, pad, seed):
    rng = np.random.default_rng(seed)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    x = rng.standard_normal((N, C, H, W))
    dy = rng.standard_normal((N, K, H + 2 * ph - 4, W + 2 * pw - 4))
    return x, dy


def _torch_dw(x, dy, w_shape, pad, dtype):
    tx = torch.tensor(x, dtype=dtype)
    tw = torch.zeros(w_shape, dtype=dtype, requires_grad=True)
    F.conv2d(tx, tw, None, 1, pad).backward(torch.tensor(dy, dtype=dtype))
    return tw.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"s{i}" for i in range(len(SHAPES))])
def test_matches_torch_and_reference(shape, dtype, monkeypatch):
    N, C, H, W, K, pad = shape
    x, dy = _data(*shape, seed=zlib.crc32(repr(shape).encode()))
    w_shape = (K, C, 5, 5)
    truth = _torch_dw(x, dy, w_shape, pad, torch.float64)
    t32 = _torch_dw(x.astype(np.float32), dy.astype(np.float32), w_shape, pad, torch.float32)
    xd, dyd = x.astype(dtype), dy.astype(dtype)
    ref = REF.conv2d_backward_weight(dyd, xd, w_shape, 1, pad, 1, 1)
    pad2 = (pad, pad) if isinstance(pad, int) else pad
    dw = CV.conv2d_backward_weight(dyd, xd, w_shape, 1, pad, 1, 1, algo="winograd5")
    assert dw.dtype == dtype and dw.shape == w_shape
    for out in (dw, ref):
        assert rel_error(out, truth) <= TOL[dtype]
    assert rel_error(dw, ref) <= 2 * TOL[dtype]
    if dtype == np.float32:  # as close to float32 PyTorch as PyTorch is to the truth, within tol
        assert rel_error(dw, t32) <= TOL[dtype] + rel_error(t32, truth)
    # small odd blocks (mid-row starts, crossing images), slot counts, threads: bitwise equal per slots
    for tiles in (1, 3, 17, 64):
        monkeypatch.setattr(W5, "BW_TILES", tiles)
        for slots in (1, 2, 3):
            monkeypatch.setattr(W5, "BW_SLOTS", slots)
            outs = [W5.backward_weight(dyd, xd, pad2, np.empty(w_shape, dtype), nt) for nt in (1, 2, 3)]
            assert rel_error(outs[0], truth) <= TOL[dtype], (tiles, slots)
            for o in outs[1:]:
                np.testing.assert_array_equal(o, outs[0])


def test_alexnet_error_float32():
    """The documented float32 error on alexnet_5x5 (float32-exact data, float64 truth); 1 and 2
    threads bitwise equal."""
    x, dy = (v.astype(np.float32) for v in _data(8, 64, 27, 27, 192, 2, seed=5))
    truth = _torch_dw(x.astype(np.float64), dy.astype(np.float64), (192, 64, 5, 5), 2, torch.float64)
    dw = W5.backward_weight(dy, x, (2, 2), np.empty((192, 64, 5, 5), np.float32), 1)
    dw2 = W5.backward_weight(dy, x, (2, 2), np.empty((192, 64, 5, 5), np.float32), 2)
    assert rel_error(dw, truth) <= 2e-5
    np.testing.assert_array_equal(dw, dw2)
    # 'auto' takes it here (pick) and gives the same bits
    assert W5.pick("conv2d_backward_weight", x.shape, (192, 64, 5, 5), (2, 2)) == "winograd5"
    np.testing.assert_array_equal(CV.conv2d_backward_weight(dy, x, (192, 64, 5, 5), 1, 2, 1, 1), dw2)


def test_empty_batch_nan_and_errors():
    f32 = np.float32
    dw = CV.conv2d_backward_weight(np.ones((0, 4, 8, 8), f32), np.ones((0, 3, 8, 8), f32), (4, 3, 5, 5), 1, 2, 1, 1,
                                   algo="winograd5")
    assert dw.shape == (4, 3, 5, 5) and not dw.any()
    # NaN in dy: reaches its own channel's filters only (the transform reads past the odd edge
    # and the plane's end: those reads are selected away, so channel 0 stays finite)
    x = np.ones((1, 3, 11, 11), f32)
    dy = np.ones((1, 4, 11, 11), f32)
    dy[0, 1, 0, 0] = np.nan
    dy[0, 2, 5, 0] = np.nan
    dw = CV.conv2d_backward_weight(dy, x, (4, 3, 5, 5), 1, 2, 1, 1, algo="winograd5")
    assert np.isnan(dw[1]).all() and np.isnan(dw[2]).all()
    assert np.isfinite(dw[0]).all() and np.isfinite(dw[3]).all()
    x[0, 1, 4, 5] = np.nan
    dw = CV.conv2d_backward_weight(np.ones_like(dy), x, (4, 3, 5, 5), 1, 2, 1, 1, algo="winograd5")
    gemm = CV.conv2d_backward_weight(np.ones_like(dy), x, (4, 3, 5, 5), 1, 2, 1, 1, algo="gemm")
    assert np.isnan(gemm).any() and np.isnan(dw[np.isnan(gemm)]).all()
    # ineligible shapes forced to winograd5 raise ValueError naming it
    for x_shape, w_shape, stride, pad in (((1, 3, 11, 11), (4, 3, 5, 5), 2, 2),   # stride 2
                                          ((1, 3, 11, 11), (4, 3, 3, 3), 1, 1),   # 3x3 filter
                                          ((1, 3, 11, 11), (4, 3, 5, 5), 1, 5)):  # padding 5
        P = (x_shape[2] + 2 * pad - w_shape[2]) // stride + 1
        with pytest.raises(ValueError, match="winograd5"):
            CV.conv2d_backward_weight(np.ones((1, 4, P, P), f32), np.ones(x_shape, f32), w_shape, stride, pad, 1, 1,
                                      algo="winograd5")


def test_auto_pick_rule():
    """'auto' goes to winograd5 for backward-weight exactly where pick says so."""
    pick = W5.pick
    op = "conv2d_backward_weight"
    assert pick(op, (1, 64, 27, 27), (192, 64, 5, 5), (2, 2)) == "winograd5"
    assert pick(op, (4, 192, 13, 13), (256, 192, 5, 5), (2, 2)) == "winograd5"
    assert pick(op, (8, 32, 27, 27), (32, 32, 5, 5), (2, 2)) == "gemm"  # C, K < 64: measured slower
    assert pick(op, (1, 64, 12, 12), (64, 64, 5, 5), (2, 2)) == "gemm"  # 36 tiles
    setup = pytest.importorskip("fastconv.kernels.cython._conv_select")._setup
    assert setup(op, (8, 32, 27, 27), (32, 32, 5, 5), 1, 2, 1, 1, "auto", np.float32)[1] != "winograd5"
    assert setup(op, (2, 64, 13, 13), (64, 64, 5, 5), 1, 2, 1, 1, "auto", np.float32)[1] == "winograd5"
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 64, 13, 13), dtype=np.float32)
    dy = rng.standard_normal((2, 64, 13, 13), dtype=np.float32)
    np.testing.assert_array_equal(CV.conv2d_backward_weight(dy, x, (64, 64, 5, 5), 1, 2, 1, 1),
                                  CV.conv2d_backward_weight(dy, x, (64, 64, 5, 5), 1, 2, 1, 1, algo="winograd5"))
