"""LSTM / GRU cells: reference kernels and autograd Functions against torch.nn.LSTMCell / GRUCell."""
import numpy as np
import pytest
import torch

import fastconv as fc
import fastconv.functional as F
from fastconv.kernels.reference import rnn as R
from fastconv.testing import gradcheck

TOL = {np.float32: 2e-5, np.float64: 1e-12}
TDT = {np.float32: torch.float32, np.float64: torch.float64}


def _torch_cell(kind, I, H, bias, dtype, seed=0):
    torch.manual_seed(seed)
    cls = torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell
    return cls(I, H, bias=bias).to(TDT[dtype])


def _np(t):
    return None if t is None else t.detach().numpy().copy()


def _weights(cell):
    return [_np(cell.weight_ih), _np(cell.weight_hh), _np(cell.bias_ih), _np(cell.bias_hh)]


def _close(a, b, dtype):
    np.testing.assert_allclose(a, b.numpy() if isinstance(b, torch.Tensor) else b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,H,bias", [(3, 5, 4, True), (1, 2, 7, False), (0, 3, 2, True)])
def test_lstm_kernels_match_torch(dtype, N, I, H, bias, rng):
    cell = _torch_cell("lstm", I, H, bias, dtype)
    x, h, c = (rng.standard_normal(s).astype(dtype) for s in ((N, I), (N, H), (N, H)))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    th2, tc2 = cell(tx, (th, tc))
    dh, dc = rng.standard_normal((N, H)).astype(dtype), rng.standard_normal((N, H)).astype(dtype)
    torch.autograd.backward([th2, tc2], [torch.tensor(dh), torch.tensor(dc)])
    w_ih, w_hh, b_ih, b_hh = _weights(cell)
    h2, c2, gates = R.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    assert gates.shape == (N, 4 * H) and h2.dtype == dtype
    _close(h2, th2.detach(), dtype)
    _close(c2, tc2.detach(), dtype)
    grads = R.lstm_cell_backward(dh, dc, x, h, c, w_ih, w_hh, gates, c2, has_bias=bias)
    refs = [tx.grad, th.grad, tc.grad, cell.weight_ih.grad, cell.weight_hh.grad, cell.bias_ih, cell.bias_hh]
    for g, r in zip(grads[:5], refs[:5]):
        _close(g, r if r is not None else np.zeros_like(g), dtype)
    if bias:
        _close(grads[5], cell.bias_ih.grad, dtype)
        _close(grads[6], cell.bias_hh.grad, dtype)
    else:
        assert grads[5] is None and grads[6] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,H,bias", [(3, 5, 4, True), (2, 1, 6, False), (0, 3, 2, True)])
def test_gru_kernels_match_torch(dtype, N, I, H, bias, rng):
    cell = _torch_cell("gru", I, H, bias, dtype)
    x, h = rng.standard_normal((N, I)).astype(dtype), rng.standard_normal((N, H)).astype(dtype)
    tx, th = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    th2 = cell(tx, th)
    dh = rng.standard_normal((N, H)).astype(dtype)
    th2.backward(torch.tensor(dh))
    w_ih, w_hh, b_ih, b_hh = _weights(cell)
    h2, saved = R.gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    assert saved.shape == (N, 4 * H)
    _close(h2, th2.detach(), dtype)
    grads = R.gru_cell_backward(dh, x, h, w_ih, w_hh, saved, has_bias=bias)
    refs = [tx.grad, th.grad, cell.weight_ih.grad, cell.weight_hh.grad]
    for g, r in zip(grads[:4], refs):
        _close(g, r if r is not None else np.zeros_like(g), dtype)
    if bias:
        _close(grads[4], cell.bias_ih.grad, dtype)
        _close(grads[5], cell.bias_hh.grad, dtype)
    else:
        assert grads[4] is None and grads[5] is None


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_functional_cells_match_torch(kind, bias, rng):
    """Two unrolled steps through autograd, sharing weights, as in a recurrent layer."""
    N, I, H = 2, 3, 4
    cell = _torch_cell(kind, I, H, bias, np.float32)
    xs = [rng.standard_normal((N, I)).astype(np.float32) for _ in range(2)]
    h0, c0 = rng.standard_normal((N, H)).astype(np.float32), rng.standard_normal((N, H)).astype(np.float32)
    ws = [None if a is None else fc.Tensor(a, requires_grad=True) for a in _weights(cell)]
    fx = [fc.Tensor(x, requires_grad=True) for x in xs]
    fh, fcs = fc.Tensor(h0, requires_grad=True), fc.Tensor(c0, requires_grad=True)
    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    th, tcs = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    h, c, t_h, t_c = fh, fcs, th, tcs
    for x, t_x in zip(fx, tx):
        if kind == "lstm":
            h, c = F.lstm_cell(x, h, c, *ws)
            t_h, t_c = cell(t_x, (t_h, t_c))
        else:
            h = F.gru_cell(x, h, *ws)
            t_h = cell(t_x, t_h)
    loss = (h * h).sum() + (c.sum() if kind == "lstm" else 0.0)
    tloss = (t_h * t_h).sum() + (t_c.sum() if kind == "lstm" else 0.0)
    loss.backward()
    tloss.backward()
    _close(h.data, t_h.detach(), np.float32)
    pairs = list(zip(fx, tx)) + [(fh, th)] + ([(fcs, tcs)] if kind == "lstm" else [])
    tw = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    pairs += [(w, t) for w, t in zip(ws, tw) if w is not None]
    for a, b in pairs:
        _close(a.grad, b.grad, np.float32)


def test_gradcheck_cells(rng):
    T = lambda *s: fc.Tensor(rng.standard_normal(s), requires_grad=True)  # noqa: E731
    N, I, H = 2, 3, 2
    assert gradcheck(F.lstm_cell, [T(N, I), T(N, H), T(N, H), T(4 * H, I), T(4 * H, H), T(4 * H), T(4 * H)])
    assert gradcheck(F.lstm_cell, [T(N, I), T(N, H), T(N, H), T(4 * H, I), T(4 * H, H)])
    assert gradcheck(F.gru_cell, [T(N, I), T(N, H), T(3 * H, I), T(3 * H, H), T(3 * H), T(3 * H)])
    # only one of the two biases
    assert gradcheck(lambda x, h, a, b, bh: F.gru_cell(x, h, a, b, None, bh),
                     [T(N, I), T(N, H), T(3 * H, I), T(3 * H, H), T(3 * H)])


def test_unbatched_input(rng):
    cell = _torch_cell("gru", 3, 2, True, np.float64)
    x, h = rng.standard_normal(3), rng.standard_normal(2)
    out = F.gru_cell(fc.Tensor(x), fc.Tensor(h), *[fc.Tensor(a) for a in _weights(cell)])
    assert out.shape == (2,)
    _close(out.data, cell(torch.tensor(x), torch.tensor(h)).detach(), np.float64)
    lcell = _torch_cell("lstm", 3, 2, False, np.float64)
    hh, cc = F.lstm_cell(fc.Tensor(x), fc.Tensor(h), fc.Tensor(h), *[fc.Tensor(a) for a in _weights(lcell)[:2]])
    th, tc = lcell(torch.tensor(x), (torch.tensor(h), torch.tensor(h)))
    _close(hh.data, th.detach(), np.float64)
    _close(cc.data, tc.detach(), np.float64)


def test_nan_propagates(rng):
    N, I, H = 2, 3, 2
    x = rng.standard_normal((N, I))
    x[0, 0] = np.nan
    h = np.zeros((N, H))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    h2, c2, _ = R.lstm_cell_forward(x, h, h, w_ih, w_hh, None, None)
    assert np.isnan(h2[0]).all() and np.isfinite(h2[1]).all()
    h2, _ = R.gru_cell_forward(x, h, w_ih[:3 * H], w_hh[:3 * H], None, None)
    assert np.isnan(h2[0]).all() and np.isfinite(h2[1]).all()


def test_bad_inputs():
    x, h = np.ones((2, 3)), np.ones((2, 4))
    w_ih, w_hh = np.ones((16, 3)), np.ones((16, 4))
    with pytest.raises(ValueError, match="lstm_cell_forward.*'w_hh' shape"):
        R.lstm_cell_forward(x, h, h, w_ih, np.ones((16, 5)), None, None)
    with pytest.raises(ValueError, match="'w_ih' shape"):
        R.lstm_cell_forward(x, h, h, np.ones((12, 3)), w_hh, None, None)
    with pytest.raises(ValueError, match="'c' shape"):
        R.lstm_cell_forward(x, h, np.ones((2, 5)), w_ih, w_hh, None, None)
    with pytest.raises(ValueError, match="batch size of 'h'"):
        R.lstm_cell_forward(x, np.ones((3, 4)), np.ones((3, 4)), w_ih, w_hh, None, None)
    with pytest.raises(ValueError, match="'b_ih' shape"):
        R.lstm_cell_forward(x, h, h, w_ih, w_hh, np.ones(12), None)
    with pytest.raises(ValueError, match="'x' must be 2-D"):
        R.gru_cell_forward(np.ones(3), h, np.ones((12, 3)), np.ones((12, 4)), None, None)
    with pytest.raises(TypeError, match="mixed dtypes"):
        R.gru_cell_forward(x.astype(np.float32), h, np.ones((12, 3)), np.ones((12, 4)), None, None)
    with pytest.raises(TypeError, match="'x' has dtype int64"):
        R.gru_cell_forward(np.ones((2, 3), np.int64), h, np.ones((12, 3)), np.ones((12, 4)), None, None)
    with pytest.raises(ValueError, match="'gates' shape"):
        R.lstm_cell_backward(h, h, x, h, h, w_ih, w_hh, np.ones((2, 8)), h)
    with pytest.raises(ValueError, match="'saved' shape"):
        R.gru_cell_backward(h, x, h, np.ones((12, 3)), np.ones((12, 4)), np.ones((2, 12)))
    with pytest.raises(ValueError, match="gru_cell: input must be 1-D or 2-D"):
        F.gru_cell(fc.Tensor(np.ones((1, 2, 3))), fc.Tensor(h), fc.Tensor(np.ones((12, 3))), fc.Tensor(np.ones((12, 4))))
    with pytest.raises(TypeError, match="lstm_cell: argument 'x'"):
        F.lstm_cell([1.0], fc.Tensor(h), fc.Tensor(h), fc.Tensor(w_ih), fc.Tensor(w_hh))


def test_non_contiguous_inputs_are_copied(rng):
    x = rng.standard_normal((3, 2)).T  # (2, 3), F-ordered
    h = np.zeros((2, 4))
    w_ih, w_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    a, _ = R.gru_cell_forward(x, h, w_ih, w_hh, None, None)
    b, _ = R.gru_cell_forward(np.ascontiguousarray(x), h, w_ih, w_hh, None, None)
    np.testing.assert_array_equal(a, b)
