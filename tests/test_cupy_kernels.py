"""CuPy backend kernels against the NumPy reference (float64 oracle).

Every kernel test runs in two environments (the ``env`` fixture):
- ``gpu``: the real thing, CuPy on a CUDA GPU (``gpu`` marker; skipped with a
  reason when no GPU is present);
- ``emu``: the same .cu sources compiled as C++ with tests/cupy_emu/shim.h and
  run on the CPU (an OS thread per CUDA thread), with the Python wrappers
  running on NumPy arrays -- checks the kernels' index math, the wrappers'
  launch arguments (count and C types) and grid sizes without a GPU.  Needs
  g++ and an importable CuPy; the largest shapes and the TF32 (WMMA) kernel
  are left to the GPU run.
The bad-input tests need only an importable CuPy (argument checks run before
any device call).
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_emu"))
from harness import (  # noqa: E402,F401  (env is a fixture)
    DTYPES, HAS_GPU, R, _close, _cp, _emu_skip, _ENV, _gpu, _K, _np64, _rand, env, gpu_env,
)


# ------------------------------------------------------------------------- conv
# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1),
    (2, 8, 10, 10, 16, 3, 3, 2, 1, 1, 1),
    (1, 4, 12, 9, 6, 5, 3, (2, 1), (2, 0), (1, 2), 1),
    (3, 16, 7, 7, 8, 1, 1, 1, 0, 1, 1),
    (2, 8, 9, 9, 12, 3, 3, 1, 2, 2, 2),
    (2, 6, 11, 11, 6, 3, 3, 1, 1, 1, 6),       # depthwise
    (2, 4, 10, 10, 8, 3, 3, 2, 1, 1, 4),       # depthwise, multiplier 2
    (0, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1),         # empty batch
    (64, 8, 6, 6, 4, 3, 3, 1, 1, 1, 1),        # long reduction: split-K weight grad
    (2, 4, 7, 8, 6, 1, 1, 2, 0, 1, 1),         # 1x1 stride 2: backward-input phases with no taps (zeros)
    (1, 3, 10, 11, 4, 3, 2, 3, (2, 1), (1, 2), 1),  # stride 3, dilation: uneven phase tap counts
    (2, 8, 9, 9, 8, 3, 3, 2, 1, 1, 2),         # grouped, stride 2, odd size
    (1, 4, 5, 6, 4, 2, 2, (1, 3), (0, 1), 1, 1),  # stride > kernel along W
    (1, 2, 40, 70, 2, 3, 3, 1, 1, 1, 2),       # depthwise tiled: 2 x 3 output tiles, ragged edges
    (2, 3, 61, 59, 3, 5, 5, 2, 2, 1, 3),       # depthwise tiled 5x5, stride 2
    (1, 2, 30, 33, 2, 5, 5, 1, 2, 1, 2),       # depthwise tiled 5x5, stride 1 (flipped backward-input)
    (1, 2, 60, 61, 4, 3, 3, 2, 1, 1, 2),       # depthwise tiled 3x3, stride 2, multiplier 2
    (1, 2, 8, 9, 4, 5, 5, 1, 1, 1, 2),         # depthwise 5x5, multiplier 2, padding < KS-1-p (small: direct)
    (1, 4, 9, 9, 4, 3, 3, 1, 2, 2, 4),         # depthwise dilation 2: direct forward, tiled weight grad
    (2, 3, 6, 7, 3, 3, 1, 1, (1, 0), 1, 3),    # depthwise non-square filter: direct kernels
    (2, 40, 6, 6, 48, 3, 3, 1, 1, 1, 1),       # 33..64 GEMM rows: the 64x64 tile configuration
]


# too large to emulate: float32 on the GPU only (test_conv2d_big_tiles_small_shapes covers
# the same 128x128 tile path in emulation)
CONV_CASES_GPU = [
    (4, 16, 48, 48, 192, 3, 3, 1, 1, 1, 1),    # large: 128x128 tiles (float32)
]


def _check_conv(case, dtype, bias, rng):
    N, Cc, H, W, Kk, Rr, Ss, st, pad, dil, g = case
    K = _K()
    cp = _cp()
    x = _rand(rng, (N, Cc, H, W), dtype)
    w = _rand(rng, (Kk, Cc // g, Rr, Ss), dtype)
    b = _rand(rng, (Kk,), dtype) if bias else None
    y = K.conv2d_forward(x, w, b, st, pad, dil, g)
    y_ref = R.conv2d_forward(_np64(x), _np64(w), _np64(b), st, pad, dil, g)
    _close(y, y_ref, dtype, what="forward")
    yr = K.conv2d_forward(x, w, b, st, pad, dil, g, activation="relu")
    _close(yr, np.maximum(y_ref, 0), dtype, what="forward+relu")
    dy = _rand(rng, y.shape, dtype)
    dx = K.conv2d_backward_input(dy, w, x.shape, st, pad, dil, g)
    _close(dx, R.conv2d_backward_input(_np64(dy), _np64(w), x.shape, st, pad, dil, g), dtype, what="backward_input")
    dw = K.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g)
    _close(dw, R.conv2d_backward_weight(_np64(dy), _np64(x), w.shape, st, pad, dil, g), dtype, what="backward_weight")
    db = K.conv2d_backward_bias(dy)
    _close(db, R.conv2d_backward_bias(_np64(dy)), dtype, what="backward_bias")
    # deterministic weight gradient: bit-identical on a second call
    assert bool(cp.all(K.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g) == dw))


_conv_id = lambda c: "x".join(map(str, c[:7])) + f"_g{c[10]}"  # noqa: E731


@_gpu
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_reference(case, dtype, bias, rng):
    _check_conv(case, dtype, bias, rng)


@pytest.mark.usefixtures("gpu_env")
@pytest.mark.parametrize("case", CONV_CASES_GPU, ids=_conv_id)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_large_gpu(case, bias, rng):
    _check_conv(case, np.float32, bias, rng)


@_gpu
@pytest.mark.parametrize("shape", [(70, 16, 3, 5), (3, 600, 2, 2), (5, 7, 1, 1)], ids=["chunks", "one-split", "1x1"])
def test_conv2d_backward_bias_splits(shape, rng):
    """Several images per block, one block per channel (no workspace), 1x1 planes."""
    K, cp = _K(), _cp()
    dy = _rand(rng, shape, np.float64)
    db = K.conv2d_backward_bias(dy)
    _close(db, R.conv2d_backward_bias(_np64(dy)), np.float64, what="backward_bias")
    assert bool(cp.all(K.conv2d_backward_bias(dy) == db))


@_gpu
@pytest.mark.parametrize("case", [(1, 72, 7, 6, 80, 3, 3, 2, 1, 1, 1), (2, 80, 5, 5, 72, 3, 3, 1, 1, 1, 1)],
                         ids=["s2", "s1"])
def test_conv2d_big_tiles_small_shapes(case, monkeypatch, rng):
    """The 128x128 float32 tile configuration on shapes small enough to emulate (a one-SM
    device makes the wrappers pick it whenever a GEMM has more than 64 rows)."""
    from fastconv.kernels.cupy import _module as M

    monkeypatch.setattr(M, "sm_count", lambda: 1)
    N, Cc, H, W, Kk, Rr, Ss, st, pad, dil, g = case
    K, dtype = _K(), np.float32
    x = _rand(rng, (N, Cc, H, W), dtype)
    w = _rand(rng, (Kk, Cc // g, Rr, Ss), dtype)
    b = _rand(rng, (Kk,), dtype)
    y = K.conv2d_forward(x, w, b, st, pad, dil, g)
    _close(y, R.conv2d_forward(_np64(x), _np64(w), _np64(b), st, pad, dil, g), dtype, what="forward")
    dy = _rand(rng, y.shape, dtype)
    dx = K.conv2d_backward_input(dy, w, x.shape, st, pad, dil, g)
    _close(dx, R.conv2d_backward_input(_np64(dy), _np64(w), x.shape, st, pad, dil, g), dtype, what="backward_input")
    dw = K.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g)
    _close(dw, R.conv2d_backward_weight(_np64(dy), _np64(x), w.shape, st, pad, dil, g), dtype, what="backward_weight")


@pytest.mark.usefixtures("gpu_env")
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[4], CONV_CASES_GPU[0]], ids=["s2", "g2d2", "big"])
def test_conv2d_tf32(case, monkeypatch, rng):
    from fastconv import config
    from fastconv.kernels.cupy import conv as cupy_conv

    N, Cc, H, W, Kk, Rr, Ss, st, pad, dil, g = case
    K = _K()
    x = _rand(rng, (N, Cc, H, W), np.float32)
    w = _rand(rng, (Kk, Cc // g, Rr, Ss), np.float32)
    b = _rand(rng, (Kk,), np.float32)
    monkeypatch.setattr(cupy_conv, "USE_TF32_KERNEL", True)  # off by default (slower than FP32)
    old = config.allow_tf32
    config.allow_tf32 = True
    try:
        y = K.conv2d_forward(x, w, b, st, pad, dil, g, activation="relu")
    finally:
        config.allow_tf32 = old
    ref = np.maximum(R.conv2d_forward(_np64(x), _np64(w), _np64(b), st, pad, dil, g), 0)
    _close(y, ref, np.float32, tol=3e-3, what="tf32 forward")


# ------------------------------------------------------------------------- pool
# (shape, kernel, stride, padding, dilation, ceil_mode)
MAXPOOL_CASES = [
    ((2, 3, 9, 9), 3, 2, 1, 1, False),
    ((2, 3, 10, 7), 2, None, 0, 1, False),
    ((1, 2, 11, 11), 3, 2, 1, 2, True),
    ((2, 2, 8, 9), (3, 2), (2, 1), (1, 0), 1, True),
    ((0, 2, 8, 8), 2, 2, 0, 1, False),
]


@_gpu
@pytest.mark.parametrize("case", MAXPOOL_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool(case, dtype, rng):
    shape, k, s, p, d, cm = case
    K = _K()
    _emu_skip(dtype)
    cp = _cp()
    xn = rng.standard_normal(shape).astype(dtype)
    if xn.size:
        xn[:, :, :3, :3] = 0.5  # ties: the first index in window order must win
        xn.reshape(-1)[-2] = np.nan
    x = cp.asarray(xn)
    y, am = K.max_pool2d_forward(x, k, s, p, d, cm)
    y_ref, am_ref = R.max_pool2d_forward(xn.astype(np.float64), k, s, p, d, cm)
    np.testing.assert_array_equal(cp.asnumpy(y), y_ref.astype(dtype))
    np.testing.assert_array_equal(cp.asnumpy(am), am_ref)
    assert am.dtype == cp.int64
    dy = _rand(rng, y.shape, dtype)
    ref = R.max_pool2d_backward(_np64(dy), am_ref, shape)
    _close(K.max_pool2d_backward(dy, am, shape), ref, dtype, what="bwd (argmax-bounded gather)")
    _close(K.max_pool2d_backward(dy, am, shape, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=cm),
           ref, dtype, what="bwd (gather)")
    _close(K.max_pool2d_backward(dy, am, shape, deterministic=False), ref, dtype, what="bwd (atomic)")


@_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_backward_arbitrary_argmax(dtype, rng):
    """The geometry-free backward is exact for any argmax, even one no window produced."""
    K = _K()
    cp = _cp()
    shape, out = (2, 3, 7, 6), (2, 3, 4, 5)
    am = rng.integers(-1, 7 * 6, size=out).astype(np.int64)  # -1: a window without input
    am[0, 0, 1, :] = 5  # many outputs pointing at one pixel
    dy = _rand(rng, out, dtype)
    ref = R.max_pool2d_backward(_np64(dy), am, shape)
    _close(K.max_pool2d_backward(dy, cp.asarray(am), shape), ref, dtype, what="bounded gather")
    _close(K.max_pool2d_backward(dy, cp.asarray(am), shape, deterministic=False), ref, dtype, what="atomic")


AVG_CASES = [
    ((2, 3, 9, 9), 3, 2, 1, False, True),
    ((2, 3, 9, 9), 3, 2, 1, True, False),
    ((1, 2, 10, 7), (2, 3), (2, 2), (1, 1), True, True),
    ((2, 2, 8, 8), 2, None, 0, False, False),
]


@_gpu
@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool(case, dtype, rng):
    shape, k, s, p, cm, cip = case
    K = _K()
    _emu_skip(dtype)
    x = _rand(rng, shape, dtype)
    y = K.avg_pool2d_forward(x, k, s, p, cm, cip)
    _close(y, R.avg_pool2d_forward(_np64(x), k, s, p, cm, cip), dtype, what="avg fwd")
    dy = _rand(rng, y.shape, dtype)
    _close(K.avg_pool2d_backward(dy, shape, k, s, p, cm, cip),
           R.avg_pool2d_backward(_np64(dy), shape, k, s, p, cm, cip), dtype, what="avg bwd")


@_gpu
@pytest.mark.parametrize("shape,out", [((2, 3, 10, 7), (3, 4)), ((1, 2, 5, 5), 1), ((2, 2, 4, 6), (4, 6)),
                                       ((1, 1, 5, 3), (3, 5))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool(shape, out, dtype, rng):
    K = _K()
    _emu_skip(dtype)
    x = _rand(rng, shape, dtype)
    y = K.adaptive_avg_pool2d_forward(x, out)
    _close(y, R.adaptive_avg_pool2d_forward(_np64(x), out), dtype, what="adaptive fwd")
    dy = _rand(rng, y.shape, dtype)
    _close(K.adaptive_avg_pool2d_backward(dy, shape), R.adaptive_avg_pool2d_backward(_np64(dy), shape), dtype,
           what="adaptive bwd")


# ------------------------------------------------------------------ bad inputs
# Argument checks run before any device work: these need CuPy importable, not a GPU.
@pytest.mark.parametrize(
    "family,call",
    [
        ("conv", lambda m: m.conv2d_forward(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32),
                                            None, 1, 0, 1, 1)),
        ("pool", lambda m: m.max_pool2d_forward(np.ones((1, 1, 4, 4), np.float32), 2, 2, 0, 1, False)),
        ("activation", lambda m: m.relu_forward(np.ones(4, np.float32))),
        ("activation", lambda m: m.softmax_forward(np.ones((2, 3), np.float32), 1)),
        ("optim", lambda m: m.adam_step(np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32),
                                        np.zeros(4, np.float32), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)),
        ("norm", lambda m: m.layer_norm_forward(np.ones((2, 3), np.float32), 3, None, None, 1e-5)),
        ("loss", lambda m: m.softmax_cross_entropy_forward(np.ones((2, 3), np.float32), np.zeros(2, np.int64),
                                                           None, 0.0, "mean", -100)),
    ],
)
def test_numpy_input_is_type_error(family, call):
    pytest.importorskip("cupy")
    import importlib

    mod = importlib.import_module(f"fastconv.kernels.cupy.{family}")
    with pytest.raises(TypeError, match="needs a CuPy array"):
        call(mod)


def test_unavailable_reason_without_gpu():
    from fastconv import dispatch

    ok, reason = dispatch.available("cupy")
    if HAS_GPU:
        assert ok, reason
        K = dispatch.load("cupy")
        for name in ("conv2d_forward", "max_pool2d_forward", "relu_forward", "adam_step", "batch_norm_forward"):
            assert hasattr(K, name)
    else:
        assert not ok and "unavailable" in reason


@_gpu
def test_bad_geometry_and_dtype(rng):
    K = _K()
    cp = _cp()
    x = cp.ones((1, 4, 5, 5), cp.float32)
    with pytest.raises(ValueError, match="conv2d_forward"):
        K.conv2d_forward(x, cp.ones((2, 3, 3, 3), cp.float32), None, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="mixed dtypes"):
        K.conv2d_forward(x, cp.ones((2, 4, 3, 3), cp.float64), None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="activation"):
        K.conv2d_forward(x, cp.ones((2, 4, 3, 3), cp.float32), None, 1, 0, 1, 1, activation="gelu")
    with pytest.raises(TypeError, match="int64"):
        K.relu_forward(cp.arange(4))
    with pytest.raises(ValueError, match="C-contiguous"):
        p = cp.ones((4, 4), cp.float32)[:, ::2]
        K.sgd_step(p, cp.ones((4, 2), cp.float32), None, 0.1, 0.0, 0.0, 0.0, False, True)
