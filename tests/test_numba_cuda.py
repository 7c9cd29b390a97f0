"""Numba CUDA conv and pooling kernels vs PyTorch (float64 CPU) and the NumPy reference.

Runs under the CUDA simulator where there is no GPU (tiny shapes: every
simulated thread is a Python thread) and on a real GPU with CuPy arrays.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastconv.kernels import reference as R

from _numba_cuda_util import (NB, SIM, _fast_simulator, _progress, case_dtypes, close, dev, dtypes,  # noqa: F401
                              host, requires_numba_cuda)

pytestmark = requires_numba_cuda


def t64(a, grad=False):
    return torch.from_numpy(np.asarray(a, np.float64)).requires_grad_(grad)


# (N, C, H, W), (K, R, S), stride, padding, dilation, groups, bias
CONV_CASES = {
    "3x3": ((2, 3, 5, 5), (4, 3, 3), 1, 1, 1, 1, True),
    "strided-dilated-grouped": ((1, 4, 7, 6), (6, 3, 2), 2, (1, 0), (1, 2), 2, False),
    "depthwise-x2": ((1, 2, 5, 6), (4, 3, 2), 2, 1, 1, 2, True),
    "conv1d-like": ((2, 3, 1, 9), (2, 1, 3), 1, (0, 1), 1, 1, True),
    # N*P*Q = 50: several column tiles and a split-K weight gradient (simulator tiles are 8 x 8)
    "splitk-1x1": ((2, 2, 5, 5), (3, 1, 1), 1, 0, 1, 1, False),
    # K = 10: two row tiles in the simulator
    "wide-K": ((1, 2, 3, 3), (10, 1, 1), 1, 0, 1, 1, True),
    # long reductions over few output tiles: split-K in forward (GPU and simulator tiles) and backward-input
    "deep-small": ((1, 32, 3, 3), (4, 3, 3), 1, 1, 1, 1, True),
    # stride 2 backward-input: one GEMM per stride phase, split-K shared by the phases (simulator tiles)
    "strided-splitk": ((1, 3, 4, 3), (40, 3, 3), (2, 1), 1, 1, 1, False),
}


@pytest.mark.parametrize("case,dtype", case_dtypes(CONV_CASES, gpu_f64=("3x3",)))
def test_conv2d_matches_torch_and_reference(case, dtype, rng):
    xs, (K, Rk, S), st, pd, dl, g, has_b = CONV_CASES[case]
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((K, xs[1] // g, Rk, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if has_b else None
    tx, tw = t64(x, True), t64(w, True)
    tb = t64(b, True) if has_b else None
    ty = F.conv2d(tx, tw, tb, st, pd, dl, g)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(t64(dy))

    y = NB.conv2d_forward(dev(x), dev(w), dev(b), st, pd, dl, g)
    close(y, ty.detach().numpy(), dtype)
    close(y, R.conv2d_forward(x, w, b, st, pd, dl, g), dtype)
    dx = NB.conv2d_backward_input(dev(dy), dev(w), x.shape, st, pd, dl, g)
    close(dx, tx.grad.numpy(), dtype)
    dw = NB.conv2d_backward_weight(dev(dy), dev(x), w.shape, st, pd, dl, g)
    close(dw, tw.grad.numpy(), dtype)
    close(dw, R.conv2d_backward_weight(dy, x, w.shape, st, pd, dl, g), dtype)
    db = NB.conv2d_backward_bias(dev(dy))
    close(db, tw.new_tensor(dy).sum((0, 2, 3)).numpy(), dtype)
    if has_b:
        close(db, tb.grad.numpy(), dtype)


REAL_TILES_SCRIPT = """
import sys
import numpy as np
sys.setswitchinterval(2e-4)  # simulated threads are Python threads (see _numba_cuda_util)
from fastconv.kernels import reference as R
from fastconv.kernels.numba_cuda import _gemm_tile as T, conv as c
assert (T.BM, T.BN, T.TK) == (128, 128, 16), (T.BM, T.BN, T.TK)
rng = np.random.default_rng(0)
xs, ws, st = (1, 3, 6, 5), (5, 3, 3, 3), 2
x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
b = rng.standard_normal(5).astype(np.float32)
y = c.conv2d_forward(x, w, b, st, 1, 1, 1)
dy = rng.standard_normal(y.shape).astype(np.float32)
for got, ref in [(y, R.conv2d_forward(x, w, b, st, 1, 1, 1)),
                 (c.conv2d_backward_input(dy, w, xs, st, 1, 1, 1), R.conv2d_backward_input(dy, w, xs, st, 1, 1, 1)),
                 (c.conv2d_backward_weight(dy, x, ws, st, 1, 1, 1), R.conv2d_backward_weight(dy, x, ws, st, 1, 1, 1))]:
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err < 2e-6, err
print("ok")
"""


@pytest.mark.skipif(not SIM, reason="on a GPU the other conv tests run the GPU tile sizes directly")
def test_conv2d_gpu_tile_sizes_in_simulator():
    """The simulator tests use small tiles; this runs the GPU configuration (128 x 128 tiles,
    8 x 8 per thread, 256 threads, TK 16) through the simulator once: forward, stride-2
    backward_input (phases) and backward_weight."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTCONV_NUMBA_SIM_REAL_TILES="1")
    res = subprocess.run([sys.executable, "-c", REAL_TILES_SCRIPT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout[-2000:] + res.stderr[-3000:]


def test_conv2d_weight_grad_is_deterministic(rng):
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    a = host(NB.conv2d_backward_weight(dev(dy), dev(x), (3, 2, 1, 1), 1, 0, 1, 1))
    b = host(NB.conv2d_backward_weight(dev(dy), dev(x), (3, 2, 1, 1), 1, 0, 1, 1))
    np.testing.assert_array_equal(a, b)


def test_conv2d_empty_batch_nan_and_noncontiguous(rng):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x0 = np.zeros((0, 3, 5, 5), np.float32)
    y0 = host(NB.conv2d_forward(dev(x0), dev(w), None, 1, 1, 1, 1))
    assert y0.shape == (0, 4, 5, 5)
    dw0 = host(NB.conv2d_backward_weight(dev(np.zeros((0, 4, 5, 5), np.float32)), dev(x0), w.shape, 1, 1, 1, 1))
    np.testing.assert_array_equal(dw0, np.zeros_like(w))
    dx0 = host(NB.conv2d_backward_input(dev(np.zeros((0, 4, 5, 5), np.float32)), dev(w), x0.shape, 1, 1, 1, 1))
    assert dx0.shape == (0, 3, 5, 5)
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    x[0, 1, 2, 2] = np.nan
    y = host(NB.conv2d_forward(dev(x), dev(w), None, 1, 0, 1, 1))
    assert np.isnan(y).all()  # the NaN is in every 3x3 window of the 5x5 input
    xt = np.ascontiguousarray(rng.standard_normal((1, 3, 5, 5)).astype(np.float32).transpose(0, 1, 3, 2))
    xnc = xt.transpose(0, 1, 3, 2)  # non-contiguous view
    close(NB.conv2d_forward(dev(xnc), dev(w), None, 1, 1, 1, 1), R.conv2d_forward(xnc, w, None, 1, 1, 1, 1), np.float32)


def test_conv2d_bad_input():
    x = dev(np.zeros((1, 3, 5, 5), np.float32))
    w = dev(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="conv2d_forward.*mixed dtypes"):
        NB.conv2d_forward(x, dev(np.zeros((4, 3, 3, 3))), None, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="conv2d_forward.*'x'.*int64"):
        NB.conv2d_forward(dev(np.zeros((1, 3, 5, 5), np.int64)), w, None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_forward.*channel mismatch"):
        NB.conv2d_forward(dev(np.zeros((1, 2, 5, 5), np.float32)), w, None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_forward.*'x' must be 4-D"):
        NB.conv2d_forward(dev(np.zeros((3, 5, 5), np.float32)), w, None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        NB.conv2d_forward(dev(np.zeros((1, 3, 2, 2), np.float32)), w, None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="stride"):
        NB.conv2d_forward(x, w, None, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="'b' has shape"):
        NB.conv2d_forward(x, w, dev(np.zeros(3, np.float32)), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward_input.*'dy' has shape"):
        NB.conv2d_backward_input(dev(np.zeros((1, 4, 2, 2), np.float32)), w, (1, 3, 5, 5), 1, 0, 1, 1)
    with pytest.raises(TypeError, match="conv2d_backward_weight.*'x_shape'|conv2d_backward_weight.*'w_shape'"):
        NB.conv2d_backward_weight(dev(np.zeros((1, 4, 3, 3), np.float32)), x, 7, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward_bias.*4-D"):
        NB.conv2d_backward_bias(dev(np.zeros((4, 3), np.float32)))


# ----------------------------------------------------------------------- pooling

# (N, C, H, W), kernel, stride, padding, dilation, ceil_mode
POOL_CASES = {
    "3x3s2p1": ((2, 2, 7, 6), 3, 2, 1, 1, False),
    "rect-dilated-ceil": ((1, 2, 7, 8), (3, 2), (2, 1), (1, 0), (2, 1), True),
    "2x2-default-stride-ceil": ((1, 3, 5, 5), 2, None, 0, 1, True),
}


@pytest.mark.parametrize("case,dtype", case_dtypes(POOL_CASES, gpu_f64=("3x3s2p1",)))
def test_max_pool2d_matches_torch(case, dtype, rng):
    xs, k, s, p, d, cm = POOL_CASES[case]
    x = rng.standard_normal(xs).astype(dtype)
    x[0, 0, 1, 1] = np.nan
    x[-1, -1, 2, :3] = 7.0  # ties: the first index in window order wins
    tx = t64(x, True)
    ty, targ = F.max_pool2d(tx, k, s, p, d, cm, return_indices=True)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(t64(dy))
    y, arg = NB.max_pool2d_forward(dev(x), k, s, p, d, cm)
    y, arg = host(y), host(arg)
    assert y.dtype == dtype and arg.dtype == np.int64
    np.testing.assert_array_equal(y, ty.detach().numpy().astype(dtype))
    np.testing.assert_array_equal(arg, targ.numpy())
    ry, rarg = R.max_pool2d_forward(x, k, s, p, d, cm)
    np.testing.assert_array_equal(arg, rarg)
    dx = NB.max_pool2d_backward(dev(dy), dev(arg), x.shape)
    close(dx, tx.grad.numpy(), dtype)
    close(dx, R.max_pool2d_backward(dy, rarg, x.shape), dtype)


@pytest.mark.parametrize("dtype", dtypes())
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", ["3x3s2p1", "2x2-default-stride-ceil"])
def test_avg_pool2d_matches_torch(case, count_include_pad, dtype, rng):
    xs, k, s, p, _, cm = POOL_CASES[case]
    x = rng.standard_normal(xs).astype(dtype)
    tx = t64(x, True)
    ty = F.avg_pool2d(tx, k, s, p, cm, count_include_pad)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(t64(dy))
    y = NB.avg_pool2d_forward(dev(x), k, s, p, cm, count_include_pad)
    close(y, ty.detach().numpy(), dtype)
    close(y, R.avg_pool2d_forward(x, k, s, p, cm, count_include_pad), dtype)
    dx = NB.avg_pool2d_backward(dev(dy), x.shape, k, s, p, cm, count_include_pad)
    close(dx, tx.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", dtypes())
@pytest.mark.parametrize("out", [(3, 2), (4, 9), 1])
def test_adaptive_avg_pool2d_matches_torch(out, dtype, rng):
    x = rng.standard_normal((2, 2, 5, 7)).astype(dtype)
    tx = t64(x, True)
    ty = F.adaptive_avg_pool2d(tx, out)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(t64(dy))
    y = NB.adaptive_avg_pool2d_forward(dev(x), out)
    close(y, ty.detach().numpy(), dtype)
    close(y, R.adaptive_avg_pool2d_forward(x, out), dtype)
    close(NB.adaptive_avg_pool2d_backward(dev(dy), x.shape), tx.grad.numpy(), dtype)


def test_pool_empty_batch_and_bad_input():
    x0 = dev(np.zeros((0, 2, 5, 5), np.float32))
    y, arg = NB.max_pool2d_forward(x0, 2, 2, 0, 1, False)
    assert host(y).shape == (0, 2, 2, 2) and host(arg).shape == (0, 2, 2, 2)
    assert host(NB.max_pool2d_backward(y, arg, (0, 2, 5, 5))).shape == (0, 2, 5, 5)
    assert host(NB.avg_pool2d_forward(x0, 2, 2, 0, False, True)).shape == (0, 2, 2, 2)
    assert host(NB.adaptive_avg_pool2d_forward(x0, 3)).shape == (0, 2, 3, 3)
    x = dev(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="max_pool2d_forward.*'x'.*int64"):
        NB.max_pool2d_forward(dev(np.zeros((1, 2, 5, 5), np.int64)), 2, 2, 0, 1, False)
    with pytest.raises(ValueError, match="padding .* at most half"):
        NB.max_pool2d_forward(x, 2, 2, 2, 1, False)
    with pytest.raises(ValueError, match="avg_pool2d_forward.*4-D"):
        NB.avg_pool2d_forward(dev(np.zeros((2, 5, 5), np.float32)), 2, 2, 0, False, True)
    with pytest.raises(TypeError, match="max_pool2d_backward.*'argmax'.*float32"):
        NB.max_pool2d_backward(dev(np.zeros((1, 2, 2, 2), np.float32)), dev(np.zeros((1, 2, 2, 2), np.float32)),
                               (1, 2, 5, 5))
    with pytest.raises(ValueError, match="max_pool2d_backward.*does not match"):
        NB.max_pool2d_backward(dev(np.zeros((1, 2, 2, 2), np.float32)), dev(np.zeros((1, 2, 2, 2), np.int64)),
                               (1, 3, 5, 5))
    with pytest.raises(ValueError, match="avg_pool2d_backward.*'dy' has shape"):
        NB.avg_pool2d_backward(dev(np.zeros((1, 2, 3, 3), np.float32)), (1, 2, 5, 5), 2, 2, 0, False, True)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_forward.*output_size"):
        NB.adaptive_avg_pool2d_forward(x, 0)
