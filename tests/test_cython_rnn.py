"""Cython LSTM / GRU cells against torch.nn.LSTMCell / GRUCell and the reference, forward and backward."""
import numpy as np
import pytest
import torch

import fastconv
from fastconv import dispatch
from fastconv.kernels.reference import rnn as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")

TOL = {np.float32: 2e-5, np.float64: 1e-12}
TDT = {np.float32: torch.float32, np.float64: torch.float64}


def K():
    return dispatch.load("cython")


def _np(t):
    return None if t is None else t.detach().numpy().copy()


def _close(a, b, dtype):
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


def _cell(kind, I, H, bias, dtype, seed=0):
    torch.manual_seed(seed)
    cls = torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell
    cell = cls(I, H, bias=bias).to(TDT[dtype])
    return cell, [_np(cell.weight_ih), _np(cell.weight_hh), _np(cell.bias_ih), _np(cell.bias_hh)]


CASES = [(3, 5, 4, True), (1, 2, 37, False), (0, 3, 2, True), (70, 6, 40, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,H,bias", CASES)
def test_lstm_matches_torch_and_reference(dtype, N, I, H, bias):
    rng = np.random.default_rng(N + H)
    cell, (w_ih, w_hh, b_ih, b_hh) = _cell("lstm", I, H, bias, dtype)
    x, h, c = (rng.standard_normal(s).astype(dtype) for s in ((N, I), (N, H), (N, H)))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    th2, tc2 = cell(tx, (th, tc))
    h2, c2, gates = K().lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    _close(h2, th2, dtype)
    _close(c2, tc2, dtype)
    rh, rc, rg = R.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    _close(gates, rg, dtype)
    dh, dc = rng.standard_normal((N, H)).astype(dtype), rng.standard_normal((N, H)).astype(dtype)
    torch.autograd.backward([th2, tc2], [torch.tensor(dh), torch.tensor(dc)])
    out = K().lstm_cell_backward(dh, dc, x, h, c, w_ih, w_hh, gates, c2, has_bias=bias)
    for a, t in zip(out[:5], (tx.grad, th.grad, tc.grad, cell.weight_ih.grad, cell.weight_hh.grad)):
        _close(a, t, dtype)
    if bias:
        _close(out[5], cell.bias_ih.grad, dtype)
        _close(out[6], cell.bias_hh.grad, dtype)
    else:
        assert out[5] is None and out[6] is None
    ref = R.lstm_cell_backward(dh, dc, x, h, c, w_ih, w_hh, rg, rc, has_bias=bias)
    for a, b in zip(out, ref):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == dtype and a.shape == b.shape
            _close(a, b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,H,bias", CASES)
def test_gru_matches_torch_and_reference(dtype, N, I, H, bias):
    rng = np.random.default_rng(N + H + 1)
    cell, (w_ih, w_hh, b_ih, b_hh) = _cell("gru", I, H, bias, dtype)
    x, h = (rng.standard_normal(s).astype(dtype) for s in ((N, I), (N, H)))
    tx, th = (torch.tensor(a, requires_grad=True) for a in (x, h))
    th2 = cell(tx, th)
    h2, saved = K().gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    _close(h2, th2, dtype)
    rh, rs = R.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    _close(saved, rs, dtype)
    dh = rng.standard_normal((N, H)).astype(dtype)
    th2.backward(torch.tensor(dh))
    out = K().gru_cell_backward(dh, x, h, w_ih, w_hh, saved, has_bias=bias)
    for a, t in zip(out[:4], (tx.grad, th.grad, cell.weight_ih.grad, cell.weight_hh.grad)):
        _close(a, t, dtype)
    if bias:
        _close(out[4], cell.bias_ih.grad, dtype)
        _close(out[5], cell.bias_hh.grad, dtype)
    else:
        assert out[4] is None and out[5] is None
    ref = R.gru_cell_backward(dh, x, h, w_ih, w_hh, rs, has_bias=bias)
    for a, b in zip(out, ref):
        assert (a is None) == (b is None)
        if a is not None:
            _close(a, b, dtype)


def test_one_bias_only_and_threads():
    rng = np.random.default_rng(5)
    N, I, H = 40, 3, 300
    x, h, c = (rng.standard_normal(s) for s in ((N, I), (N, H), (N, H)))
    w4 = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H)) * 0.1
    w3 = rng.standard_normal((3 * H, I)), rng.standard_normal((3 * H, H)) * 0.1
    b4, b3 = rng.standard_normal(4 * H), rng.standard_normal(3 * H)
    old = fastconv.get_num_threads()
    try:
        for nt in (1, 2):
            fastconv.set_num_threads(nt)
            for bi, bh in ((b4, None), (None, b4)):
                for a, b in zip(K().lstm_cell_forward(x, h, c, *w4, bi, bh), R.lstm_cell_forward(x, h, c, *w4, bi, bh)):
                    _close(a, b, np.float64)
            for bi, bh in ((b3, None), (None, b3)):
                for a, b in zip(K().gru_cell_forward(x, h, *w3, bi, bh), R.gru_cell_forward(x, h, *w3, bi, bh)):
                    _close(a, b, np.float64)
    finally:
        fastconv.set_num_threads(old)


def test_nan_and_extremes():
    N, I, H = 2, 3, 5
    x = np.zeros((N, I), np.float32)
    x[0, 0] = np.nan
    h = np.zeros((N, H), np.float32)
    w_ih = np.full((4 * H, I), 100.0, np.float32)  # saturates the gates: no overflow, no NaN
    w_hh = np.zeros((4 * H, H), np.float32)
    x[1] = 50.0
    h2, c2, g = K().lstm_cell_forward(x, h, h, w_ih, w_hh, None, None)
    assert np.isnan(h2[0]).all() and np.isnan(g[0]).all()
    assert np.isfinite(h2[1]).all() and np.isfinite(g[1]).all()
    h3, s = K().gru_cell_forward(x, h, w_ih[: 3 * H], -w_hh[: 3 * H, :], None, None)
    assert np.isnan(h3[0]).all() and np.isfinite(h3[1]).all()


def _lstm_args(dtype=np.float64):
    return [np.ones((2, 3), dtype), np.ones((2, 4), dtype), np.ones((2, 4), dtype),
            np.ones((16, 3), dtype), np.ones((16, 4), dtype), None, None]


@pytest.mark.parametrize("k,val,exc", [
    (0, [[1.0]], TypeError), (0, np.ones((2, 3), np.float32), TypeError), (0, np.ones(3), ValueError),
    (3, np.ones((12, 3)), ValueError), (4, np.ones((16, 5)), ValueError), (5, np.ones(15), ValueError),
    (1, np.ones((3, 4)), ValueError), (2, np.ones((2, 5)), ValueError), (0, np.ones((2, 3), np.int64), TypeError),
])
def test_lstm_bad_inputs(k, val, exc):
    args = _lstm_args()
    args[k] = val
    with pytest.raises(exc, match="lstm_cell_forward"):
        K().lstm_cell_forward(*args)


def test_backward_bad_inputs():
    x, h, c, w_ih, w_hh, _, _ = _lstm_args()
    h2, c2, g = K().lstm_cell_forward(x, h, c, w_ih, w_hh, None, None)
    with pytest.raises(ValueError, match="gates"):
        K().lstm_cell_backward(h, h, x, h, c, w_ih, w_hh, g[:, :8], c2)
    with pytest.raises(TypeError, match="lstm_cell_backward"):
        K().lstm_cell_backward(h.astype(np.float32), h, x, h, c, w_ih, w_hh, g, c2)
    w3 = np.ones((12, 3)), np.ones((12, 4))
    h3, s = K().gru_cell_forward(x, h, *w3, None, None)
    with pytest.raises(ValueError, match="saved"):
        K().gru_cell_backward(h, x, h, *w3, s[:, :12])
    with pytest.raises(ValueError, match="gru_cell_backward"):
        K().gru_cell_backward(h[:1], x, h, *w3, s)
    with pytest.raises(TypeError, match="gru_cell_forward"):
        K().gru_cell_forward(x, "h", *w3, None, None)
