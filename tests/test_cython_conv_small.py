"""Small-channel (LeNet-sized) conv2d kernels of the Cython backend's 'direct' algorithm.

The flattened-row SIMD kernels (_conv_small.pxi / _conv_small_impl.h: stride 1, dilation 1,
groups 1) and the scalar loops 'direct' falls back to for other small shapes, against
PyTorch (float64 truth) and the NumPy reference: forward, backward-input, backward-weight,
float32 and float64, at every instruction-set level this CPU runs (the forward's three
kernels each); odd sizes, padding 0 / 2,
stride 1 / 2, N = 1, C = 1, K not a multiple of the register blocks.  Also: 'auto' sends
exactly the shapes ``pick`` names to the direct kernels, backward-weight is bitwise the
same for 1 and 2 threads, and NaN propagates.
"""
import numpy as np
import pytest
import torch

import fastconv
from fastconv.kernels.reference import conv as REF
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
DR = pytest.importorskip("fastconv.kernels.cython._conv_direct", reason="Cython conv extension not built")

F = torch.nn.functional
TOL = {np.float32: 3e-6, np.float64: 1e-13}
MAX_LEVEL = DR._simd_level(-1)
LEVELS = sorted({0, min(1, MAX_LEVEL), MAX_LEVEL})

# (N, C, H, W), K, (R, S), stride, padding
CASES = [
    ((3, 1, 32, 32), 6, (5, 5), 1, 0),     # LeNet C1 (fewer images)
    ((2, 6, 14, 14), 16, (5, 5), 1, 0),    # LeNet C3
    ((1, 1, 9, 11), 5, (5, 5), 1, 2),      # N = 1, C = 1, padding 2, K odd
    ((2, 3, 13, 7), 10, (3, 3), 1, 2),     # K = 10 (register-block tails), narrow rows
    ((9, 2, 11, 12), 9, (3, 5), 1, (1, 2)),  # 9 images: two backward-weight chunks, 15 taps
    ((2, 5, 8, 8), 3, (7, 7), 1, 0),       # 49 taps, tiny output
    ((1, 2, 6, 6), 4, (5, 5), 1, 0),       # 2x2 output: one block of positions
    ((2, 3, 11, 11), 4, (3, 3), 2, 1),     # stride 2: scalar loops
    ((1, 2, 12, 9), 7, (5, 5), 2, 2),      # stride 2, padding 2
    ((21, 3, 5, 6), 17, (5, 5), 1, 0),     # 1x2 output, 21 images: batch-vector lane tails, K = 17
    ((18, 16, 5, 5), 20, (5, 5), 1, 0),    # LeNet C5-like 1x1 output
    ((33, 4, 10, 9), 11, (5, 5), 1, 2),    # 3 lane chunks (last: 1 image), padding rows, 90 positions
]


def _data(xs, K, RS, stride, padding, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((K, xs[1]) + RS).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    y = F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), stride=stride,
                 padding=padding)
    dy = rng.standard_normal(tuple(y.shape)).astype(dtype)
    return x, w, b, dy


def _torch_grads(x, w, b, dy, stride, padding):
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
    y = F.conv2d(tx, tw, torch.from_numpy(b.astype(np.float64)), stride=stride, padding=padding)
    y.backward(torch.from_numpy(dy.astype(np.float64)))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()


@pytest.fixture(params=LEVELS, ids=lambda l: f"level{l}")
def level(request):
    prev = DR._simd_level()
    DR._simd_level(request.param)
    yield request.param
    DR._simd_level(prev)


@pytest.fixture(params=["flat", "nv", "w1"])
def mode(request):
    """Force the flattened-row, the batch-vector or the batch-vector row-Winograd F(2, 5) forward
    kernel ('w1': filters 5 wide; others fall back to 'nv'), also for backward-input."""
    DR._small_mode[0] = request.param
    yield request.param
    DR._small_mode[0] = "auto"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x{}k{}r{}s{}p{}".format(*c))
