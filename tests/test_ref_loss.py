"""Reference loss kernels and their autograd ops against torch.nn.functional."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv.kernels import reference as R
from fastconv.testing import gradcheck

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


def torch_ce(logits, target, weight, eps, reduction, ignore_index, dloss):
    t = torch.from_numpy(logits.copy()).requires_grad_(True)
    w = None if weight is None else torch.from_numpy(weight)
    loss = TF.cross_entropy(t, torch.from_numpy(target), weight=w, ignore_index=ignore_index,
                            reduction=reduction, label_smoothing=eps)
    loss.backward(torch.from_numpy(np.asarray(dloss)))
    return loss.detach().numpy(), t.grad.numpy()


def ce_case(rng, dtype, N=7, K=5, ignore_index=-100, scale=3.0):
    logits = (rng.standard_normal((N, K)) * scale).astype(dtype)
    target = rng.integers(0, K, N).astype(np.int64)
    target[1] = ignore_index
    return logits, target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,eps,ignore_index", list(itertools.product([False, True], [0.0, 0.25], [-100, 2])))
def test_cross_entropy_matches_torch(dtype, reduction, weighted, eps, ignore_index, rng):
    logits, target = ce_case(rng, dtype, ignore_index=ignore_index)
    weight = rng.uniform(0.2, 2.0, logits.shape[1]).astype(dtype) if weighted else None
    dloss = rng.standard_normal(logits.shape[0]).astype(dtype) if reduction == "none" else np.asarray(1.7, dtype)
    loss, log_probs = R.softmax_cross_entropy_forward(logits, target, weight, eps, reduction, ignore_index)
    dlogits = R.softmax_cross_entropy_backward(dloss, log_probs, target, weight, eps, reduction, ignore_index)
    tl, tg = torch_ce(logits, target, weight, eps, reduction, ignore_index, dloss)
    assert loss.dtype == dtype and dlogits.dtype == dtype and loss.shape == tl.shape
    np.testing.assert_allclose(loss, tl, **tol(dtype))
    np.testing.assert_allclose(dlogits, tg, **tol(dtype))
    assert (dlogits[1] == 0).all()  # the ignored row


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_logits_and_nan(dtype, rng):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [3e4, 0.0, -3e4], [1.0, np.nan, 0.0]], dtype)
    target = np.array([1, 0, 0, 2])
    w = np.array([0.5, 1.0, 2.0], dtype)
    for weight, eps, red in [(None, 0.0, "none"), (w, 0.1, "none"), (w, 0.1, "sum")]:
        dl = np.ones(4, dtype) if red == "none" else np.asarray(1.0, dtype)
        loss, lp = R.softmax_cross_entropy_forward(logits, target, weight, eps, red, -100)
        d = R.softmax_cross_entropy_backward(dl, lp, target, weight, eps, red, -100)
        tl, tg = torch_ce(logits, target, weight, eps, red, -100, dl)
        np.testing.assert_allclose(loss, tl, rtol=1e-6)
        np.testing.assert_allclose(d, tg, rtol=1e-6, atol=1e-7)
        if red == "none":
            assert np.isfinite(loss[:3]).all() and np.isnan(loss[3])
            assert np.isfinite(d[:3]).all() and np.isnan(d[3]).all()
        else:
            assert np.isnan(loss)
    loss, _ = R.softmax_cross_entropy_forward(logits[:3], target[:3], None, 0.0, "none", -100)
    np.testing.assert_allclose(loss, [2e4, 2e4 + np.log(2), 0.0], rtol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_cross_entropy_all_ignored_and_empty(weighted, eps, rng):
    logits, _ = ce_case(rng, np.float64, N=3)
    weight = rng.uniform(0.5, 1.5, 5) if weighted else None
    target = np.full(3, -100)
    for red in REDUCTIONS:
        dl = np.ones(3) if red == "none" else np.asarray(1.0)
        loss, lp = R.softmax_cross_entropy_forward(logits, target, weight, eps, red, -100)
        d = R.softmax_cross_entropy_backward(dl, lp, target, weight, eps, red, -100)
        tl, tg = torch_ce(logits, target, weight, eps, red, -100, dl)
        np.testing.assert_allclose(loss, tl)  # NaN for mean, 0 otherwise
        np.testing.assert_allclose(d, tg)
        assert (d == 0).all()
    empty = np.zeros((0, 5))
    et = np.zeros(0, np.int64)
    for red in REDUCTIONS:
        loss, lp = R.softmax_cross_entropy_forward(empty, et, weight, eps, red, -100)
        tl, _ = torch_ce(empty, et, weight, eps, red, -100, np.ones(0) if red == "none" else np.asarray(1.0))
        np.testing.assert_allclose(loss, tl)
        dl = np.ones(0) if red == "none" else np.asarray(1.0)
        assert R.softmax_cross_entropy_backward(dl, lp, et, weight, eps, red, -100).shape == (0, 5)


def test_cross_entropy_bad_input():
    lg = np.zeros((3, 4), np.float32)
    t = np.array([0, 1, 3])
    ce = R.softmax_cross_entropy_forward
    with pytest.raises(TypeError, match="softmax_cross_entropy_forward.*'target'.*float32"):
        ce(lg, t.astype(np.float32), None, 0.0, "mean", -100)
    with pytest.raises(TypeError, match="'logits'.*int64"):
        ce(lg.astype(np.int64), t, None, 0.0, "mean", -100)
    with pytest.raises(ValueError, match="class index 4 outside \\[0, 4\\)"):
        ce(lg, np.array([0, 4, 1]), None, 0.0, "mean", -100)
    with pytest.raises(ValueError, match="class index -1"):
        ce(lg, np.array([0, -1, 1]), None, 0.0, "mean", -100)
    with pytest.raises(ValueError, match="'logits' must be 2-D"):
        ce(lg[None], t, None, 0.0, "mean", -100)
    with pytest.raises(ValueError, match="'target' shape \\(2,\\) does not match batch size 3"):
        ce(lg, t[:2], None, 0.0, "mean", -100)
    with pytest.raises(ValueError, match="'weight' shape \\(3,\\) does not match 4 classes"):
        ce(lg, t, np.ones(3, np.float32), 0.0, "mean", -100)
    with pytest.raises(TypeError, match="mixed dtypes"):
        ce(lg, t, np.ones(4, np.float64), 0.0, "mean", -100)
    with pytest.raises(ValueError, match="label_smoothing"):
        ce(lg, t, None, 1.5, "mean", -100)
    with pytest.raises(ValueError, match="reduction"):
        ce(lg, t, None, 0.0, "avg", -100)
    _, lp = ce(lg, t, None, 0.0, "none", -100)
    with pytest.raises(ValueError, match="softmax_cross_entropy_backward.*'dloss' must have shape \\(3,\\)"):
        R.softmax_cross_entropy_backward(np.asarray(1.0, np.float32), lp, t, None, 0.0, "none", -100)
    with pytest.raises(TypeError, match="mixed dtypes"):
        R.softmax_cross_entropy_backward(np.ones(3), lp, t, None, 0.0, "none", -100)


# ---- mse / huber / bce --------------------------------------------------------------

def torch_loss(fn, pred, target, dloss, **kw):
    t = torch.from_numpy(pred.copy()).requires_grad_(True)
    tt = torch.from_numpy(target.copy()).requires_grad_(True)
    kw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    loss = fn(t, tt, **kw)
    loss.backward(torch.from_numpy(np.asarray(dloss)))
    return loss.detach().numpy(), t.grad.numpy(), tt.grad.numpy()


def _dloss(rng, reduction, shape, dtype):
    return rng.standard_normal(shape).astype(dtype) if reduction == "none" else np.asarray(0.7, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 3), (0, 2), (5,)])
def test_mse_huber_match_torch(dtype, reduction, shape, rng):
    pred = (rng.standard_normal(shape) * 2).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    dl = _dloss(rng, reduction, shape, dtype)
    loss = R.mse_forward(pred, target, reduction)
    d = R.mse_backward(dl, pred, target, reduction)
    tl, tg, _ = torch_loss(TF.mse_loss, pred, target, dl, reduction=reduction)
    np.testing.assert_allclose(loss, tl, **tol(dtype))
    np.testing.assert_allclose(d, tg, **tol(dtype))
    for delta in (0.5, 1.0, 2.5):
        loss = R.huber_forward(pred, target, delta, reduction)
        d = R.huber_backward(dl, pred, target, delta, reduction)
        tl, tg, _ = torch_loss(TF.huber_loss, pred, target, dl, reduction=reduction, delta=delta)
        assert loss.dtype == dtype and d.dtype == dtype
        np.testing.assert_allclose(loss, tl, **tol(dtype))
        np.testing.assert_allclose(d, tg, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("wshape,pshape", [(None, None), ((4, 3), None), (None, (3,)), ((3,), (3,)), ((4, 1), (1,))])
def test_bce_with_logits_matches_torch(dtype, reduction, wshape, pshape, rng):
    x = (rng.standard_normal((4, 3)) * 3).astype(dtype)
    x[0, 0], x[0, 1] = 1e4, -1e4
    t = rng.uniform(0, 1, (4, 3)).astype(dtype)
    t[1] = (t[1] > 0.5)
    w = None if wshape is None else rng.uniform(0.2, 2, wshape).astype(dtype)
    pw = None if pshape is None else rng.uniform(0.2, 3, pshape).astype(dtype)
    dl = _dloss(rng, reduction, x.shape, dtype)
    loss = R.bce_with_logits_forward(x, t, w, pw, reduction)
    d = R.bce_with_logits_backward(dl, x, t, w, pw, reduction)
    tl, tg, _ = torch_loss(TF.binary_cross_entropy_with_logits, x, t, dl, weight=w, pos_weight=pw,
                           reduction=reduction)
    assert np.isfinite(loss).all() and np.isfinite(d).all()
    np.testing.assert_allclose(loss, tl, rtol=tol(dtype)["rtol"] * 5, atol=tol(dtype)["atol"])
    np.testing.assert_allclose(d, tg, **tol(dtype))


def test_nan_propagates_in_pointwise_losses():
    x = np.array([0.5, np.nan, -1.0])
    t = np.array([0.0, 1.0, 1.0])
    for fwd, bwd in [(lambda r: R.mse_forward(x, t, r), lambda dl, r: R.mse_backward(dl, x, t, r)),
                     (lambda r: R.huber_forward(x, t, 1.0, r), lambda dl, r: R.huber_backward(dl, x, t, 1.0, r)),
                     (lambda r: R.bce_with_logits_forward(x, t, None, None, r),
                      lambda dl, r: R.bce_with_logits_backward(dl, x, t, None, None, r))]:
        out = fwd("none")
        assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()
        assert np.isnan(fwd("mean"))
        d = bwd(np.ones(3), "none")
        assert np.isnan(d[1]) and np.isfinite(d[[0, 2]]).all()


def test_pointwise_bad_input():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="mse_forward.*'pred' shape \\(2, 3\\) does not match 'target' shape"):
        R.mse_forward(a, np.ones((3, 2), np.float32), "mean")
    with pytest.raises(TypeError, match="mse_forward.*mixed dtypes"):
        R.mse_forward(a, a.astype(np.float64), "mean")
    with pytest.raises(TypeError, match="huber_forward.*'pred'.*int64"):
        R.huber_forward(np.ones((2, 3), np.int64), a, 1.0, "mean")
    with pytest.raises(ValueError, match="huber_forward.*delta.*> 0"):
        R.huber_forward(a, a, 0.0, "mean")
    with pytest.raises(ValueError, match="huber_backward.*'dloss' must have shape \\(\\)"):
        R.huber_backward(a, a, a, 1.0, "sum")
    with pytest.raises(ValueError, match="bce_with_logits_forward.*'pos_weight' shape \\(2,\\) does not broadcast"):
        R.bce_with_logits_forward(a, a, None, np.ones(2, np.float32), "mean")
    with pytest.raises(ValueError, match="bce_with_logits_forward.*'weight' shape \\(4, 3\\)"):
        R.bce_with_logits_forward(a, a, np.ones((4, 3), np.float32), None, "mean")
    with pytest.raises(TypeError, match="bce_with_logits_forward.*'target'.*int64"):
        R.bce_with_logits_forward(a, np.ones((2, 3), np.int64), None, None, "mean")
    with pytest.raises(ValueError, match="mse_backward.*reduction"):
        R.mse_backward(np.float32(1), a, a, "mean ")
    # non-contiguous inputs are copied
    p = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    np.testing.assert_allclose(R.mse_forward(p, p * 0, "none"), np.ascontiguousarray(p) ** 2)


# ---- autograd ops -------------------------------------------------------------------

def _t(x, grad=True):
    return fc.Tensor(x, requires_grad=grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_functional_cross_entropy_spatial(dtype, reduction, rng):
    x = rng.standard_normal((2, 4, 3, 2)).astype(dtype)
    t = rng.integers(0, 4, (2, 3, 2))
    t[0, 1, 1] = -100
    w = rng.uniform(0.5, 2, 4).astype(dtype)
    ours = _t(x.copy())
    loss = F.cross_entropy(ours, t, weight=w, reduction=reduction, label_smoothing=0.1)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tl = TF.cross_entropy(tx, torch.from_numpy(t), weight=torch.from_numpy(w), reduction=reduction,
                          label_smoothing=0.1)
    dl = rng.standard_normal(tl.shape).astype(dtype)
    loss.backward(dl)
    tl.backward(torch.from_numpy(dl))
    assert loss.shape == tuple(tl.shape)
    np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(ours.grad, tx.grad.numpy(), **tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_functional_nll_loss(reduction, rng):
    x = rng.standard_normal((5, 3, 2))
    t = rng.integers(0, 3, (5, 2))
    t[2, 0] = 1
    w = rng.uniform(0.5, 2, 3)
    lp = F.log_softmax(_t(x.copy()), dim=1)
    loss = F.nll_loss(lp, t, weight=w, ignore_index=1, reduction=reduction)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tl = TF.nll_loss(TF.log_softmax(tx, 1), torch.from_numpy(t), weight=torch.from_numpy(w), ignore_index=1,
                     reduction=reduction)
    np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), rtol=1e-12)
    gl = F.cross_entropy(_t(x.copy()), t, weight=w, ignore_index=1, reduction=reduction)
    np.testing.assert_allclose(loss.numpy(), gl.numpy(), rtol=1e-12)


def test_functional_unbatched_and_bad_targets(rng):
    x = rng.standard_normal(4)
    loss = F.cross_entropy(_t(x), np.array(2))
    np.testing.assert_allclose(loss.numpy(), TF.cross_entropy(torch.from_numpy(x), torch.tensor(2)).numpy())
    with pytest.raises(TypeError, match="cross_entropy.*integer class indices"):
        F.cross_entropy(_t(rng.standard_normal((3, 4))), rng.standard_normal(3))
    with pytest.raises(ValueError, match="cross_entropy.*'target' shape \\(3, 2\\) does not match"):
        F.cross_entropy(_t(rng.standard_normal((3, 4, 5))), np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        F.cross_entropy(_t(rng.standard_normal((3, 4))), np.array([0, 9, 1]))
    with pytest.raises(ValueError, match="nll_loss.*outside"):
        F.nll_loss(_t(rng.standard_normal((3, 4))), np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits.*'target' is not supported"):
        F.binary_cross_entropy_with_logits(_t(rng.standard_normal(3)), _t(rng.uniform(0, 1, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_pointwise_match_torch(dtype, rng):
    x = (rng.standard_normal((4, 3)) * 2).astype(dtype)
    y = rng.standard_normal((4, 3)).astype(dtype)
    cases = [(F.mse_loss, TF.mse_loss, {}), (F.huber_loss, TF.huber_loss, {"delta": 0.7}),
             (F.smooth_l1_loss, TF.smooth_l1_loss, {"beta": 0.5}), (F.smooth_l1_loss, TF.smooth_l1_loss, {"beta": 0.0}),
             (F.l1_loss, TF.l1_loss, {})]
    for ours, theirs, kw in cases:
        for red in REDUCTIONS:
            a, b = _t(x.copy()), _t(y.copy())
            loss = ours(a, b, reduction=red, **kw)
            dl = _dloss(rng, red, x.shape, dtype)
            loss.backward(dl)
            tl, tga, tgb = torch_loss(theirs, x, y, dl, reduction=red, **kw)
            np.testing.assert_allclose(loss.numpy(), tl, **tol(dtype))
            np.testing.assert_allclose(a.grad, tga, **tol(dtype))
            np.testing.assert_allclose(b.grad, tgb, **tol(dtype))
    a = _t(x.copy())
    loss = F.binary_cross_entropy_with_logits(a, (y > 0).astype(dtype), pos_weight=np.full(3, 2.0, dtype))
    loss.backward()
    tl, tga, _ = torch_loss(TF.binary_cross_entropy_with_logits, x, (y > 0).astype(dtype), np.asarray(1.0, dtype),
                            pos_weight=np.full(3, 2.0, dtype))
    np.testing.assert_allclose(loss.numpy(), tl, **tol(dtype))
    np.testing.assert_allclose(a.grad, tga, **tol(dtype))


def test_gradcheck(rng):
    x = _t(rng.standard_normal((4, 3)))
    t = rng.integers(0, 3, 4)
    t[0] = -100
    w = rng.uniform(0.5, 2, 3)
    y = _t(rng.standard_normal((4, 3)))
    for red in REDUCTIONS:
        assert gradcheck(lambda a: F.cross_entropy(a, t, weight=w, reduction=red, label_smoothing=0.2), [x])
        assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=red), [x, y])
        assert gradcheck(lambda a, b: F.huber_loss(a, b, reduction=red, delta=0.8), [x, y])
        assert gradcheck(lambda a: F.binary_cross_entropy_with_logits(
            a, (y.data > 0).astype(np.float64), weight=w, pos_weight=w[::-1].copy(), reduction=red), [x])
    x4 = _t(rng.standard_normal((2, 3, 2, 2)))
    t4 = rng.integers(0, 3, (2, 2, 2))
    assert gradcheck(lambda a: F.cross_entropy(a, t4, reduction="none"), [x4])
    assert gradcheck(lambda a: F.nll_loss(a, t4, weight=w), [x4])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2), (3,)])
def test_functional_cross_entropy_probability_targets(reduction, shape, rng):
    x = rng.standard_normal(shape)
    p = rng.uniform(0, 1, shape)
    p /= p.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)
    w = rng.uniform(0.5, 2, 3)
    xt = _t(x.copy())
    loss = F.cross_entropy(xt, p, weight=w, reduction=reduction, label_smoothing=0.1)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tl = TF.cross_entropy(tx, torch.from_numpy(p), weight=torch.from_numpy(w), reduction=reduction,
                          label_smoothing=0.1)
    dl = rng.standard_normal(tl.shape)
    loss.backward(dl)
    tl.backward(torch.from_numpy(dl))
    np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        F.cross_entropy(_t(x), p, ignore_index=0)
    with pytest.raises(TypeError, match="mixed dtypes"):
        F.cross_entropy(_t(x), p.astype(np.float32))


def test_functional_cross_entropy_int32_and_uint8_targets(rng):
    x = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, 5)
    ref = F.cross_entropy(_t(x), t).numpy()
    for dt in (np.int32, np.uint8, np.int16):
        np.testing.assert_allclose(F.cross_entropy(_t(x), t.astype(dt)).numpy(), ref, rtol=1e-15)
    lg = rng.standard_normal((6, 8))[:, ::2]  # non-contiguous logits are copied by the kernel
    tt = np.arange(12)[::2] % 4
    loss, _ = R.softmax_cross_entropy_forward(lg, tt, None, 0.0, "none", -100)
    loss2, _ = R.softmax_cross_entropy_forward(np.ascontiguousarray(lg), np.ascontiguousarray(tt), None, 0.0, "none", -100)
    np.testing.assert_array_equal(loss, loss2)


def test_bce_empty_batch():
    x = np.zeros((0, 3), np.float32)
    for red in REDUCTIONS:
        loss = R.bce_with_logits_forward(x, x, None, np.ones(3, np.float32), red)
        tl = TF.binary_cross_entropy_with_logits(torch.from_numpy(x), torch.from_numpy(x), reduction=red,
                                                 pos_weight=torch.ones(3))
        np.testing.assert_allclose(loss, tl.numpy())  # NaN for mean, 0 for sum, empty for none
        dl = np.ones((0, 3), np.float32) if red == "none" else np.asarray(1.0, np.float32)
        assert R.bce_with_logits_backward(dl, x, x, None, None, red).shape == (0, 3)
