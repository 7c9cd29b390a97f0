"""Cython Winograd convolution (F(2x2, 3x3) 'winograd', F(4x4, 3x3) 'winograd4') against PyTorch.

Each variant, forced through ``conv``'s entry points, against float64 PyTorch (the truth) and
float32 PyTorch: forward, backward-input and backward-weight (F(4x4) through the module, since conv
offers only the automatic choice there), on odd
plane sizes, padding 0 / 1 / 2, N = 1, channel counts that are not multiples of anything, float32
and float64.  Blocks of tiles are forced small and odd (crossing tile rows and images) and run
on two threads, so the block/edge/strip code paths are all exercised.

Tolerances (relative Frobenius error against float64 truth; the contract allows 1e-3 for
Winograd): F(2x2) float32 3e-6, F(4x4) float32 3e-5 (its transform constants 1/6, 1/24 and
factors up to 8 lose ~1-2 more digits), float64 1e-12 / 1e-11.  Measured on these shapes:
F(2x2) <= 6e-7, F(4x4) <= 5e-6 in float32.
"""
import zlib

import numpy as np
import pytest
import torch

import fastconv
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
WG = pytest.importorskip("fastconv.kernels.cython._conv_winograd", reason="Cython Winograd extension not built")

F = torch.nn.functional
TOL = {("winograd", np.float32): 3e-6, ("winograd4", np.float32): 3e-5,
       ("winograd", np.float64): 1e-12, ("winograd4", np.float64): 1e-11}
ALGOS = ["winograd", "winograd4"]

# (N, C, H, W, K, padding)
SHAPES = [
    (1, 3, 5, 7, 2, 1),      # N = 1, tiny odd planes: every tile an edge tile
    (2, 5, 9, 6, 3, 0),      # no padding, odd output 7 x 4
    (2, 4, 11, 13, 5, 2),    # padding 2 (backward-input then runs with padding 0)
    (1, 17, 8, 8, 19, 1),    # C, K not multiples of any vector or block width
    (3, 2, 3, 3, 4, 1),      # 3x3 planes (one F(4x4) tile covers the output)
    (2, 3, 6, 41, 2, (1, 2)),  # wide rows: runs of interior tiles longer than a vector run (16)
    (2, 16, 12, 10, 24, 1),  # enough work for conv to use both threads
]


def _data(N, C, H, W, K, pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C, 3, 3))
    b = rng.standard_normal(K)
    P = H + 2 * (pad if isinstance(pad, int) else pad[0]) - 2
    Q = W + 2 * (pad if isinstance(pad, int) else pad[1]) - 2
    dy = rng.standard_normal((N, K, P, Q))
    return x, w, b, dy


