"""Cython optimizer kernels against torch.optim, step for step, and bad input."""
import numpy as np
import pytest
import torch

from fastconv import dispatch

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")


def K():
    return dispatch.load("cython")


def _run(kind, dtype, steps=4, **kw):
    rng = np.random.default_rng(1)
    shape = (37, 5)
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
    tp = torch.from_numpy(p0.copy()).requires_grad_(True)
    p = p0.copy()
    if kind == "sgd":
        opt = torch.optim.SGD([tp], lr=0.1, **kw)
        buf = np.zeros_like(p)
        for s, g in enumerate(grads):
            K().sgd_step(p, g, buf, 0.1, kw.get("momentum", 0), kw.get("dampening", 0), kw.get("weight_decay", 0),
                         kw.get("nesterov", False), s == 0)
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
    elif kind == "adagrad":
        opt = torch.optim.Adagrad([tp], lr=0.1, **kw)
        ssum = np.zeros_like(p)
        for s, g in enumerate(grads, 1):
            K().adagrad_step(p, g, ssum, s, 0.1, kw.get("lr_decay", 0), kw.get("weight_decay", 0), kw.get("eps", 1e-10))
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = cls([tp], lr=0.01, **kw)
        m, v = np.zeros_like(p), np.zeros_like(p)
        for s, g in enumerate(grads, 1):
            K().adam_step(p, g, m, v, s, 0.01, 0.9, 0.999, 1e-8, kw.get("weight_decay", 0), kind == "adamw")
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                                {"momentum": 0.8, "dampening": 0.3}, {"weight_decay": 0.1}])
def test_sgd_matches_torch(dtype, kw):
    _run("sgd", dtype, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, {"lr_decay": 0.1, "weight_decay": 0.01}])
def test_adagrad_matches_torch(dtype, kw):
    _run("adagrad", dtype, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kw", [("adam", {}), ("adam", {"weight_decay": 0.05}), ("adamw", {"weight_decay": 0.05})])
def test_adam_matches_torch(dtype, kind, kw):
    _run(kind, dtype, **kw)


def test_large_flat_buffer_uses_threads_and_matches():
    rng = np.random.default_rng(2)
    n = 300_001
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    ref = p.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    K().adam_step(p, g, m, v, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
    # first Adam step moves every weight by lr * sign(g) (up to eps)
    np.testing.assert_allclose(ref - p, 1e-3 * np.sign(g), rtol=1e-3, atol=5e-6)  # float32 ulp of |p| ~ 4


def test_bad_input():
    k = K()
    p = np.zeros(4, np.float32)
    g = np.zeros(4, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        k.adam_step(np.zeros(8, np.float32)[::2], g, m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0, False)
    with pytest.raises(TypeError, match="mixed dtypes"):
        k.adam_step(p, g.astype(np.float64), m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0, False)
    with pytest.raises(ValueError, match="shape"):
        k.adam_step(p, np.zeros(5, np.float32), m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0, False)
    with pytest.raises(ValueError, match="beta1"):
        k.adam_step(p, g, m, v, 1, 0.1, 1.0, 0.999, 1e-8, 0, False)
    with pytest.raises(ValueError, match="step"):
        k.adam_step(p, g, m, v, 0, 0.1, 0.9, 0.999, 1e-8, 0, False)
    with pytest.raises(ValueError, match="lr"):
        k.sgd_step(p, g, None, -1.0, 0, 0, 0, False, True)
    with pytest.raises(ValueError, match="momentum_buf"):
        k.sgd_step(p, g, None, 0.1, 0.9, 0, 0, False, True)
    with pytest.raises(ValueError, match="Nesterov"):
        k.sgd_step(p, g, m, 0.1, 0.9, 0.5, 0, True, True)
    with pytest.raises(TypeError, match="float32 or float64"):
        k.adagrad_step(np.zeros(4, np.int32), g, m, 1, 0.1, 0, 0, 1e-10)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        k.sgd_step(ro, g, None, 0.1, 0, 0, 0, False, True)
