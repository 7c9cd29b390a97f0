"""Fused batch norm + residual add + ReLU (``batch_norm_act``): the Cython kernels, the
autograd op and ``BatchNorm2d.forward_act`` against PyTorch's composition and against
fastconv's own unfused ops (reference backend), forward and backward, plus gradcheck."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as fc
import fastconv.functional as F
from fastconv import dispatch, nn
from fastconv.testing import gradcheck

needs_cython = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")


def K():
    return dispatch.load("cython")


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def torch_tail(x, g, b, rm, rv, training, r, relu, dy):
    """PyTorch's batch_norm (+ residual) (+ relu): output, grads of x, g, b, r, running stats after."""
    tx = torch.tensor(x, requires_grad=True)
    tg = None if g is None else torch.tensor(g, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    tr = None if r is None else torch.tensor(r, requires_grad=True)
    trm = None if rm is None else torch.tensor(rm)
    trv = None if rv is None else torch.tensor(rv)
    y = TF.batch_norm(tx, trm, trv, tg, tb, training=training, momentum=0.1, eps=1e-5)
    if tr is not None:
        y = y + tr
    if relu:
        y = torch.relu(y)
    y.backward(torch.tensor(dy))
    grad = lambda t: None if t is None else t.grad.numpy()  # noqa: E731
    return (y.detach().numpy(), grad(tx), grad(tg), grad(tb), grad(tr),
            None if trm is None else trm.numpy(), None if trv is None else trv.numpy())


CASES = [  # shape, residual, relu, training, affine
    ((4, 3, 5, 7), True, True, True, True),
    ((4, 3, 5, 7), False, True, True, True),
    ((4, 3, 5, 7), True, False, True, True),
    ((4, 3, 5, 7), False, False, True, True),
    ((2, 5, 17, 3), True, True, False, True),
    ((3, 4, 6, 6), True, True, True, False),
    ((1, 1, 33, 2), True, True, True, True),   # N=1, C=1, a width that is no multiple of 16
    ((6, 4), True, True, True, True),          # (N, C): S = 1
    ((2, 3, 9), False, True, False, False),    # (N, C, L), eval, no affine
]


@needs_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,residual,relu,training,affine", CASES)
def test_kernels_match_torch(dtype, shape, residual, relu, training, affine):
    rng = np.random.default_rng(sum(shape) + 7 * residual + 3 * relu + training)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    r = rng.standard_normal(shape).astype(dtype) if residual else None
    g = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    rm, rv = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    ty, tdx, tdg, tdb, tdr, trm, trv = torch_tail(x, g, b, rm.copy(), rv.copy(), training, r, relu, dy)
    frm, frv = rm.copy(), rv.copy()
    y, mean, invstd = K().batch_norm_act_forward(x, g, b, frm, frv, training, 0.1, 1e-5, r, relu)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and y.shape == x.shape
    assert rel(y, ty) < tol
    np.testing.assert_allclose(frm, trm, rtol=tol, atol=tol)
    np.testing.assert_allclose(frv, trv, rtol=tol, atol=tol)
    gg = g if g is not None else np.ones(C, dtype)
    dx, dg, db, dr = K().batch_norm_act_backward(dy, x, y, gg, mean, invstd, training, relu, residual)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert rel(dx, tdx) < tol
    if affine:
        assert rel(dg, tdg) < tol and rel(db, tdb) < tol
    if residual:
        assert rel(dr, tdr) < tol
    else:
        assert dr is None


@needs_cython
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_equal_unfused_cython_ops(threads):
    """Same numbers as batch_norm_forward, + residual, relu_forward and their backwards."""
    old = fc.get_num_threads()
    fc.set_num_threads(threads)
    try:
        rng = np.random.default_rng(3)
        x = rng.standard_normal((5, 8, 9, 11)).astype(np.float32)
        r = rng.standard_normal(x.shape).astype(np.float32)
        g, b = rng.uniform(0.5, 1.5, 8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        y, m, s = K().batch_norm_act_forward(x, g, b, None, None, True, 0.1, 1e-5, r, True)
        z, m2, s2 = K().batch_norm_forward(x, g, b, None, None, True, 0.1, 1e-5)
        y2 = K().relu_forward(z + r)
        np.testing.assert_allclose(y, y2, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(m, m2)
        dx, dg, db, dr = K().batch_norm_act_backward(dy, x, y, g, m, s, True, True, True)
        gr = K().relu_backward(dy, y2)
        dx2, dg2, db2 = K().batch_norm_backward(gr, x, g, m, s, True)
        np.testing.assert_array_equal(dr, gr)
        np.testing.assert_allclose(dx, dx2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dg, dg2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(db, db2, rtol=1e-5, atol=1e-5)
    finally:
        fc.set_num_threads(old)


@needs_cython
def test_nan_propagates_and_relu_gradient_rule():
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    x[1, 0, 2, 2] = np.nan
    y, m, s = K().batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, None, True)
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1]).all()
    # where the output is NaN, ReLU passes the gradient (like torch's threshold_backward)
    dy = np.ones_like(x)
    dx, _, _, dr = K().batch_norm_act_backward(dy, x, y, None, m, s, True, True, True)
    assert np.isnan(dx[:, 0]).all()
    np.testing.assert_array_equal(dr[:, 1], (y[:, 1] > 0).astype(np.float32))
    np.testing.assert_array_equal(dr[:, 0], 1)


@needs_cython
def test_empty_batch_and_argument_errors():
    k = K()
    x = np.zeros((0, 3, 4, 4), np.float32)
    y, m, s = k.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, x.copy(), True)
    assert y.shape == x.shape and np.isnan(m).all()
    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="batch_norm_act_forward: 'residual' shape"):
        k.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, np.ones((2, 3, 4, 5), np.float32), True)
    with pytest.raises(TypeError, match="batch_norm_act_forward: mixed dtypes"):
        k.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, x.astype(np.float64), True)
    with pytest.raises(TypeError, match="batch_norm_act_forward: argument 'relu'"):
        k.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, None, 1)
    m, s = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(TypeError, match="batch_norm_act_backward: argument 'y' is required"):
        k.batch_norm_act_backward(x, x, None, None, m, s, True, True, False)
    with pytest.raises(ValueError, match="batch_norm_act_backward: 'y' shape"):
        k.batch_norm_act_backward(x, x, x[:1], None, m, s, True, True, False)


