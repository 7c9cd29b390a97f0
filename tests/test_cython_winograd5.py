"""Cython Winograd F(2x2, 5x5) convolution ('winograd5') against PyTorch.

Forced through ``conv``'s entry points and the module's own: forward (with bias) and
backward-input, against float64 PyTorch (the truth) and float32 PyTorch, on odd plane sizes,
padding 0 to 4 (also asymmetric), N = 1, channel counts that are not multiples of any vector or
block width, float32 and float64.  Blocks of tiles and groups of output channels are forced
small and odd (blocks start mid-row and cross images; runs shorter than the 16-tile vector width)
and run on 1 to 3 threads, so the block / edge / strip / full-width-transform paths are all hit.

Tolerances (relative Frobenius error against float64 truth; the contract allows 1e-3 for
Winograd): float32 3e-5, float64 1e-12.  Measured: float32 0.6e-6 to 3.1e-6 (alexnet_5x5
forward 1.9e-6, backward-input 3.1e-6), float64 ~2e-15 to 6e-15.
"""
import zlib

import numpy as np
import pytest
import torch

import fastconv
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
W5 = pytest.importorskip("fastconv.kernels.cython._conv_winograd5", reason="Cython Winograd-5 extension not built")

F = torch.nn.functional
TOL = {np.float32: 3e-5, np.float64: 1e-12}

# (N, C, H, W, K, padding)
SHAPES = [
    (1, 3, 7, 9, 2, 0),        # N = 1, odd 3 x 5 output: one row of edge tiles, odd last column
    (2, 5, 9, 7, 3, 1),        # odd planes, padding 1
    (2, 4, 11, 13, 5, 2),      # padding 2 (backward-input then runs with padding 2)
    (1, 17, 8, 8, 19, 3),      # C, K not multiples of anything; padding 3
    (3, 2, 5, 5, 4, 4),        # padding 4 (backward-input with padding 0); 9 x 9 output
    (2, 3, 6, 45, 2, (1, 3)),  # wide rows: interior runs longer than a vector run (16 tiles), asymmetric
    (2, 16, 12, 10, 24, 2),    # enough work for conv to use several threads
]


def _data(N, C, H, W, K, pad, seed):
    rng = np.random.default_rng(seed)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C, 5, 5))
    b = rng.standard_normal(K)
    dy = rng.standard_normal((N, K, H + 2 * ph - 4, W + 2 * pw - 4))
    return x, w, b, dy


