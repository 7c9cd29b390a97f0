"""Fused conv + bias + ReLU: the kernels' ``activation='relu'`` epilogue (Cython, reference) on
every Cython algorithm, ``F.conv2d_relu`` (forward and backward against PyTorch, the fallback
for backends without the epilogue, gradcheck) and ``nn.Sequential``'s Conv2d + ReLU fusion
(same outputs and gradients as the layers one by one)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv.functional as F
from fastconv import Tensor, dispatch, nn
from fastconv.functional import conv as FCONV
from fastconv.kernels.reference import conv as REF
from fastconv.testing import gradcheck, rel_error

needs_cython = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")

# (x shape, w shape, stride, padding, groups): one per Cython algorithm 'auto' picks
SHAPES = [
    ((2, 16, 10, 10), (16, 16, 3, 3), 1, 1, 1),   # winograd
    ((2, 8, 6, 6), (12, 8, 1, 1), 1, 0, 1),       # 1x1
    ((2, 64, 18, 18), (64, 64, 3, 3), 2, 1, 1),   # winograd_s2 (float32)
    ((16, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),    # small-channel lanes (direct)
    ((2, 4, 9, 9), (4, 1, 3, 3), 1, 1, 4),        # depthwise (direct)
    ((2, 3, 11, 13), (5, 3, 3, 2), 2, 1, 1),      # gemm
]


def _data(xs, ws, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype),
            rng.standard_normal(ws[0]).astype(dtype))


@needs_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x{}w{}s{}p{}g{}".format(*s))
def test_kernel_epilogue_is_relu_of_the_conv(shape, dtype):
    from fastconv.kernels.cython import conv as CV
    xs, ws, s, p, g = shape
    x, w, b = _data(xs, ws, dtype)
    y = CV.conv2d_forward(x, w, b, s, p, 1, g)
    assert np.array_equal(CV.conv2d_forward(x, w, b, s, p, 1, g, activation="relu"), np.maximum(y, 0))
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, p, 1, g,
                             activation="relu")
    assert (ref >= 0).all() and rel_error(np.maximum(y, 0), ref) < 1e-5


@needs_cython
def test_epilogue_nan_and_bad_activation():
    from fastconv.kernels.cython import conv as CV
    x, w, b = _data((1, 2, 5, 5), (3, 2, 3, 3), np.float32)
    x[0, 0, 2, 2] = np.nan
    y = CV.conv2d_forward(x, w, b, 1, 1, 1, 1, activation="relu")
    assert np.isnan(y[0, :, 2, 2]).all() and (y[~np.isnan(y)] >= 0).all()
    for mod in (CV, REF):
        with pytest.raises(ValueError, match="activation"):
            mod.conv2d_forward(x, w, b, 1, 1, 1, 1, activation="tanh")


def _torch_conv_relu(x, w, b, s, p, g, dy):
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.relu(TF.conv2d(tx, tw, tb, s, p, 1, g))
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("fused", [True, False], ids=["epilogue", "composed"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3], SHAPES[5]], ids=["winograd", "lanes", "gemm"])
def test_functional_conv2d_relu_matches_torch(shape, fused, monkeypatch):
    if not fused:  # a backend without the epilogue: conv, then its relu kernel
        monkeypatch.setattr(FCONV, "_has_epilogue", lambda fn: False)
    xs, ws, s, p, g = shape
    x, w, b = _data(xs, ws, np.float32, seed=1)
    tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d_relu(tx, tw, tb, stride=s, padding=p, groups=g)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    y.backward(Tensor(dy))
    want = _torch_conv_relu(x, w, b, s, p, g, dy)
    for got, ref in zip((y.data, _grad(tx), _grad(tw), _grad(tb)), want):
        assert rel_error(got, ref) < 2e-5


def test_conv2d_relu_gradcheck_and_padding_same():
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((2, 3, 6, 7)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 2, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal(4), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d_relu(x, w, b, padding=1), [x, w, b])
    y = F.conv2d_relu(x, w, b, padding="same")  # even kernel: odd total padding, cropped like conv2d
    assert np.array_equal(y.data, np.maximum(F.conv2d(x, w, b, padding="same").data, 0))


def _grad(t):
    g = t.grad
    return np.array(g.data if isinstance(g, Tensor) else g)


def test_sequential_fuses_conv_relu_with_the_same_results(monkeypatch):
    rng = np.random.default_rng(4)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.ReLU(),
                        nn.Conv2d(4, 4, 1))
    calls = []
    real = F.conv2d_relu
    monkeypatch.setattr(F, "conv2d_relu", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    xt = Tensor(x, requires_grad=True)
    y = net(xt)
    y.sum().backward()
    assert len(calls) == 2  # both conv + relu pairs, not the last conv
    grads = [_grad(p) for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    xu = Tensor(x, requires_grad=True)
    yu = xu
    for m in net:  # one layer at a time: no fusion
        yu = m(yu)
    yu.sum().backward()
    assert np.allclose(y.data, yu.data, rtol=1e-6, atol=1e-6)
    assert np.allclose(_grad(xt), _grad(xu), rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, net.parameters()):
        assert np.allclose(g, _grad(p), rtol=1e-5, atol=1e-6)
