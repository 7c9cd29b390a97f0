"""Reference batch norm, layer norm and dropout, and their autograd ops, against PyTorch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv import random as fcrandom
from fastconv import dispatch
from fastconv.kernels import reference as R
from fastconv.testing import gradcheck

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-11)


def torch_bn(x, gamma, beta, rm, rv, training, momentum, eps, dy):
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tg = None if gamma is None else torch.from_numpy(gamma.copy()).requires_grad_(True)
    tb = None if beta is None else torch.from_numpy(beta.copy()).requires_grad_(True)
    y = TF.batch_norm(tx, rm, rv, tg, tb, training=training, momentum=momentum, eps=eps)
    y.backward(torch.from_numpy(dy))
    return (y.detach().numpy(), tx.grad.numpy(), None if tg is None else tg.grad.numpy(),
            None if tb is None else tb.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_then_eval_matches_torch(dtype, shape, affine, rng):
    C = shape[1]
    gamma = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    trm, trv = torch.zeros(C, dtype=torch.from_numpy(rm).dtype), torch.ones(C, dtype=torch.from_numpy(rv).dtype)
    for step in range(3):  # running stats follow torch's over several steps
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        y, mean, invstd = R.batch_norm_forward(x, gamma, beta, rm, rv, True, 0.2, 1e-5)
        dx, dg, db = R.batch_norm_backward(dy, x, gamma, mean, invstd, True)
        ty, tdx, tdg, tdb = torch_bn(x, gamma, beta, trm, trv, True, 0.2, 1e-5, dy)
        np.testing.assert_allclose(y, ty, **tol(dtype))
        np.testing.assert_allclose(dx, tdx, **tol(dtype))
        np.testing.assert_allclose(rm, trm.numpy(), **tol(dtype))
        np.testing.assert_allclose(rv, trv.numpy(), **tol(dtype))
        if affine:
            np.testing.assert_allclose(dg, tdg, **tol(dtype))
            np.testing.assert_allclose(db, tdb, **tol(dtype))
        else:
            assert dg is None and db is None
        assert y.dtype == dtype and dx.dtype == dtype and mean.shape == (C,) and invstd.shape == (C,)
    # eval: running statistics, which stay untouched
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    before = rm.copy(), rv.copy()
    y, mean, invstd = R.batch_norm_forward(x, gamma, beta, rm, rv, False, 0.2, 1e-5)
    dx, dg, db = R.batch_norm_backward(dy, x, gamma, mean, invstd, False)
    ty, tdx, tdg, tdb = torch_bn(x, gamma, beta, trm, trv, False, 0.2, 1e-5, dy)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])
    np.testing.assert_allclose(mean, rm)
    np.testing.assert_allclose(y, ty, **tol(dtype))
    np.testing.assert_allclose(dx, tdx, **tol(dtype))
    if affine:
        np.testing.assert_allclose(dg, tdg, **tol(dtype))
        np.testing.assert_allclose(db, tdb, **tol(dtype))


def test_batch_norm_no_running_stats_and_edge_cases(rng):
    x = rng.standard_normal((5, 2, 3))
    y, mean, invstd = R.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
    ty = TF.batch_norm(torch.from_numpy(x), None, None, training=True)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10)
    # empty batch: empty result, running stats unchanged (as torch)
    rm, rv = np.full(2, 0.5), np.full(2, 2.0)
    y, _, _ = R.batch_norm_forward(np.zeros((0, 2, 3)), None, None, rm, rv, True, 0.1, 1e-5)
    assert y.shape == (0, 2, 3) and (rm == 0.5).all() and (rv == 2.0).all()
    assert R.batch_norm_forward(np.zeros((0, 2)), None, None, rm, rv, False, 0.1, 1e-5)[0].shape == (0, 2)
    dx, dg, db = R.batch_norm_backward(np.zeros((0, 2)), np.zeros((0, 2)), np.ones(2), np.zeros(2), np.ones(2), True)
    assert dx.shape == (0, 2) and (dg == 0).all() and (db == 0).all()
    # non-contiguous input is copied, not misread
    xs = rng.standard_normal((5, 6, 4))[:, ::2]
    y, m, s = R.batch_norm_forward(xs, None, None, None, None, True, 0.1, 1e-5)
    y2, m2, s2 = R.batch_norm_forward(np.ascontiguousarray(xs), None, None, None, None, True, 0.1, 1e-5)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(R.batch_norm_backward(xs, xs, None, m, s, True)[0],
                                  R.batch_norm_backward(y2 * 0 + xs, np.ascontiguousarray(xs), None, m2, s2, True)[0])
    # NaN in one channel stays in that channel
    x = rng.standard_normal((4, 3))
    x[1, 0] = np.nan
    y, _, _ = R.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1:]).all()


def test_batch_norm_bad_input():
    x = np.ones((4, 3), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    bn = R.batch_norm_forward
    with pytest.raises(ValueError, match="batch_norm_forward.*'x' must have at least 2"):
        bn(np.ones(3, np.float32), None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'gamma' shape \\(4,\\) does not match C=3"):
        bn(x, np.ones(4, np.float32), None, rm, rv, True, 0.1, 1e-5)
    with pytest.raises(TypeError, match="mixed dtypes"):
        bn(x, np.ones(3), None, rm, rv, True, 0.1, 1e-5)
    with pytest.raises(TypeError, match="'x'.*int64"):
        bn(np.ones((4, 3), np.int64), None, None, rm, rv, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'running_mean' is updated in place and must be C-contiguous"):
        bn(x, None, None, np.zeros(6, np.float32)[::2], rv, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="required when training=False"):
        bn(x, None, None, None, None, False, 0.1, 1e-5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.ones((1, 3), np.float32), None, None, rm, rv, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="momentum"):
        bn(x, None, None, rm, rv, True, 1.5, 1e-5)
    with pytest.raises(ValueError, match="both 'running_mean' and 'running_var'"):
        bn(x, None, None, rm, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="batch_norm_backward.*'dy' shape"):
        R.batch_norm_backward(np.ones((3, 3), np.float32), x, None, rm, rv, True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ns", [((4, 5), 5), ((2, 3, 4), (3, 4)), ((0, 6), (6,)), ((3, 2, 5), [5])])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(dtype, shape, ns, affine, rng):
    nshape = (ns,) if isinstance(ns, int) else tuple(ns)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    g = rng.uniform(0.5, 1.5, nshape).astype(dtype) if affine else None
    b = rng.standard_normal(nshape).astype(dtype) if affine else None
    y, mean, rstd = R.layer_norm_forward(x, ns, g, b, 1e-5)
    dx, dg, db = R.layer_norm_backward(dy, x, ns, g, mean, rstd)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tg = None if g is None else torch.from_numpy(g.copy()).requires_grad_(True)
    tb = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    ty = TF.layer_norm(tx, nshape, tg, tb, 1e-5)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol(dtype))
    assert y.dtype == dtype and dx.dtype == dtype
    if affine:
        np.testing.assert_allclose(dg, tg.grad.numpy(), **tol(dtype))
        np.testing.assert_allclose(db, tb.grad.numpy(), **tol(dtype))
    else:
        assert dg is None and db is None


def test_layer_norm_bad_input_and_nan():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="layer_norm_forward.*does not end with normalized_shape \\(3,\\)"):
        R.layer_norm_forward(x, 3, None, None, 1e-5)
    with pytest.raises(ValueError, match="'gamma' shape \\(3,\\) does not match normalized_shape \\(4,\\)"):
        R.layer_norm_forward(x, 4, np.ones(3, np.float32), None, 1e-5)
    with pytest.raises(TypeError, match="normalized_shape"):
        R.layer_norm_forward(x, "4", None, None, 1e-5)
    with pytest.raises(TypeError, match="mixed dtypes"):
        R.layer_norm_forward(x, 4, np.ones(4), None, 1e-5)
    with pytest.raises(TypeError, match="'x'.*int"):
        R.layer_norm_forward(np.ones((2, 4), np.int32), 4, None, None, 1e-5)
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[1, 2] = np.nan
    y, _, _ = R.layer_norm_forward(x, 4, None, None, 1e-5)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    y, _, _ = R.layer_norm_forward(x.T.copy().T, 4, None, None, 1e-5)  # non-contiguous is copied
    assert np.isnan(y[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask(dtype, rng):
    x = rng.standard_normal((64, 50)).astype(dtype)
    y, mask = R.dropout_forward(x, 0.3, 1234)
    y2, mask2 = R.dropout_forward(x, 0.3, 1234)
    _, mask3 = R.dropout_forward(x, 0.3, 1235)
    np.testing.assert_array_equal(mask, mask2)
    assert (mask != mask3).any()
    assert mask.dtype == dtype and y.dtype == dtype
    assert set(np.unique(mask)) == {dtype(0), dtype(1 / 0.7)}
    assert abs((mask == 0).mean() - 0.3) < 0.03
    np.testing.assert_array_equal(y, x * mask)
    dy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(R.dropout_backward(dy, mask), dy * mask)
    y0, m0 = R.dropout_forward(x, 0.0, 1)
    np.testing.assert_array_equal(y0, x)
    assert (m0 == 1).all()
    y1, m1 = R.dropout_forward(x, 1.0, 1)
    assert (y1 == 0).all() and (m1 == 0).all()
    xn = x.copy()
    xn[0, 0] = np.nan
    assert np.isnan(R.dropout_forward(xn, 0.5, 7)[0][0, 0])
    assert R.dropout_forward(np.zeros((0, 3), dtype), 0.5, 7)[0].shape == (0, 3)


def test_dropout_bad_input():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="dropout_forward.*'p' must be <= 1"):
        R.dropout_forward(x, 1.5, 0)
    with pytest.raises(ValueError, match="dropout_forward.*'p' must be >= 0"):
        R.dropout_forward(x, -0.1, 0)
    with pytest.raises(ValueError, match="'seed' must be >= 0"):
        R.dropout_forward(x, 0.5, -1)
    with pytest.raises(TypeError, match="'seed' must be an int"):
        R.dropout_forward(x, 0.5, None)
    with pytest.raises(TypeError, match="'x'.*int64"):
        R.dropout_forward(np.ones(3, np.int64), 0.5, 0)
    with pytest.raises(TypeError, match="dropout_backward.*mixed dtypes"):
        R.dropout_backward(x, x.astype(np.float64))
    with pytest.raises(ValueError, match="dropout_backward.*shape"):
        R.dropout_backward(x, x.T)
    with pytest.raises(ValueError, match="dropout.*'p'"):
        F.dropout(fc.Tensor(x), p=2.0)


# ---- autograd ops -------------------------------------------------------------------

def _t(x, grad=True):
    return fc.Tensor(x, requires_grad=grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_batch_norm_tensor_stats_in_place(dtype, rng):
    C = 3
    rm, rv = fc.Tensor(np.zeros(C, dtype)), fc.Tensor(np.ones(C, dtype))
    rm_data = rm.data
    trm, trv = torch.zeros(C, dtype=torch.from_numpy(rm.data).dtype), torch.ones(C, dtype=torch.from_numpy(rv.data).dtype)
    w, b = rng.uniform(0.5, 1.5, C).astype(dtype), rng.standard_normal(C).astype(dtype)
    for training in (True, True, False):
        x = rng.standard_normal((4, C, 2, 2)).astype(dtype)
        xt, wt, bt = _t(x.copy()), _t(w.copy()), _t(b.copy())
        y = F.batch_norm(xt, rm, rv, wt, bt, training=training, momentum=0.1)
        tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
        ty = TF.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.1)
        dy = rng.standard_normal(x.shape).astype(dtype)
        y.backward(dy)
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol(dtype))
        for ours, theirs in ((xt, tx), (wt, tw), (bt, tb)):
            np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), **tol(dtype))
        np.testing.assert_allclose(rm.data, trm.numpy(), **tol(dtype))
        np.testing.assert_allclose(rv.data, trv.numpy(), **tol(dtype))
    assert rm.data is rm_data  # updated in place


def test_functional_bias_without_weight(rng):
    x = rng.standard_normal((4, 3))
    b = rng.standard_normal(3)
    for ours, theirs in [
        (lambda xx, bb: F.batch_norm(xx, None, None, None, bb, training=True),
         lambda xx, bb: TF.batch_norm(xx, None, None, None, bb, training=True)),
        (lambda xx, bb: F.layer_norm(xx, 3, None, bb), lambda xx, bb: TF.layer_norm(xx, (3,), None, bb)),
    ]:
        xt, bt = _t(x.copy()), _t(b.copy())
        ours(xt, bt).sum().backward()
        tx, tb = torch.from_numpy(x.copy()).requires_grad_(True), torch.from_numpy(b.copy()).requires_grad_(True)
        theirs(tx, tb).sum().backward()
        np.testing.assert_allclose(bt.grad, tb.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(xt.grad, tx.grad.numpy(), atol=1e-12)


def test_gradcheck(rng):
    x = _t(rng.standard_normal((4, 2, 3)))
    g = _t(rng.uniform(0.5, 1.5, 2))
    b = _t(rng.standard_normal(2))
    rm, rv = rng.standard_normal(2), rng.uniform(0.5, 2, 2)
    assert gradcheck(lambda a, gg, bb: F.batch_norm(a, None, None, gg, bb, training=True), [x, g, b])
    assert gradcheck(lambda a, gg, bb: F.batch_norm(a, rm, rv, gg, bb, training=False), [x, g, b])
    assert gradcheck(lambda a: F.batch_norm(a, None, None, training=True), [x])
    g3, b3 = _t(rng.uniform(0.5, 1.5, (2, 3))), _t(rng.standard_normal((2, 3)))
    assert gradcheck(lambda a, gg, bb: F.layer_norm(a, (2, 3), gg, bb), [x, g3, b3])
    assert gradcheck(lambda a: F.layer_norm(a, 3), [x])
    assert gradcheck(lambda a: F.dropout(a, 0.4, seed=5), [x])


def test_functional_dropout_seeding(rng):
    x = fc.Tensor(rng.standard_normal((8, 9)))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    fcrandom.manual_seed(3)
    a = F.dropout(x, 0.5).numpy()
    b = F.dropout(x, 0.5).numpy()
    fcrandom.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    assert (a != b).any()
    # the mask is a function of the seed within a backend (the Cython kernel's differs from the reference's)
    kern = dispatch.kernel("dropout_forward", x.data)
    np.testing.assert_array_equal(F.dropout(x, 0.5, seed=11).numpy(), kern(x.data, 0.5, 11)[0])
    assert fcrandom.initial_seed() == 3
    with pytest.raises(ValueError, match="manual_seed"):
        fcrandom.manual_seed(-1)
    xt = _t(x.data.copy())
    y = F.dropout(xt, 0.25, seed=2)
    y.sum().backward()
    np.testing.assert_array_equal(xt.grad, kern(x.data, 0.25, 2)[1])