def test_direct_matches_torch_and_reference(case, dtype, level, mode):
    xs, K, RS, stride, padding = case
    x, w, b, dy = _data(xs, K, RS, stride, padding, dtype)
    ty, tdx, tdw = _torch_grads(x, w, b, dy, stride, padding)
    tol = TOL[dtype]
    y = CV.conv2d_forward(x, w, b, stride, padding, 1, 1, algo="direct")
    dx = CV.conv2d_backward_input(dy, w, xs, stride, padding, 1, 1, algo="direct")
    dw = CV.conv2d_backward_weight(dy, x, w.shape, stride, padding, 1, 1, algo="direct")
    for got, want in ((y, ty), (dx, tdx), (dw, tdw)):
        assert got.dtype == dtype and got.shape == want.shape
        assert rel_error(got, want) < tol
    if dtype == np.float64:
        assert rel_error(y, REF.conv2d_forward(x, w, b, stride, padding, 1, 1)) < tol
        assert rel_error(dw, REF.conv2d_backward_weight(dy, x, w.shape, stride, padding, 1, 1)) < tol
        assert rel_error(dx, REF.conv2d_backward_input(dy, w, xs, stride, padding, 1, 1)) < tol


def test_backward_weight_thread_count_independent():
    x, w, b, dy = _data((19, 2, 12, 12), 6, (5, 5), 1, 1, np.float32, seed=3)
    prev = fastconv.get_num_threads() if hasattr(fastconv, "get_num_threads") else None
    try:
        outs = []
        for nt in (1, 2):
            fastconv.set_num_threads(nt)
            outs.append(CV.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1, algo="direct"))
    finally:
        if prev is not None:
            fastconv.set_num_threads(prev)
    assert np.array_equal(outs[0], outs[1])


def test_nan_propagates():
    x, w, b, dy = _data((2, 2, 10, 10), 5, (3, 3), 1, 0, np.float32)
    x[1, 0, 4, 4] = np.nan
    y = CV.conv2d_forward(x, w, b, 1, 0, 1, 1, algo="direct")
    dw = CV.conv2d_backward_weight(dy, x, w.shape, 1, 0, 1, 1, algo="direct")
    assert np.isnan(y[1]).any() and not np.isnan(y[0]).any()
    assert np.isnan(dw[:, 0]).all() and not np.isnan(dw[:, 1]).any()


LENET = [((64, 1, 32, 32), (6, 1, 5, 5)), ((64, 6, 14, 14), (16, 6, 5, 5)), ((64, 16, 5, 5), (120, 16, 5, 5)),
         ((64, 3, 12, 12), (16, 3, 3, 3)), ((4, 2, 10, 10), (4, 2, 5, 5))]
OPS = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shapes", LENET, ids=lambda s: "x{}w{}".format(*s))
def test_auto_uses_direct_where_pick_says(op, shapes, monkeypatch):
    xs, ws = shapes
    want = DR.pick(op, xs, ws, (1, 1), (0, 0), (1, 1), 1)
    assert want in ("direct", "gemm")
    if xs == (64, 6, 14, 14) or (op != "conv2d_backward_input" and xs == (64, 1, 32, 32)):
        assert want == "direct"  # LeNet C3, C1 (its dx is never needed, and GEMM is as fast)
    if ws[2] == 3 or xs[0] < 8:
        assert want == "gemm"  # 3x3 filters (CIFAR ResNet stem), batches not filling the lanes
    x, w, b, dy = _data(xs, ws[0], ws[2:], 1, 0, np.float32)
    name = {"conv2d_forward": "forward", "conv2d_backward_input": "backward_input",
            "conv2d_backward_weight": "backward_weight"}[op]
    calls, asked = [], []
    real, real_pick = getattr(DR, name), DR.pick
    monkeypatch.setattr(DR, name, lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(DR, "pick", lambda *a: asked.append(1) or real_pick(*a))
    if op == "conv2d_forward":
        got = CV.conv2d_forward(x, w, None, 1, 0, 1, 1)
        ref = CV.conv2d_forward(x, w, None, 1, 0, 1, 1, algo="gemm")
    elif op == "conv2d_backward_input":
        got = CV.conv2d_backward_input(dy, w, xs, 1, 0, 1, 1)
        ref = CV.conv2d_backward_input(dy, w, xs, 1, 0, 1, 1, algo="gemm")
    else:
        got = CV.conv2d_backward_weight(dy, x, ws, 1, 0, 1, 1)
        ref = CV.conv2d_backward_weight(dy, x, ws, 1, 0, 1, 1, algo="gemm")
    # (conv's 'auto' asks pick only for shapes no other special path takes, e.g. not
    # 5x5 layers with C, K >= 16, which its Winograd module decides on)
    assert bool(calls) == (bool(asked) and want == "direct")
    if xs[1] < 16:
        assert asked
    assert rel_error(got, ref) < 1e-5
