"""Cython softmax cross-entropy against PyTorch and the reference (forward and backward)."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv import dispatch
from fastconv.kernels import reference as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")
REDUCTIONS = ("mean", "sum", "none")


def K():
    return dispatch.load("cython")


def torch_ce(logits, target, weight, eps, reduction, ignore_index, dloss):
    t = torch.from_numpy(logits.copy()).requires_grad_(True)
    w = None if weight is None else torch.from_numpy(weight)
    loss = TF.cross_entropy(t, torch.from_numpy(target.astype(np.int64)), weight=w, ignore_index=ignore_index,
                            reduction=reduction, label_smoothing=eps)
    loss.backward(torch.from_numpy(np.asarray(dloss)))
    return loss.detach().numpy(), t.grad.numpy()


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,eps,ignore_index,tdtype",
                         list(itertools.product([False, True], [0.0, 0.25], [-100, 2], [np.int64])) +
                         [(False, 0.0, -100, np.int32), (False, 0.0, 3, np.int32)])
def test_matches_torch(dtype, reduction, weighted, eps, ignore_index, tdtype):
    rng = np.random.default_rng(int(weighted) + 10 * int(eps > 0) + (ignore_index > 0) * 100)
    N, C = 9, 17  # a class count that is no multiple of a vector width
    logits = (rng.standard_normal((N, C)) * 3).astype(dtype)
    target = rng.integers(0, C, N).astype(tdtype)
    target[1] = ignore_index
    weight = rng.uniform(0.2, 2.0, C).astype(dtype) if weighted else None
    dloss = rng.standard_normal(N).astype(dtype) if reduction == "none" else np.asarray(1.7, dtype)
    loss, lp = K().softmax_cross_entropy_forward(logits, target, weight, eps, reduction, ignore_index)
    d = K().softmax_cross_entropy_backward(dloss, lp, target, weight, eps, reduction, ignore_index)
    tl, tg = torch_ce(logits, target, weight, eps, reduction, ignore_index, dloss)
    assert loss.dtype == dtype and d.dtype == dtype and lp.dtype == dtype and loss.shape == tl.shape
    np.testing.assert_allclose(loss, tl, **tol(dtype))
    np.testing.assert_allclose(d, tg, **tol(dtype))
    assert (d[1] == 0).all()
    rl, rlp = R.softmax_cross_entropy_forward(logits, target, weight, eps, reduction, ignore_index)
    np.testing.assert_allclose(lp, rlp, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_and_nan(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [3e4, 0.0, -3e4], [1.0, np.nan, 0.0],
                       [np.nan, 1.0, 2.0]], dtype)
    target = np.array([1, 0, 0, 2, 1])
    loss, lp = K().softmax_cross_entropy_forward(logits, target, None, 0.0, "none", -100)
    d = K().softmax_cross_entropy_backward(np.ones(5, dtype), lp, target, None, 0.0, "none", -100)
    tl, tg = torch_ce(logits, target, None, 0.0, "none", -100, np.ones(5, dtype))
    np.testing.assert_allclose(loss, tl, rtol=1e-6)
    np.testing.assert_allclose(d, tg, rtol=1e-6, atol=1e-7)
    assert np.isfinite(loss[:3]).all() and np.isnan(loss[3:]).all() and np.isnan(d[3:]).all()
    total, _ = K().softmax_cross_entropy_forward(logits, target, None, 0.0, "mean", -100)
    assert np.isnan(total)


def test_all_ignored_empty_and_one_class():
    logits = np.random.default_rng(0).standard_normal((3, 5))
    target = np.full(3, -100)
    for red in REDUCTIONS:
        dl = np.ones(3) if red == "none" else np.asarray(1.0)
        loss, lp = K().softmax_cross_entropy_forward(logits, target, None, 0.0, red, -100)
        d = K().softmax_cross_entropy_backward(dl, lp, target, None, 0.0, red, -100)
        tl, tg = torch_ce(logits, target, None, 0.0, red, -100, dl)
        np.testing.assert_allclose(loss, tl)  # NaN for mean, 0 otherwise
        assert (d == 0).all()
    empty, et = np.zeros((0, 5), np.float32), np.zeros(0, np.int64)
    for red in REDUCTIONS:
        loss, lp = K().softmax_cross_entropy_forward(empty, et, None, 0.0, red, -100)
        tl, _ = torch_ce(empty, et, None, 0.0, red, -100, np.ones(0, np.float32) if red == "none" else np.asarray(1.0, np.float32))
        np.testing.assert_allclose(loss, tl)
        dl = np.ones(0, np.float32) if red == "none" else np.asarray(1.0, np.float32)
        assert K().softmax_cross_entropy_backward(dl, lp, et, None, 0.0, red, -100).shape == (0, 5)
    loss, lp = K().softmax_cross_entropy_forward(np.ones((2, 1), np.float32), np.zeros(2, np.int64), None, 0.0,
                                                 "sum", -100)
    assert loss == 0


def test_bad_input_messages_match_reference():
    lg = np.zeros((3, 4), np.float32)
    t = np.array([0, 1, 3])
    ce = K().softmax_cross_entropy_forward
    cases = [
        (TypeError, "softmax_cross_entropy_forward.*'target'.*float32", (lg, t.astype(np.float32), None, 0.0, "mean", -100)),
        (TypeError, "'logits'.*int64", (lg.astype(np.int64), t, None, 0.0, "mean", -100)),
        (ValueError, "class index 4 outside \\[0, 4\\)", (lg, np.array([0, 4, 1]), None, 0.0, "mean", -100)),
        (ValueError, "class index -1", (lg, np.array([0, -1, 1]), None, 0.0, "mean", -100)),
        (ValueError, "'logits' must be 2-D", (lg[None], t, None, 0.0, "mean", -100)),
        (ValueError, "'target' shape \\(2,\\) does not match batch size 3", (lg, t[:2], None, 0.0, "mean", -100)),
        (ValueError, "'weight' shape \\(3,\\) does not match 4 classes", (lg, t, np.ones(3, np.float32), 0.0, "mean", -100)),
        (ValueError, "label_smoothing", (lg, t, None, 1.5, "mean", -100)),
        (ValueError, "reduction", (lg, t, None, 0.0, "avg", -100)),
        (ValueError, "'logits' has no classes", (np.zeros((2, 0), np.float32), np.zeros(2, np.int64), None, 0.0, "mean", -100)),
    ]
    for exc, msg, args in cases:
        with pytest.raises(exc, match=msg):
            ce(*args)
        with pytest.raises(exc, match=msg):
            R.softmax_cross_entropy_forward(*args)
    _, lp = ce(lg, t, None, 0.0, "none", -100)
    bwd = K().softmax_cross_entropy_backward
    with pytest.raises(ValueError, match="softmax_cross_entropy_backward.*'dloss' must have shape \\(3,\\)"):
        bwd(np.asarray(1.0, np.float32), lp, t, None, 0.0, "none", -100)
    with pytest.raises(TypeError, match="mixed dtypes"):
        bwd(np.ones(3), lp, t, None, 0.0, "none", -100)
    with pytest.raises(TypeError, match="CuPy|NumPy"):
        ce(lg.tolist(), t, None, 0.0, "mean", -100)


def test_functional_cross_entropy_uses_it_and_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)  # (N, C, d1): the flattening path too
    y = rng.integers(0, 4, (6, 3))
    fx = fc.Tensor(x, requires_grad=True)
    loss = F.cross_entropy(fx, y)
    loss.backward()
    tx = torch.tensor(x, requires_grad=True)
    tl = TF.cross_entropy(tx, torch.tensor(y))
    tl.backward()
    np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(fx.grad, tx.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert dispatch.resolve("softmax_cross_entropy_forward", "cpu")[0] == "cython"


@pytest.mark.parametrize("C", [1, 15, 16, 33, 1000])
def test_float32_polynomial_exp_rows(C):
    """float32 rows use _fast_exp.h's inlined exp: widths around the SIMD width, N=1 and N=7,
    logits spread so that exp(x - max) underflows to 0, and a -inf logit, against float64 torch."""
    rng = np.random.default_rng(C)
    for N in (1, 7):
        logits = (rng.standard_normal((N, C)) * 40).astype(np.float32)
        logits[0, C // 2] = -np.inf
        logits[-1, 0] = max(logits[-1].max(), 0) + 1  # the max at a row's first element
        target = rng.integers(0, C, N)
        target[0] = (C // 2 + 1) % C if C > 1 else 0
        dloss = rng.standard_normal(N).astype(np.float32)
        loss, lp = K().softmax_cross_entropy_forward(logits, target, None, 0.0, "none", -100)
        d = K().softmax_cross_entropy_backward(dloss, lp, target, None, 0.0, "none", -100)
        tl, tg = torch_ce(logits.astype(np.float64), target, None, 0.0, "none", -100, dloss.astype(np.float64))
        finite = np.isfinite(lp)
        assert (finite == np.isfinite(logits)).all()
        np.testing.assert_allclose(loss, tl, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(d, tg, rtol=1e-5, atol=1e-6)


def test_fast_argument_path_matches_checked_path():
    """Plain arguments (C-contiguous ndarrays, int64 targets, float 0 smoothing, int ignore_index)
    skip the per-argument checks; everything else takes them (copies, int32 targets, int 0
    smoothing, NumPy-scalar ignore_index) -- same results either way, for every reduction."""
    rng = np.random.default_rng(9)
    base = (rng.standard_normal((7, 13)) * 3).astype(np.float32)
    t64 = rng.integers(0, 13, 7)
    t64[2] = 5
    t64[4] = -100
    fwd, bwd = K().softmax_cross_entropy_forward, K().softmax_cross_entropy_backward
    for red in REDUCTIONS:
        dl = np.linspace(0.5, 2, 7, dtype=np.float32) if red == "none" else np.asarray(0.7, np.float32)
        want_l, want_lp = fwd(base, t64, None, 0.0, red, -100)
        want_d = bwd(dl, want_lp, t64, None, 0.0, red, -100)
        tl, tg = torch_ce(base, t64, None, 0.0, red, -100, dl)
        np.testing.assert_allclose(want_l, tl, rtol=1e-5)
        np.testing.assert_allclose(want_d, tg, rtol=1e-5, atol=1e-7)
        for lg, t, eps, ig, dloss in ((np.asfortranarray(base), t64, 0.0, -100, dl),
                                      (base, t64.astype(np.int32), 0, np.int64(-100), dl.astype(np.float32)),
                                      (base, t64[::-1].copy()[::-1], 0.0, -100, np.array(dl, order="F"))):
            loss, lp = fwd(lg, t, None, eps, red, ig)  # a copy's alignment may change the sum order: last bits
            np.testing.assert_allclose(loss, want_l, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(lp, want_lp, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(bwd(dloss, lp, t, None, eps, red, ig), want_d, rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="mixed dtypes"):
        bwd(np.asarray(1.0), want_lp, t64, None, 0.0, "mean", -100)
    with pytest.raises(ValueError, match="class index 13"):
        fwd(base, np.full(7, 13), None, 0.0, "mean", -100)
    all_ignored = np.full(7, 3)
    _, lp = fwd(base, all_ignored, None, 0.0, "mean", 3)
    assert (bwd(np.asarray(1.0, np.float32), lp, all_ignored, None, 0.0, "mean", 3) == 0).all()
