"""Reference conv2d kernels and the conv2d/conv1d autograd ops against torch.nn.functional.

Every configuration is checked forward and backward (input, weight, bias)
against float64 PyTorch: float64 to round-off, float32 within a relative
error of 1e-5.  Then bad input (one test per class), empty batch,
non-contiguous input, NaN propagation and finite-difference gradchecks.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastconv import functional as FF
from fastconv.kernels.reference import conv as R
from fastconv.tensor import Tensor
from fastconv.testing import gradcheck, rel_error

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
HAND = [
    (2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1),            # plain 3x3 'same'-like
    (1, 1, 5, 5, 1, 1, 1, 1, 0, 1, 1),            # N = C = K = 1, 1x1
    (2, 6, 8, 5, 6, 3, 3, 1, 1, 1, 6),            # depthwise
    (2, 4, 9, 7, 8, 3, 3, 2, 1, 1, 4),            # depthwise multiplier 2, strided
    (1, 4, 10, 11, 6, 3, 2, (2, 3), (1, 2), (2, 1), 2),  # everything asymmetric, groups 2
    (3, 3, 8, 8, 32, 5, 5, 1, 2, 1, 1),           # K large-ish, 5x5
    (2, 2, 8, 9, 3, 2, 2, 3, 0, 1, 1),            # stride > kernel: rows/cols never touched
    (1, 2, 11, 6, 4, 3, 3, 1, 0, (3, 2), 1),      # heavy dilation
    (2, 3, 4, 4, 5, 4, 4, 1, 0, 1, 1),            # kernel == input
    (1, 5, 3, 13, 5, 1, 3, (1, 2), (0, 1), 1, 5), # 1-row kernel, depthwise
]


def _random_configs(n, seed=1234):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        g = int(rng.choice([1, 1, 2, 3]))
        C = g * int(rng.integers(1, 4))
        K = g * int(rng.integers(1, 4))
        Rk, S = (int(v) for v in rng.integers(1, 5, 2))
        st = tuple(int(v) for v in rng.integers(1, 4, 2))
        pd = tuple(int(v) for v in rng.integers(0, 3, 2))
        dl = tuple(int(v) for v in rng.integers(1, 3, 2))
        H, W = (int(v) for v in rng.integers(1, 12, 2))
        if H + 2 * pd[0] < dl[0] * (Rk - 1) + 1 or W + 2 * pd[1] < dl[1] * (S - 1) + 1:
            continue
        out.append((int(rng.integers(1, 4)), C, H, W, K, Rk, S, st, pd, dl, g))
    return out


CONFIGS = HAND + _random_configs(14)


def _torch_ref(x, w, b, dy, geom):
    tx, tw, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    ty = F.conv2d(tx, tw, tb, *geom)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    return ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"c{i}" for i in range(len(CONFIGS))])
def test_conv2d_matches_torch(cfg, dtype):
    N, C, H, W, K, Rk, S, st, pd, dl, g = cfg
    rng = np.random.default_rng(abs(hash(cfg)) % 2**32)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // g, Rk, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    geom = (st, pd, dl, g)
    y = R.conv2d_forward(x, w, b, *geom)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ry, rdx, rdw, rdb = _torch_ref(x, w, b, dy, geom)
    dx = R.conv2d_backward_input(dy, w, x.shape, *geom)
    dw = R.conv2d_backward_weight(dy, x, w.shape, *geom)
    db = R.conv2d_backward_bias(dy)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for name, out, ref in (("y", y, ry), ("dx", dx, rdx), ("dw", dw, rdw), ("db", db, rdb)):
        assert out.shape == ref.shape, name
        assert out.dtype == dtype, name
        assert out.flags.c_contiguous, name
        assert rel_error(out, ref) <= tol, (name, rel_error(out, ref))


def test_untouched_input_rows_get_zero_grad():
    # H = W = 9, 2x2 kernel, stride 3: windows cover 0-1, 3-4, 6-7; rows/cols 2, 5 and 8 are never read
    x = np.random.default_rng(0).standard_normal((1, 1, 9, 9))
    w = np.ones((1, 1, 2, 2))
    dy = np.ones((1, 1, 3, 3))
    dx = R.conv2d_backward_input(dy, w, x.shape, 3, 0, 1, 1)
    for i in (2, 5, 8):
        assert not dx[0, 0, i].any() and not dx[0, 0, :, i].any()
    assert dx[0, 0, 0, 0] == 1.0 and dx[0, 0, 7, 7] == 1.0
    tx = torch.tensor(x, requires_grad=True)
    F.conv2d(tx, torch.tensor(w), stride=3).backward(torch.tensor(dy))
    np.testing.assert_array_equal(dx, tx.grad.numpy())


def test_no_bias_and_tuple_args():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    y = R.conv2d_forward(x, w, None, [1, 2], (1, 0), 1, 1)
    ref = F.conv2d(torch.tensor(x), torch.tensor(w), None, (1, 2), (1, 0)).numpy()
    assert rel_error(y, ref) < 1e-12


def test_empty_batch():
    w = np.ones((4, 3, 3, 3), np.float32)
    x = np.zeros((0, 3, 5, 5), np.float32)
    y = R.conv2d_forward(x, w, np.zeros(4, np.float32), 1, 1, 1, 1)
    assert y.shape == (0, 4, 5, 5) and y.dtype == np.float32
    dy = np.zeros((0, 4, 5, 5), np.float32)
    assert R.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1).shape == x.shape
    dw = R.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1)
    assert dw.shape == w.shape and not dw.any()
    db = R.conv2d_backward_bias(dy)
    assert db.shape == (4,) and not db.any()


def test_non_contiguous_input_is_copied():
    rng = np.random.default_rng(2)
    big = rng.standard_normal((2, 6, 9, 16))
    x = big[:, ::2, :, ::2]  # (2, 3, 9, 8), non-contiguous
    w = rng.standard_normal((3, 5, 3, 4)).transpose(1, 0, 2, 3)  # (5, 3, 3, 4), non-contiguous
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    y = R.conv2d_forward(x, w, None, 1, 1, 1, 1)
    ref = F.conv2d(torch.tensor(np.ascontiguousarray(x)), torch.tensor(np.ascontiguousarray(w)), None, 1, 1).numpy()
    assert rel_error(y, ref) < 1e-12
    dy = np.asfortranarray(rng.standard_normal(y.shape))
    assert not dy.flags.c_contiguous
    dx = R.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1)
    tx = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    F.conv2d(tx, torch.tensor(np.ascontiguousarray(w)), None, 1, 1).backward(torch.tensor(np.ascontiguousarray(dy)))
    assert rel_error(dx, tx.grad.numpy()) < 1e-12


def test_nan_propagates():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = np.nan
    w = np.ones((1, 1, 3, 3))
    y = R.conv2d_forward(x, w, None, 1, 0, 1, 1)
    ref = F.conv2d(torch.tensor(x), torch.tensor(w)).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y).all()  # every 3x3 window of a 5x5 input covers the centre
    y = R.conv2d_forward(x, w, None, 1, 0, 1, 1)
    dy = np.ones_like(y)
    dy[0, 0, 0, 0] = np.nan
    dx = R.conv2d_backward_input(dy, w, x.shape, 1, 0, 1, 1)
    assert np.isnan(dx[0, 0, :3, :3]).all() and not np.isnan(dx[0, 0, 3:, :]).any()
    assert np.isnan(R.conv2d_backward_weight(dy, np.ones_like(x), w.shape, 1, 0, 1, 1)).all()
    assert np.isnan(R.conv2d_backward_bias(dy)).all()


# ---------------------------------------------------------------- bad input

def _xw(x_shape=(2, 4, 6, 6), w_shape=(4, 4, 3, 3), dtype=np.float32):
    return np.zeros(x_shape, dtype), np.zeros(w_shape, dtype)


def test_bad_rank():
    x, w = _xw()
    with pytest.raises(ValueError, match="conv2d_forward.*'x'.*4-D"):
        R.conv2d_forward(x[0], w, None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_forward.*'w'.*4-D"):
        R.conv2d_forward(x, w[0], None, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_forward.*'b'"):
        R.conv2d_forward(x, w, np.zeros((4, 1), np.float32), 1, 0, 1, 1)


def test_mismatched_channels():
    x, w = _xw(w_shape=(4, 3, 3, 3))
    with pytest.raises(ValueError, match="conv2d_forward.*channel mismatch"):
        R.conv2d_forward(x, w, None, 1, 0, 1, 1)


def test_bias_shape():
    x, w = _xw()
    with pytest.raises(ValueError, match="conv2d_forward.*'b'.*\\(4,\\)"):
        R.conv2d_forward(x, w, np.zeros(5, np.float32), 1, 0, 1, 1)


def test_groups_not_dividing():
    x, w = _xw(x_shape=(2, 4, 6, 6), w_shape=(4, 2, 3, 3))
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        R.conv2d_forward(x, w, None, 1, 0, 1, 3)
    x, w = _xw(x_shape=(2, 4, 6, 6), w_shape=(3, 2, 3, 3))
    with pytest.raises(ValueError, match="output channels K=3.*groups=2"):
        R.conv2d_forward(x, w, None, 1, 0, 1, 2)
    with pytest.raises(ValueError, match="'groups' must be >= 1"):
        R.conv2d_forward(*_xw(), None, 1, 0, 1, 0)


@pytest.mark.parametrize("arg", ["stride", "dilation"])
@pytest.mark.parametrize("bad", [0, -1, (1, 0)])
def test_non_positive_stride_dilation(arg, bad):
    kw = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, arg: bad}
    with pytest.raises(ValueError, match=f"conv2d_forward.*'{arg}' must be >= 1"):
        R.conv2d_forward(*_xw(), None, **kw)


def test_negative_padding_and_bad_types():
    with pytest.raises(ValueError, match="conv2d_forward.*'padding' must be >= 0"):
        R.conv2d_forward(*_xw(), None, 1, (0, -1), 1, 1)
    with pytest.raises(TypeError, match="conv2d_forward.*'stride' must be an int"):
        R.conv2d_forward(*_xw(), None, 1.5, 0, 1, 1)
    with pytest.raises(ValueError, match="'padding' must have 2 values"):
        R.conv2d_forward(*_xw(), None, 1, (1, 1, 1), 1, 1)


def test_kernel_larger_than_padded_input():
    x, w = _xw(x_shape=(1, 1, 4, 4), w_shape=(1, 1, 7, 3))
    with pytest.raises(ValueError, match="conv2d_forward.*larger than the padded input"):
        R.conv2d_forward(x, w, None, 1, 1, 1, 1)
    x, w = _xw(x_shape=(1, 1, 4, 4), w_shape=(1, 1, 3, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        R.conv2d_forward(x, w, None, 1, 0, 2, 1)  # dilated 5x5 window
    R.conv2d_forward(x, w, None, 1, 1, 2, 1)  # fits once padded


def test_wrong_and_mixed_dtype():
    x, w = _xw()
    with pytest.raises(TypeError, match="conv2d_forward.*'x'.*int64"):
        R.conv2d_forward(x.astype(np.int64), w, None, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="conv2d_forward.*mixed dtypes"):
        R.conv2d_forward(x, w.astype(np.float64), None, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="conv2d_forward.*mixed dtypes"):
        R.conv2d_forward(x, w, np.zeros(4), 1, 0, 1, 1)
    with pytest.raises(TypeError, match="'x' must be a NumPy or CuPy array"):
        R.conv2d_forward(x.tolist(), w, None, 1, 0, 1, 1)
    with pytest.raises(TypeError, match="conv2d_backward_weight.*mixed dtypes"):
        R.conv2d_backward_weight(np.zeros((2, 4, 4, 4)), x, w.shape, 1, 0, 1, 1)


def test_backward_shape_checks():
    x, w = _xw()
    dy = np.zeros((2, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="conv2d_backward_input.*'dy'.*\\(2, 4, 4, 4\\)"):
        R.conv2d_backward_input(dy[:, :, :3], w, x.shape, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward_input.*'x_shape'"):
        R.conv2d_backward_input(dy, w, (2, 4, 6), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward_weight.*'dy'"):
        R.conv2d_backward_weight(dy, x, (4, 4, 2, 2), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward_bias.*'dy'.*4-D"):
        R.conv2d_backward_bias(dy[0])


# ------------------------------------------------------- autograd functional

def _fc_vs_torch(fc_fn, t_fn, arrays, requires, rng):
    ins = [Tensor(a.copy(), requires_grad=r) if a is not None else None for a, r in zip(arrays, requires)]
    y = fc_fn(*ins)
    dy = rng.standard_normal(y.shape)
    y.backward(dy.astype(y.dtype))
    tins = [torch.tensor(a, requires_grad=r) if a is not None else None for a, r in zip(arrays, requires)]
    ty = t_fn(*tins)
    ty.backward(torch.tensor(dy, dtype=ty.dtype))
    assert y.shape == tuple(ty.shape)
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    for t, tt, r in zip(ins, tins, requires):
        if r:
            assert rel_error(t.grad, tt.grad.numpy()) < 1e-12
        elif t is not None:
            assert t.grad is None


@pytest.mark.parametrize("padding", ["same", "valid", 1, (0, 2)])
def test_functional_conv2d(padding):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 4, 7, 8)), rng.standard_normal((6, 2, 2, 4)), rng.standard_normal(6)
    kw = dict(padding=padding, dilation=(1, 1) if padding != "same" else (3, 1), groups=2)
    _fc_vs_torch(lambda *a: FF.conv2d(*a, backend="reference", **kw), lambda *a: F.conv2d(*a, **kw),
                 (x, w, b), (True, True, True), rng)


def test_functional_conv2d_partial_grads_and_unbatched():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((3, 5, 6)), rng.standard_normal((2, 3, 3, 3))
    _fc_vs_torch(lambda *a: FF.conv2d(*a, stride=2, padding=1, backend="reference"),
                 lambda *a: F.conv2d(*a, stride=2, padding=1), (x, w, None), (False, True, False), rng)
    with pytest.raises(ValueError, match="'same' is only supported with stride 1"):
        FF.conv2d(Tensor(x), Tensor(w), padding="same", stride=2, backend="reference")
    with pytest.raises(ValueError, match="'padding' must be"):
        FF.conv2d(Tensor(x), Tensor(w), padding="full", backend="reference")


@pytest.mark.parametrize("padding", [0, 2, "same"])
def test_functional_conv1d(padding):
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 6, 11)), rng.standard_normal((4, 3, 4)), rng.standard_normal(4)
    kw = dict(padding=padding, groups=2, dilation=1 if padding == "same" else 2, stride=1 if padding == "same" else 2)
    _fc_vs_torch(lambda *a: FF.conv1d(*a, backend="reference", **kw), lambda *a: F.conv1d(*a, **kw),
                 (x, w, b), (True, True, True), rng)
    _fc_vs_torch(lambda *a: FF.conv1d(*a, backend="reference", **kw), lambda *a: F.conv1d(*a, **kw),
                 (x[0], w, None), (True, False, False), rng)
    with pytest.raises(ValueError, match="conv1d.*'weight' must be 3-D"):
        FF.conv1d(Tensor(x), Tensor(w[..., None]), backend="reference")


def test_functional_conv_float32():
    rng = np.random.default_rng(6)
    x = Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = FF.conv2d(x, w, padding=1, backend="reference")
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(dilation=2, padding=(2, 1), groups=2),
                                dict(padding="same", dilation=(1, 2))])
def test_gradcheck_conv2d(kw):
    rng = np.random.default_rng(7)
    x = Tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
    w = Tensor(rng.standard_normal((2, 2 // kw.get("groups", 1), 2, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal(2), requires_grad=True)
    assert gradcheck(lambda x, w, b: FF.conv2d(x, w, b, backend="reference", **kw), [x, w, b])


def test_gradcheck_conv1d():
    rng = np.random.default_rng(8)
    x = Tensor(rng.standard_normal((2, 3, 7)), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 1, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal(3), requires_grad=True)
    assert gradcheck(lambda x, w, b: FF.conv1d(x, w, b, stride=2, padding=1, groups=3, backend="reference"), [x, w, b])
