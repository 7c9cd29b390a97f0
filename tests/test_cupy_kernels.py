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

from fastconv.dispatch import gpu_status
from fastconv.kernels import reference as R
from fastconv.testing import rel_error

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_emu"))
import emu  # noqa: E402

HAS_GPU, GPU_REASON = gpu_status()
EMU_OK, EMU_REASON = emu.available()
_ENV = {}


@pytest.fixture(params=[
    pytest.param("gpu", marks=[pytest.mark.gpu,
                               pytest.mark.skipif(not HAS_GPU, reason=f"needs a CUDA GPU with CuPy ({GPU_REASON})")]),
    pytest.param("emu", marks=pytest.mark.skipif(not EMU_OK, reason=f"CPU emulation unavailable: {EMU_REASON}")),
])
def env(request, monkeypatch):
    if request.param == "gpu":
        from fastconv import dispatch
        import cupy

        _ENV.update(K=dispatch.load("cupy"), cp=cupy, mode="gpu")
    else:
        K, fake = emu.install(monkeypatch)
        _ENV.update(K=K, cp=fake, mode="emu")
    yield request.param
    _ENV.clear()


def _gpu(f):
    return pytest.mark.usefixtures("env")(f)


def _K():
    return _ENV["K"]


def _cp():
    return _ENV["cp"]


def _emu_skip(dtype=None, big=False):
    """Keep the CPU emulation fast: no large shapes."""
    if _ENV.get("mode") == "emu" and big:
        pytest.skip("emulation runs small shapes only (the GPU run covers the rest)")


TOL = {np.float32: 3e-5, np.float64: 1e-11}
DTYPES = [np.float32, np.float64]


def _np64(a):
    return None if a is None else np.asarray(_cp().asnumpy(a), dtype=np.float64)


def _close(out, ref, dtype, tol=None, what=""):
    tol = TOL[dtype] if tol is None else tol
    out_np = _cp().asnumpy(out)
    ref = np.asarray(ref, dtype=np.float64)
    assert out_np.shape == ref.shape, f"{what}: shape {out_np.shape} vs {ref.shape}"
    assert out_np.dtype == dtype, f"{what}: dtype {out_np.dtype}"
    nan_out, nan_ref = np.isnan(out_np), np.isnan(ref)
    assert np.array_equal(nan_out, nan_ref), f"{what}: NaN positions differ ({nan_out.sum()} vs {nan_ref.sum()})"
    err = rel_error(np.where(nan_out, 0, out_np), np.where(nan_ref, 0, ref))
    assert err < tol, f"{what}: rel error {err:.3g} >= {tol}"


def _rand(rng, shape, dtype):
    cp = _cp()
    return cp.asarray(rng.standard_normal(shape).astype(dtype))


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
    (4, 16, 48, 48, 192, 3, 3, 1, 1, 1, 1),    # large: 128x128 tiles (float32)
    (64, 8, 6, 6, 4, 3, 3, 1, 1, 1, 1),        # long reduction: split-K weight grad
]


@_gpu
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:7])) + f"_g{c[10]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_reference(case, dtype, bias, rng):
    N, Cc, H, W, Kk, Rr, Ss, st, pad, dil, g = case
    if Kk >= 128 and dtype == np.float64:
        pytest.skip("large case checked in float32 only (runtime)")
    _emu_skip(dtype, big=Kk >= 128)
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