def _torch(x, w, b, dy, pad, dtype):
    t = lambda v: torch.tensor(v, dtype=dtype, requires_grad=True)  # noqa: E731
    tx, tw, tb = t(x), t(w), t(b)
    ty = F.conv2d(tx, tw, tb, 1, pad)
    ty.backward(torch.tensor(dy, dtype=dtype))
    return [v.detach().numpy() for v in (ty, tx.grad, tw.grad)]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 tiles (so blocks start mid-row and cross images) on two threads."""
    monkeypatch.setattr(WG, "BLOCK_BYTES", 1)
    monkeypatch.setattr(WG, "BW_BLOCK_BYTES", 1)
    monkeypatch.setattr(WG, "MIN_TILES", 3)
    monkeypatch.setattr(WG, "OWN_TILES", (3, 3))
    prev = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    yield
    fastconv.set_num_threads(prev)


@pytest.fixture
def blas(monkeypatch):
    """Component products through OpenBLAS instead of fcw_bgemm."""
    monkeypatch.setattr(WG, "OWN_GEMM_MAX_KC", 0)


@pytest.mark.parametrize("blocks", ["default", "small", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"s{i}" for i in range(len(SHAPES))])
@pytest.mark.parametrize("algo", ALGOS)
def test_matches_torch(algo, shape, dtype, blocks, request):
    if blocks != "default":
        request.getfixturevalue("small_blocks")
    if blocks == "blas":
        request.getfixturevalue("blas")
    N, C, H, W, K, pad = shape
    x, w, b, dy = _data(*shape, seed=zlib.crc32(repr(shape).encode()))
    truth = _torch(x, w, b, dy, pad, torch.float64)
    t32 = _torch(*(v.astype(np.float32) for v in (x, w, b, dy)), pad, torch.float32)
    xd, wd, bd, dyd = (v.astype(dtype) for v in (x, w, b, dy))
    tol = TOL[(algo, dtype)]
    y = CV.conv2d_forward(xd, wd, bd, 1, pad, 1, 1, algo=algo)
    dx = CV.conv2d_backward_input(dyd, wd, x.shape, 1, pad, 1, 1, algo=algo)
    pad2 = (pad, pad) if isinstance(pad, int) else pad
    tile = 4 if algo == "winograd4" else 2
    nt = fastconv.get_num_threads()
    # the module's backward_input reads the flipped, transposed filters straight from w
    dx2 = WG.backward_input(dyd, wd, pad2, np.empty(x.shape, dtype), nt, tile)
    outs = [("forward", y, 0), ("backward_input", dx, 1), ("module backward_input", dx2, 1)]
    if algo == "winograd":
        dw = CV.conv2d_backward_weight(dyd, xd, w.shape, 1, pad, 1, 1, algo=algo)
    else:  # conv offers no 'winograd4' backward-weight: the module's entry point, forced to F(4x4)
        dw = WG.backward_weight(dyd, xd, pad2, np.empty(w.shape, dtype), nt, 4)
    outs.append(("backward_weight", dw, 2))
    for name, out, i in outs:
        assert out.dtype == dtype and out.shape == truth[i].shape, name
        err = rel_error(out, truth[i])
        assert err <= tol, (name, err)
        if dtype == np.float32:  # and as close to float32 PyTorch as PyTorch is to the truth, within tol
            assert rel_error(out, t32[i]) <= tol + rel_error(t32[i], truth[i]), name


@pytest.mark.parametrize("gemm", ["own", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algo", ALGOS)
def test_block_sweep(algo, dtype, gemm, monkeypatch):
    """No bias; blocks of 1 tile to more than all tiles (fcw_bgemm's 2-vector column blocks and
    column/row tails: K = 7 is 4 rows + 3), 1 to 3 threads, all give the right result."""
    x, w, b, dy = _data(2, 6, 20, 19, 7, 1, seed=3)
    x, w = x.astype(dtype), w.astype(dtype)
    ref = F.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64), None, 1, 1).numpy()
    tol = TOL[(algo, dtype)]
    monkeypatch.setattr(WG, "BLOCK_BYTES", 1)
    if gemm == "blas":
        monkeypatch.setattr(WG, "OWN_GEMM_MAX_KC", 0)
    for mt in (1, 5, 16, 32, 40, 48, 100, 1000):
        monkeypatch.setattr(WG, "MIN_TILES", mt)
        monkeypatch.setattr(WG, "OWN_TILES", (mt, mt))
        y = CV.conv2d_forward(x, w, None, 1, 1, 1, 1, algo=algo)
        assert rel_error(y, ref) <= tol, mt
        for nt in (2, 3):  # the module entry point directly, several OpenMP threads
            y2 = WG.forward(x, w, None, (1, 1), np.empty_like(y), nt, 4 if algo == "winograd4" else 2)
            assert rel_error(y2, ref) <= tol, (mt, nt)


@pytest.mark.parametrize("gemm", ["own", "blas", "fused", "fused-separate-out"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algo", ALGOS)
def test_wide_mode(algo, dtype, gemm, monkeypatch):
    """Few tiles on several threads: one block, phases split over channels / components /
    output channels; 'fused': filters transformed per group of output channels right before
    their products (groups of 4 rows here, with a short last group), each group's output
    transform right after them (or, 'fused-separate-out', all output channels afterwards).
    Forced on small shapes; odd C, K and planes, bias; forward and backward-input (flipped
    filters)."""
    monkeypatch.setattr(WG, "WIDE_MIN_KC", 0)
    monkeypatch.setattr(WG, "WIDE_TILES", 1 << 20)
    monkeypatch.setattr(WG, "FUSE_MIN_KC", 1 << 40)
    if gemm == "blas":
        monkeypatch.setattr(WG, "OWN_GEMM_MAX_KC", 0)
    if gemm.startswith("fused"):
        monkeypatch.setattr(WG, "FUSE_OUTPUTS", gemm == "fused")
        monkeypatch.setattr(WG, "FUSE_MIN_KC", 0)
        monkeypatch.setattr(WG, "FUSE_TILES", 1 << 20)
        monkeypatch.setattr(WG, "FUSE_FILTERS", 1)
    for shape in ((2, 5, 9, 7, 6, 1), (1, 3, 5, 5, 2, 0), (3, 17, 8, 11, 9, 2)):
        x, w, b, dy = _data(*shape, seed=sum(shape))
        pad = shape[-1]
        ref = F.conv2d(*(torch.tensor(v) for v in (x, w, b)), 1, pad).numpy()
        x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
        tx, tw = torch.tensor(x.astype(np.float64), requires_grad=True), torch.tensor(w.astype(np.float64))
        F.conv2d(tx, tw, None, 1, pad).backward(torch.tensor(dy))
        dy = dy.astype(dtype)
        tile = 4 if algo == "winograd4" else 2
        for nt in (1, 2, 3):
            y = WG.forward(x, w, b, (pad, pad), np.empty(ref.shape, dtype), nt, tile)
            assert rel_error(y, ref) <= TOL[(algo, dtype)], (shape, nt)
            dx = WG.backward_input(dy, w, (pad, pad), np.empty(x.shape, dtype), nt, tile)
            assert rel_error(dx, tx.grad.numpy()) <= TOL[(algo, dtype)], (shape, nt)


def test_empty_batch_and_nan():
    w = np.ones((4, 3, 3, 3), np.float32)
    for algo in ALGOS:
        y = CV.conv2d_forward(np.ones((0, 3, 6, 6), np.float32), w, None, 1, 1, 1, 1, algo=algo)
        assert y.shape == (0, 4, 6, 6)
        x = np.ones((1, 3, 9, 9), np.float32)
        x[0, 1, 4, 5] = np.nan
        y = CV.conv2d_forward(x, w, None, 1, 1, 1, 1, algo=algo)
        direct = CV.conv2d_forward(x, w, None, 1, 1, 1, 1, algo="gemm")
        assert np.isnan(y[np.isnan(direct)]).all(), algo  # NaN reaches (at least) every output it touches
    dw = CV.conv2d_backward_weight(np.ones((0, 4, 6, 6), np.float32), np.ones((0, 3, 6, 6), np.float32),
                                   w.shape, 1, 1, 1, 1, algo="winograd")
    assert dw.shape == w.shape and not dw.any()


def test_pick_rule():
    assert WG.pick("conv2d_backward_weight", (8, 64, 56, 56), (64, 64, 3, 3), (1, 1)) == "winograd"
    # backward-weight's own choice (tile=0): F(4x4) with many output pixels, else F(2x2)
    for N, C, tile in ((16, 64, 4), (16, 16, 4), (1, 64, 2)):
        x, w, b, dy = (v.astype(np.float32) for v in _data(N, C, 12, 12, 64, 1, seed=C))
        auto = WG.backward_weight(dy, x, (1, 1), np.empty(w.shape, np.float32), 1)
        forced = WG.backward_weight(dy, x, (1, 1), np.empty(w.shape, np.float32), 1, tile)
        np.testing.assert_array_equal(auto, forced)
    with pytest.raises(ValueError, match="tile"):
        WG.backward_weight(dy, x, (1, 1), np.empty(w.shape, np.float32), 1, 3)
    for op in ("conv2d_forward", "conv2d_backward_input"):
        assert WG.pick(op, (8, 64, 56, 56), (64, 64, 3, 3), (1, 1)) == "winograd4"  # res2
        assert WG.pick(op, (64, 16, 32, 32), (16, 16, 3, 3), (1, 1)) == "winograd4"  # ResNet-20
        assert WG.pick(op, (8, 512, 7, 7), (512, 512, 3, 3), (1, 1)) == "winograd4"  # res5
        assert WG.pick(op, (8, 64, 2, 2), (64, 64, 3, 3), (1, 1)) == "winograd"  # 2x2 planes: 4x4 tiles waste 3/4
    # conv's 'auto' goes through pick and so agrees with the forced variant
    x, w, b, dy = (v.astype(np.float32) for v in _data(1, 16, 48, 48, 16, 1, seed=5))
    assert WG.pick("conv2d_forward", x.shape, w.shape, (1, 1)) == "winograd4"
    np.testing.assert_array_equal(CV.conv2d_forward(x, w, b, 1, 1, 1, 1),
                                  CV.conv2d_forward(x, w, b, 1, 1, 1, 1, algo="winograd4"))


def test_forward_rejects_bad_tile():
    x = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="tile"):
        WG.forward(x, np.ones((2, 2, 3, 3), np.float32), None, (1, 1), np.empty_like(x), 1, 3)
    with pytest.raises(ValueError, match="tile"):
        WG.backward_input(x, np.ones((2, 2, 3, 3), np.float32), (1, 1), np.empty_like(x), 1, 5)


def test_backward_input_auto_tile():
    """tile=0 takes pick's choice (F(4x4) on 12x12 planes) and matches conv's backward-input."""
    x, w, b, dy = (v.astype(np.float32) for v in _data(2, 5, 12, 12, 7, 1, seed=11))
    dx = WG.backward_input(dy, w, (1, 1), np.empty(x.shape, np.float32), 1)
    forced = WG.backward_input(dy, w, (1, 1), np.empty(x.shape, np.float32), 1, 4)
    np.testing.assert_array_equal(dx, forced)
    np.testing.assert_allclose(dx, CV.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1, algo="winograd4"),
                               rtol=1e-5, atol=1e-5)


@pytest.fixture(params=["x4", "generic"])
def x4_mode(request):
    """float32 F(4x4) transforms: the AVX-512 multi-row runs (where the CPU has AVX-512F) or the
    generic one-row runs; both must give the same answer."""
    prev = WG._set_x4(request.param == "x4")
    yield request.param
    WG._set_x4(prev)


@pytest.mark.parametrize("tile", [4, 2])
@pytest.mark.parametrize("blocks", [1, 3, 5, 13, 1000])
@pytest.mark.parametrize("HW", [(3, 3), (4, 4), (5, 9), (7, 7), (9, 5), (16, 16), (14, 30), (6, 71)])
def test_x4_runs(HW, blocks, tile, x4_mode, monkeypatch):
    """Runs of up to 16 lanes cut across tile rows and images (1 to 35 tiles per row, partial
    edge tiles, blocks that start mid-row), forward / backward-input / backward-weight in float32
    F(4x4) and F(2x2) (whose AVX-512 path covers the input and dy tiles), with bias, one and two
    threads."""
    H, W = HW
    x, w, b, dy = _data(3, 5, H, W, 6, 1, seed=H * 100 + W)
    x, w, b, dy = (v.astype(np.float32) for v in (x, w, b, dy))
    truth = _torch(x, w, b, dy, 1, torch.float64)
    monkeypatch.setattr(WG, "BLOCK_BYTES", 1)
    monkeypatch.setattr(WG, "BW_BLOCK_BYTES", 1)
    monkeypatch.setattr(WG, "MIN_TILES", blocks)
    monkeypatch.setattr(WG, "OWN_TILES", (blocks, blocks))
    for nt in (1, 2):
        y = WG.forward(x, w, b, (1, 1), np.full(truth[0].shape, np.nan, np.float32), nt, tile)
        dx = WG.backward_input(dy, w, (1, 1), np.full(x.shape, np.nan, np.float32), nt, tile)
        dw = WG.backward_weight(dy, x, (1, 1), np.full(w.shape, np.nan, np.float32), nt, tile)
        for name, out, ref in (("forward", y, truth[0]), ("backward_input", dx, truth[1]),
                               ("backward_weight", dw, truth[2])):
            assert rel_error(out, ref) <= 3e-5, (name, nt, rel_error(out, ref))


def test_x4_switch_reports():
    """_set_x4 returns the previous setting, so tests and benchmarks can restore it."""
    prev = WG._set_x4(False)
    try:
        assert WG._set_x4(False) is False
    finally:
        WG._set_x4(prev)
