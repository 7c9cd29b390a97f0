"""Cython batch-norm against PyTorch and the reference, forward and backward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from fastconv import dispatch
from fastconv.kernels import reference as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")


def K():
    return dispatch.load("cython")


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (2, 6), (1, 4, 9), (3, 2, 2, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(dtype, shape, training, affine):
    rng = np.random.default_rng(sum(shape))
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    g = rng.standard_normal(C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.random(C).astype(dtype) + 0.5
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tg = torch.from_numpy(g.copy()).requires_grad_(True) if affine else None
    tb = torch.from_numpy(b.copy()).requires_grad_(True) if affine else None
    ty = TF.batch_norm(tx, trm, trv, tg, tb, training, 0.1, 1e-5)
    y, m, inv = K().batch_norm_forward(x, g, b, rm, rv, training, 0.1, 1e-5)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert rel(y, ty.detach().numpy()) < tol
    assert rel(rm, trm.numpy()) < tol and rel(rv, trv.numpy()) < tol
    dy = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx, dg, db = K().batch_norm_backward(dy, x, g, m, inv, training)
    # with few values per channel dx nearly cancels to 0: measure against the size of dy * gamma * invstd
    scale = np.linalg.norm(dy) * float(np.abs(inv).max()) * (float(np.abs(g).max()) if affine else 1.0)
    assert np.linalg.norm(dx - tx.grad.numpy()) <= 10 * tol * max(np.linalg.norm(tx.grad.numpy()), scale)
    if affine:
        assert rel(dg, tg.grad.numpy()) < 10 * tol and rel(db, tb.grad.numpy()) < 10 * tol
    else:
        assert dg is None and db is None
    # and the reference agrees on the saved statistics
    _, mr, ir = R.batch_norm_forward(x, g, b, None, None, True, 0.1, 1e-5) if training else (None, m, inv)
    assert rel(m, mr) < tol and rel(inv, ir) < tol


def test_large_mean_is_stable():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 2, 16, 16)) + 1e4).astype(np.float32)
    y, m, inv = K().batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
    x64 = x.astype(np.float64)
    ref_var = x64.var(axis=(0, 2, 3))
    assert rel(1 / inv.astype(np.float64) ** 2 - 1e-5, ref_var) < 1e-4


def test_empty_batch_and_nan():
    x = np.zeros((0, 3, 4, 4), np.float32)
    y, m, inv = K().batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
    assert y.shape == x.shape
    x = np.ones((2, 3, 2, 2), np.float32)
    x[0, 1, 0, 0] = np.nan
    y, _, _ = K().batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5)
    assert np.isnan(y[:, 1]).all() and not np.isnan(y[:, 0]).any()


def test_bad_input():
    k = K()
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        k.batch_norm_forward(np.zeros((1, 3), np.float32), None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="gamma"):
        k.batch_norm_forward(x, np.ones(4, np.float32), None, None, None, True, 0.1, 1e-5)
    with pytest.raises(TypeError):
        k.batch_norm_forward(x.astype(np.int32), None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="required when training=False"):
        k.batch_norm_forward(x, None, None, None, None, False, 0.1, 1e-5)
    with pytest.raises(ValueError, match="C-contiguous"):
        k.batch_norm_forward(x, None, None, np.zeros(6, np.float32)[::2], np.ones(3, np.float32), True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="x"):
        k.batch_norm_forward(np.zeros(3, np.float32), None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="shape"):
        k.batch_norm_backward(np.zeros((2, 3, 4, 5), np.float32), x, None, np.zeros(3, np.float32),
                              np.ones(3, np.float32), True)
