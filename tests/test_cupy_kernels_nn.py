"""CuPy backend: activation, optim, norm and loss kernels against the NumPy reference,
on the GPU and through the CPU emulator (see tests/test_cupy_kernels.py)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_emu"))
from harness import (  # noqa: E402,F401  (env is a fixture)
    DTYPES, HAS_GPU, R, _close, _cp, _emu_skip, _ENV, _gpu, _K, _np64, _rand, env,
)


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