@_gpu
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[4], CONV_CASES[8]], ids=["s2", "g2d2", "big"])
def test_conv2d_tf32(case, rng):
    from fastconv import config

    if _ENV["mode"] == "emu":
        pytest.skip("the WMMA (tensor core) kernel is not emulated on the CPU")
    N, Cc, H, W, Kk, Rr, Ss, st, pad, dil, g = case
    K = _K()
    x = _rand(rng, (N, Cc, H, W), np.float32)
    w = _rand(rng, (Kk, Cc // g, Rr, Ss), np.float32)
    b = _rand(rng, (Kk,), np.float32)
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
    _close(K.max_pool2d_backward(dy, am, shape), ref, dtype, what="bwd (plane scatter)")
    _close(K.max_pool2d_backward(dy, am, shape, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=cm),
           ref, dtype, what="bwd (gather)")
    _close(K.max_pool2d_backward(dy, am, shape, deterministic=False), ref, dtype, what="bwd (atomic)")


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


# ------------------------------------------------------------------- activation
ELEMENTWISE = [
    ("relu", (), "y"), ("leaky_relu", (0.1,), "x"), ("sigmoid", (), "y"), ("tanh", (), "y"),
    ("gelu", ("none",), "x"), ("gelu", ("tanh",), "x"),
]


@_gpu
@pytest.mark.parametrize("name,extra,saved", ELEMENTWISE, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,offset", [(1037, 0), (1037, 1), (0, 0), (4096, 0)])
def test_elementwise(name, extra, saved, dtype, n, offset, rng):
    K = _K()
    _emu_skip(dtype)
    cp = _cp()
    base = cp.asarray((rng.standard_normal(n + offset) * 3).astype(dtype))
    x = base[offset:]  # offset 1: not 16-byte aligned -> scalar path
    if n:
        x[0] = cp.nan
    y = getattr(K, f"{name}_forward")(x, *extra)
    y_ref = getattr(R, f"{name}_forward")(_np64(x), *extra)
    _close(y, y_ref, dtype, what=f"{name} fwd")
    assert bool(cp.isnan(y[0])) if n else True
    dy = cp.asarray(rng.standard_normal(n).astype(dtype))
    s = y if saved == "y" else x
    dx = getattr(K, f"{name}_backward")(dy, s, *extra)
    s_ref = y_ref if saved == "y" else _np64(x)
    _close(dx, getattr(R, f"{name}_backward")(_np64(dy), s_ref, *extra), dtype, what=f"{name} bwd")


@_gpu
@pytest.mark.parametrize("wshape", [(3,), (1,)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu(wshape, dtype, rng):
    K = _K()
    _emu_skip(dtype)
    x = _rand(rng, (4, 3, 5, 6), dtype)
    w = _rand(rng, wshape, dtype)
    _close(K.prelu_forward(x, w), R.prelu_forward(_np64(x), _np64(w)), dtype, what="prelu fwd")
    dy = _rand(rng, x.shape, dtype)
    dx, dw = K.prelu_backward(dy, x, w)
    dx_r, dw_r = R.prelu_backward(_np64(dy), _np64(x), _np64(w))
    _close(dx, dx_r, dtype, what="prelu dx")
    _close(dw, dw_r, dtype, what="prelu dw")


@_gpu
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((7, 10), -1), ((3, 5, 4), 1), ((4, 3000), 1), ((2, 1), 0), ((0, 5), 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax(name, shape, axis, dtype, rng):
    K = _K()
    _emu_skip(dtype)
    x = _rand(rng, shape, dtype)
    y = getattr(K, f"{name}_forward")(x, axis)
    y_ref = getattr(R, f"{name}_forward")(_np64(x), axis)
    _close(y, y_ref, dtype, what=f"{name} fwd")
    dy = _rand(rng, shape, dtype)
    _close(getattr(K, f"{name}_backward")(dy, y, axis), getattr(R, f"{name}_backward")(_np64(dy), y_ref, axis),
           dtype, what=f"{name} bwd")


# ------------------------------------------------------------------------ optim
def _state(rng, n, dtype, offset, k):
    cp = _cp()
    arrs = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    arrs[-1] = np.abs(arrs[-1])  # last one: a non-negative second moment / sum
    dev = []
    for a in arrs:
        b = cp.zeros(n + offset, dtype)
        b[offset:] = cp.asarray(a)
        dev.append(b[offset:])
    return arrs, dev


@_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 0.01), (True, 0.1)])
def test_adam(dtype, offset, decoupled, wd, rng):
    K = _K()
    _emu_skip(dtype)
    (p, g, m, v), (P, G, M_, V) = _state(rng, 1001, dtype, offset, 4)
    p64, m64, v64 = p.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for step in (1, 2, 3):
        K.adam_step(P, G, M_, V, step, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled)
        R.adam_step(p64, g.astype(np.float64), m64, v64, step, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled)
    for got, ref, nm in ((P, p64, "param"), (M_, m64, "exp_avg"), (V, v64, "exp_avg_sq")):
        _close(got, ref, dtype, what=nm)


@_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("momentum,damp,wd,nesterov", [(0.0, 0.0, 0.0, False), (0.9, 0.1, 1e-3, False),
                                                      (0.9, 0.0, 0.0, True)])
def test_sgd(dtype, offset, momentum, damp, wd, nesterov, rng):
    K = _K()
    _emu_skip(dtype)
    (p, g, b), (P, G, B) = _state(rng, 517, dtype, offset, 3)
    p64, b64 = p.astype(np.float64), b.astype(np.float64)
    buf = B if momentum else None
    for first in (True, False):
        K.sgd_step(P, G, buf, 0.1, momentum, damp, wd, nesterov, first)
        R.sgd_step(p64, g.astype(np.float64), b64 if momentum else None, 0.1, momentum, damp, wd, nesterov, first)
    _close(P, p64, dtype, what="param")
    if momentum:
        _close(B, b64, dtype, what="momentum_buf")


@_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad(dtype, rng):
    K = _K()
    _emu_skip(dtype)
    (p, g, s), (P, G, S) = _state(rng, 333, dtype, 0, 3)
    p64, s64 = p.astype(np.float64), s.astype(np.float64)
    for step in (1, 2):
        K.adagrad_step(P, G, S, step, 0.1, 0.01, 1e-3, 1e-10)
        R.adagrad_step(p64, g.astype(np.float64), s64, step, 0.1, 0.01, 1e-3, 1e-10)
    _close(P, p64, dtype, what="param")
    _close(S, s64, dtype, what="state_sum")


# ------------------------------------------------------------------------- norm
@_gpu
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 6)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(shape, dtype, affine, rng):
    K = _K()
    _emu_skip(dtype)
    cp = _cp()
    ch = shape[1]
    x = _rand(rng, shape, dtype) * 2 + 1
    gamma = _rand(rng, (ch,), dtype) if affine else None
    beta = _rand(rng, (ch,), dtype) if affine else None
    rm, rv = cp.zeros(ch, dtype), cp.ones(ch, dtype)
    rm64, rv64 = np.zeros(ch), np.ones(ch)
    y, mean, invstd = K.batch_norm_forward(x, gamma, beta, rm, rv, True, 0.1, 1e-5)
    y_r, mean_r, invstd_r = R.batch_norm_forward(_np64(x), _np64(gamma), _np64(beta), rm64, rv64, True, 0.1, 1e-5)
    for got, ref, nm in ((y, y_r, "y"), (mean, mean_r, "mean"), (invstd, invstd_r, "invstd"), (rm, rm64, "rmean"),
                         (rv, rv64, "rvar")):
        _close(got, ref, dtype, what=nm)
    dy = _rand(rng, shape, dtype)
    for training in (True, False):
        got = K.batch_norm_backward(dy, x, gamma, mean, invstd, training)
        ref = R.batch_norm_backward(_np64(dy), _np64(x), _np64(gamma), mean_r, invstd_r, training)
        for a, b_, nm in zip(got, ref, ("dx", "dgamma", "dbeta")):
            assert (a is None) == (b_ is None)
            if a is not None:
                _close(a, b_, dtype, what=f"{nm} training={training}")
    y_e, _, _ = K.batch_norm_forward(x, gamma, beta, rm, rv, False, 0.1, 1e-5)
    y_er, _, _ = R.batch_norm_forward(_np64(x), _np64(gamma), _np64(beta), rm64, rv64, False, 0.1, 1e-5)
    _close(y_e, y_er, dtype, what="eval y")


@_gpu
@pytest.mark.parametrize("shape,ns", [((4, 7), (7,)), ((2, 3, 4, 5), (4, 5)), ((3, 2000), 2000)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, ns, dtype, affine, rng):
    K = _K()
    _emu_skip(dtype)
    nst = (ns,) if isinstance(ns, int) else ns
    x = _rand(rng, shape, dtype)
    gamma = _rand(rng, nst, dtype) if affine else None
    beta = _rand(rng, nst, dtype) if affine else None
    y, mean, rstd = K.layer_norm_forward(x, ns, gamma, beta, 1e-5)
    y_r, mean_r, rstd_r = R.layer_norm_forward(_np64(x), ns, _np64(gamma), _np64(beta), 1e-5)
    for got, ref, nm in ((y, y_r, "y"), (mean, mean_r, "mean"), (rstd, rstd_r, "rstd")):
        _close(got, ref, dtype, what=nm)
    dy = _rand(rng, shape, dtype)
    got = K.layer_norm_backward(dy, x, ns, gamma, mean, rstd)
    ref = R.layer_norm_backward(_np64(dy), _np64(x), ns, _np64(gamma), mean_r, rstd_r)
    for a, b_, nm in zip(got, ref, ("dx", "dgamma", "dbeta")):
        assert (a is None) == (b_ is None)
        if a is not None:
            _close(a, b_, dtype, what=nm)


@_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout(dtype, rng):
    K = _K()
    _emu_skip(dtype)
    cp = _cp()
    x = _rand(rng, (64, 100), dtype)
    y1, m1 = K.dropout_forward(x, 0.3, 7)
    y2, m2 = K.dropout_forward(x, 0.3, 7)
    _, m3 = K.dropout_forward(x, 0.3, 8)
    assert bool(cp.all(m1 == m2)) and not bool(cp.all(m1 == m3))
    vals = set(np.unique(cp.asnumpy(m1)).tolist())
    assert vals <= {0.0, float(dtype(1 / 0.7))}
    assert abs(float((m1 == 0).mean()) - 0.3) < 0.03
    _close(y1, _np64(x) * _np64(m1), dtype, what="y")
    dy = _rand(rng, x.shape, dtype)
    _close(K.dropout_backward(dy, m1), _np64(dy) * _np64(m1), dtype, what="dx")


# ------------------------------------------------------------------------- loss
@_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted,ls,C_", [(False, 0.0, 5), (True, 0.0, 7), (True, 0.2, 40), (False, 0.1, 1500)])
def test_cross_entropy(dtype, reduction, weighted, ls, C_, rng):
    K = _K()
    _emu_skip(dtype)
    cp = _cp()
    N = 9
    logits = _rand(rng, (N, C_), dtype) * 3
    tn = rng.integers(0, C_, N).astype(np.int64)
    tn[2] = -100
    target = cp.asarray(tn)
    w = cp.asarray(rng.random(C_).astype(dtype) + 0.5) if weighted else None
    loss, lp = K.softmax_cross_entropy_forward(logits, target, w, ls, reduction, -100)
    loss_r, lp_r = R.softmax_cross_entropy_forward(_np64(logits), tn, _np64(w), ls, reduction, -100)
    _close(loss, loss_r, dtype, what="loss")
    _close(lp, lp_r, dtype, what="log_probs")
    dl = _rand(rng, np.shape(loss_r), dtype)
    d = K.softmax_cross_entropy_backward(dl, lp, target, w, ls, reduction, -100)
    d_r = R.softmax_cross_entropy_backward(_np64(dl), lp_r, tn, _np64(w), ls, reduction, -100)
    _close(d, d_r, dtype, what="dlogits")


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