def _torch(x, w, b, dy, pad, dtype):
    t = lambda v: torch.tensor(v, dtype=dtype, requires_grad=True)  # noqa: E731
    tx, tw, tb = t(x), t(w), t(b)
    ty = F.conv2d(tx, tw, tb, 1, pad)
    ty.backward(torch.tensor(dy, dtype=dtype))
    return [v.detach().numpy() for v in (ty, tx.grad)]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 tiles, output channels in groups of 5, on two threads."""
    monkeypatch.setattr(W5, "TILES", 3)
    monkeypatch.setattr(W5, "KCH", 5)
    prev = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    yield
    fastconv.set_num_threads(prev)


@pytest.mark.parametrize("blocks", ["default", "small"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"s{i}" for i in range(len(SHAPES))])
def test_matches_torch(shape, dtype, blocks, request):
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    N, C, H, W, K, pad = shape
    x, w, b, dy = _data(*shape, seed=zlib.crc32(repr(shape).encode()))
    truth = _torch(x, w, b, dy, pad, torch.float64)
    t32 = _torch(*(v.astype(np.float32) for v in (x, w, b, dy)), pad, torch.float32)
    xd, wd, bd, dyd = (v.astype(dtype) for v in (x, w, b, dy))
    y = CV.conv2d_forward(xd, wd, bd, 1, pad, 1, 1, algo="winograd5")
    dx = CV.conv2d_backward_input(dyd, wd, x.shape, 1, pad, 1, 1, algo="winograd5")
    pad2 = (pad, pad) if isinstance(pad, int) else pad
    nt = fastconv.get_num_threads()
    dx2 = W5.backward_input(dyd, wd, pad2, np.empty(x.shape, dtype), nt, 2)
    for name, out, i in (("forward", y, 0), ("backward_input", dx, 1), ("module backward_input", dx2, 1)):
        assert out.dtype == dtype and out.shape == truth[i].shape, name
        err = rel_error(out, truth[i])
        assert err <= TOL[dtype], (name, err)
        if dtype == np.float32:  # as close to float32 PyTorch as PyTorch is to the truth, within tol
            assert rel_error(out, t32[i]) <= TOL[dtype] + rel_error(t32[i], truth[i]), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_sweep(dtype, monkeypatch):
    """Blocks of 1 tile to more than all tiles (fcw_bgemm's 2-vector column blocks and column / row
    tails), output-channel groups of 1 to all, 1 to 3 threads, with and without bias."""
    x, w, b, dy = _data(2, 6, 20, 19, 7, 2, seed=3)
    ref = F.conv2d(*(torch.tensor(v) for v in (x, w, b)), 1, 2).numpy()
    tx = torch.tensor(x, requires_grad=True)
    F.conv2d(tx, torch.tensor(w), None, 1, 2).backward(torch.tensor(dy))
    x, w, b, dy = (v.astype(dtype) for v in (x, w, b, dy))
    for tiles, kch in ((1, 1), (5, 3), (16, 4), (17, 7), (32, 2), (48, 64), (1000, 5)):
        monkeypatch.setattr(W5, "TILES", tiles)
        monkeypatch.setattr(W5, "KCH", kch)
        for nt in (1, 2, 3):
            y = W5.forward(x, w, b, (2, 2), np.empty(ref.shape, dtype), nt, 2)
            assert rel_error(y, ref) <= TOL[dtype], (tiles, kch, nt)
            y0 = W5.forward(x, w, None, (2, 2), np.empty(ref.shape, dtype), nt)
            assert rel_error(y0 + b[:, None, None], ref) <= TOL[dtype], (tiles, kch, nt)
            dx = W5.backward_input(dy, w, (2, 2), np.empty(x.shape, dtype), nt)
            assert rel_error(dx, tx.grad.numpy()) <= TOL[dtype], (tiles, kch, nt)


def test_alexnet_error_float32():
    """The documented float32 error on alexnet_5x5 (float32-exact data, float64 truth)."""
    x, w, b, dy = (v.astype(np.float32) for v in _data(8, 64, 27, 27, 192, 2, seed=5))
    truth = _torch(*(v.astype(np.float64) for v in (x, w, b, dy)), 2, torch.float64)
    y = CV.conv2d_forward(x, w, b, 1, 2, 1, 1, algo="winograd5")
    dx = CV.conv2d_backward_input(dy, w, x.shape, 1, 2, 1, 1, algo="winograd5")
    assert rel_error(y, truth[0]) <= 1e-5
    assert rel_error(dx, truth[1]) <= 1e-5


def test_empty_batch_nan_and_errors():
    w = np.ones((4, 3, 5, 5), np.float32)
    y = CV.conv2d_forward(np.ones((0, 3, 8, 8), np.float32), w, None, 1, 2, 1, 1, algo="winograd5")
    assert y.shape == (0, 4, 8, 8)
    x = np.ones((1, 3, 11, 11), np.float32)
    x[0, 1, 4, 5] = np.nan
    y = CV.conv2d_forward(x, w, None, 1, 2, 1, 1, algo="winograd5")
    direct = CV.conv2d_forward(x, w, None, 1, 2, 1, 1, algo="gemm")
    assert np.isnan(direct).any() and np.isnan(y[np.isnan(direct)]).all()  # NaN reaches every output it touches
    with pytest.raises(ValueError, match="tile"):
        W5.forward(x, w, None, (2, 2), np.empty((1, 4, 11, 11), np.float32), 1, 4)
    with pytest.raises(ValueError, match="winograd5"):
        CV.conv2d_forward(x, w, None, 2, 2, 1, 1, algo="winograd5")  # stride 2
    with pytest.raises(ValueError, match="winograd5"):
        CV.conv2d_backward_input(np.ones((1, 4, 17, 17), np.float32), w, x.shape, 1, 5, 1, 1, algo="winograd5")


def test_auto_uses_pick():
    """'auto' goes to winograd5 exactly where pick says so (alexnet_5x5: it does)."""
    x_shape, w_shape = (8, 64, 27, 27), (192, 64, 5, 5)
    for op in ("conv2d_forward", "conv2d_backward_input"):
        assert W5.pick(op, x_shape, w_shape, (2, 2)) == "winograd5", op
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    dy = rng.standard_normal((8, 192, 27, 27), dtype=np.float32)
    np.testing.assert_array_equal(CV.conv2d_forward(x, w, None, 1, 2, 1, 1),
                                  CV.conv2d_forward(x, w, None, 1, 2, 1, 1, algo="winograd5"))
    np.testing.assert_array_equal(CV.conv2d_backward_input(dy, w, x_shape, 1, 2, 1, 1),
                                  CV.conv2d_backward_input(dy, w, x_shape, 1, 2, 1, 1, algo="winograd5"))


def test_pick_rule():
    """GEMM where winograd5 measured slower: few tiles, padding waste; backward-input swaps C
    and K and tiles the H x W planes."""
    assert W5.pick("conv2d_forward", (8, 16, 32, 32), (32, 16, 5, 5), (0, 0)) == "winograd5"
    assert W5.pick("conv2d_backward_input", (8, 16, 32, 32), (32, 16, 5, 5), (0, 0)) == "winograd5"
    assert W5.pick("conv2d_forward", (1, 32, 12, 12), (32, 32, 5, 5), (2, 2)) == "gemm"  # 36 tiles
    assert W5.pick("conv2d_backward_input", (8, 16, 6, 6), (16, 16, 5, 5), (0, 0)) == "gemm"  # 2x2 dy
    assert W5.pick("conv2d_backward_input", (1, 64, 27, 27), (192, 64, 5, 5), (2, 2)) == "winograd5"
    assert W5.pick("conv2d_forward", (1, 512, 13, 13), (512, 512, 5, 5), (2, 2)) == "gemm"  # K C / T 5350
    assert W5.pick("conv2d_backward_weight", (8, 64, 27, 27), (192, 64, 5, 5), (2, 2)) == "winograd5"  # (_bw tests)