@pytest.mark.parametrize("backend", [None, "reference"])
@pytest.mark.parametrize("residual,relu", [(True, True), (False, True), (True, False)])
def test_functional_matches_torch(backend, residual, relu):
    """F.batch_norm_act through autograd (fused on Cython, composed on the reference)."""
    rng = np.random.default_rng(11)
    shape = (4, 3, 6, 5)
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32) if residual else None
    g, b = rng.uniform(0.5, 1.5, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    ty, tdx, tdg, tdb, tdr, trm, trv = torch_tail(x, g, b, rm.copy(), rv.copy(), True, r, relu, dy)
    fx, fg, fb = fc.Tensor(x, requires_grad=True), fc.Tensor(g, requires_grad=True), fc.Tensor(b, requires_grad=True)
    fr = None if r is None else fc.Tensor(r, requires_grad=True)
    y = F.batch_norm_act(fx, rm, rv, fg, fb, training=True, momentum=0.1, residual=fr, relu=relu, backend=backend)
    y.backward(dy)
    assert rel(y.numpy(), ty) < 1e-5
    for a, t in ((fx.grad, tdx), (fg.grad, tdg), (fb.grad, tdb)) + (((fr.grad, tdr),) if residual else ()):
        assert rel(a, t) < 1e-4
    np.testing.assert_allclose(rm, trm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, trv, rtol=1e-5, atol=1e-6)


def test_functional_residual_without_grad_and_bad_relu():
    x = fc.Tensor(np.random.default_rng(1).standard_normal((3, 2, 4, 4)), requires_grad=True)
    r = fc.Tensor(np.ones((3, 2, 4, 4)))  # a constant residual: no gradient asked for it
    y = F.batch_norm_act(x, None, None, training=True, residual=r)
    y.sum().backward()
    assert x.grad.shape == x.shape and r.grad is None
    with pytest.raises(TypeError, match="batch_norm_act: argument 'relu' must be a bool"):
        F.batch_norm_act(x, None, None, training=True, relu=1)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_gradcheck_float64(training, residual):
    rng = np.random.default_rng(5)
    shape = (3, 2, 3, 4)
    x = fc.Tensor(rng.standard_normal(shape) * 2 + 0.3, requires_grad=True)
    g = fc.Tensor(rng.uniform(0.5, 1.5, 2), requires_grad=True)
    b = fc.Tensor(rng.standard_normal(2), requires_grad=True)
    r = fc.Tensor(rng.standard_normal(shape), requires_grad=True) if residual else None
    rm, rv = rng.standard_normal(2), rng.uniform(0.5, 2, 2)

    def fn(x, g, b, *rest):
        return F.batch_norm_act(x, rm.copy(), rv.copy(), g, b, training=training, momentum=0.0,
                                residual=rest[0] if rest else None)

    assert gradcheck(fn, [x, g, b] + ([r] if residual else []), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_module_forward_act_matches_torch():
    rng = np.random.default_rng(2)
    tm = torch.nn.BatchNorm2d(3)
    fm = nn.BatchNorm2d(3)
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, 3).astype(np.float32)))
        tm.bias.copy_(torch.tensor(rng.standard_normal(3).astype(np.float32)))
    fm.load_state_dict({k: v.numpy().copy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    r = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    for _ in range(2):
        ty = torch.relu(tm(torch.tensor(x)) + torch.tensor(r)).detach().numpy()
        fy = fm.forward_act(fc.Tensor(x), fc.Tensor(r)).numpy()
        np.testing.assert_allclose(fy, ty, rtol=1e-5, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(fm, name).numpy(), getattr(tm, name).numpy(), rtol=1e-5, atol=1e-6)
    tm.eval()
    fm.eval()
    ty = torch.relu(tm(torch.tensor(x))).detach().numpy()
    np.testing.assert_allclose(fm.forward_act(fc.Tensor(x)).numpy(), ty, rtol=1e-5, atol=1e-5)


def test_sequential_fuses_plain_bn_relu_pairs_only(monkeypatch):
    calls = []
    real = F.batch_norm_act
    monkeypatch.setattr(F, "batch_norm_act", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)

    class MyReLU(nn.ReLU):  # a subclass may change forward: never fused
        pass

    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                             torch.nn.Conv2d(4, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    fm = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3),
                       MyReLU())
    fm.load_state_dict({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})
    fx, tx = fc.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    fy, ty = fm(fx), tm(tx)
    assert len(calls) == 1
    dy = rng.standard_normal(fy.shape).astype(np.float32)
    fy.backward(dy)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(fy.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for (k, v), (tk, tv) in zip(fm.state_dict().items(), tm.state_dict().items()):
        np.testing.assert_allclose(np.asarray(v), tv.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


@needs_cython
def test_kernel_checks_off_the_plain_path():
    """Inputs the fast argument path does not take: still handled (copied) or rejected like batch_norm."""
    k = K()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    r = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    y0, m0, s0 = k.batch_norm_act_forward(x, None, None, None, None, True, 0.1, 1e-5, r, True)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, not C-contiguous
    y1, m1, s1 = k.batch_norm_act_forward(xt, None, None, None, None, np.bool_(True), 0.1, 1e-5, r[..., ::1], True)
    np.testing.assert_array_equal(y0, y1)
    rm = np.zeros(3, np.float32)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="batch_norm_forward: argument 'running_mean' is updated in place"):
        k.batch_norm_act_forward(x, None, None, rm, np.ones(3, np.float32), True, 0.1, 1e-5, None, False)
    with pytest.raises(ValueError, match="momentum"):
        k.batch_norm_act_forward(x, None, None, None, None, True, 1.5, 1e-5, None, False)
    with pytest.raises(TypeError, match="mixed dtypes"):
        k.batch_norm_act_forward(x, np.ones(3), None, None, None, True, 0.1, 1e-5, None, False)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    d0 = k.batch_norm_act_backward(dy, x, y0, None, m0, s0, True, True, True)
    d1 = k.batch_norm_act_backward(np.asfortranarray(dy), xt, np.asfortranarray(y0), None, m0, s0, True, True, True)
    for a, b in zip(d0, d1):
        assert (a is None and b is None) or np.array_equal(a, b)
    with pytest.raises(ValueError, match="save_mean"):
        k.batch_norm_act_backward(dy, x, y0, None, m0[:2], s0, True, True, True)


@needs_cython
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 70, 5, 5), (2, 5, 8, 8), (2, 3, 48), (4, 6, 17, 3), (5, 33, 1, 1)])
def test_backward_channel_groups_and_lane_tails(threads, dtype, shape):
    """The backward walks groups of channels n-major in 64-byte lanes (two per step, then one,
    then a scalar tail): sizes around those steps, C above the group cap (32), C not a multiple
    of the group count, every fused variant, 1 and 2 threads, against PyTorch."""
    old = fc.get_num_threads()
    fc.set_num_threads(threads)
    try:
        rng = np.random.default_rng(sum(shape) + threads)
        C = shape[1]
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
        r = rng.standard_normal(shape).astype(dtype)
        g, b = rng.uniform(0.5, 1.5, C).astype(dtype), rng.standard_normal(C).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        for residual, relu in ((True, True), (False, True), (True, False), (False, False)):
            f8 = lambda a: a.astype(np.float64)  # noqa: E731  (float64 truth: N*S = 2 cancels in float32)
            ty, tdx, tdg, tdb, tdr, _, _ = torch_tail(f8(x), f8(g), f8(b), None, None, True, f8(r) if residual else None,
                                                      relu, f8(dy))
            y, m, s = K().batch_norm_act_forward(x, g, b, None, None, True, 0.1, 1e-5, r if residual else None, relu)
            dx, dg, db, dr = K().batch_norm_act_backward(dy, x, y, g, m, s, True, relu, residual)
            assert rel(dx, tdx) < tol and rel(dg, tdg) < tol and rel(db, tdb) < tol
            if residual:
                assert rel(dr, tdr) < tol
            dxe, dge, dbe, _ = K().batch_norm_act_backward(dy, x, y, g, m, s, False, relu, False)
            gm = dy * ((y > 0) | (not relu))
            np.testing.assert_allclose(dxe, gm * (g * s).reshape((1, C) + (1,) * (x.ndim - 2)),
                                       rtol=tol, atol=tol)
            np.testing.assert_allclose(dbe, gm.sum(axis=tuple(i for i in range(x.ndim) if i != 1)), rtol=tol, atol=tol)
    finally:
        fc.set_num_threads(old)
