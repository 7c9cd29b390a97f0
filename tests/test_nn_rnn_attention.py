"""fastconv.nn recurrent and attention layers against torch.nn with copied weights."""
import numpy as np
import pytest
import torch

from fastconv import nn
from fastconv.testing import rel_error

from test_nn import T, check_layer, copy_from_torch


def _compare_rnn(fm, tm, x, hx_f=None, hx_t=None, tol=1e-5):
    copy_from_torch(fm, tm)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    xf = T(x, True)
    out_t, st_t = tm(xt, hx_t) if hx_t is not None else tm(xt)
    out_f, st_f = fm(xf, hx_f) if hx_f is not None else fm(xf)
    assert out_f.shape == tuple(out_t.shape)
    assert rel_error(out_f, out_t.detach().numpy()) < tol
    st_t = st_t if isinstance(st_t, tuple) else (st_t,)
    st_f = st_f if isinstance(st_f, tuple) else (st_f,)
    for a, b in zip(st_f, st_t):
        assert a.shape == tuple(b.shape) and rel_error(a, b.detach().numpy()) < tol
    rng = np.random.default_rng(7)
    dys = [rng.standard_normal(t.shape).astype(np.float32) for t in (out_t,) + st_t]
    loss_t = sum((t * torch.from_numpy(d)).sum() for t, d in zip((out_t,) + st_t, dys))
    loss_f = None
    for t, d in zip((out_f,) + st_f, dys):
        term = (t * T(d)).sum()
        loss_f = term if loss_f is None else loss_f + term
    loss_t.backward()
    loss_f.backward()
    assert rel_error(xf.grad, xt.grad.numpy()) < tol
    tp = dict(tm.named_parameters())
    for name, p in fm.named_parameters():
        assert rel_error(p.grad, tp[name].grad.numpy()) < tol, name


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_multilayer(batch_first, rng):
    kw = dict(num_layers=2, batch_first=batch_first)
    fm, tm = nn.LSTM(3, 5, **kw), torch.nn.LSTM(3, 5, **kw)
    assert list(fm.state_dict()) == list(tm.state_dict())
    x = rng.standard_normal((2, 4, 3) if batch_first else (4, 2, 3)).astype(np.float32)
    _compare_rnn(fm, tm, x)


def test_lstm_bidirectional_with_initial_state(rng):
    kw = dict(num_layers=2, batch_first=True, bidirectional=True)
    fm, tm = nn.LSTM(3, 4, **kw), torch.nn.LSTM(3, 4, **kw)
    assert [(k, tuple(v.shape)) for k, v in fm.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    x = rng.standard_normal((2, 3, 3)).astype(np.float32)
    h0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    c0 = rng.standard_normal((4, 2, 4)).astype(np.float32)
    _compare_rnn(fm, tm, x, (T(h0), T(c0)), (torch.from_numpy(h0), torch.from_numpy(c0)))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru(bidirectional, rng):
    kw = dict(num_layers=2, batch_first=True, bidirectional=bidirectional)
    fm, tm = nn.GRU(3, 5, **kw), torch.nn.GRU(3, 5, **kw)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    h0 = rng.standard_normal((2 * (2 if bidirectional else 1), 2, 5)).astype(np.float32)
    _compare_rnn(fm, tm, x, T(h0), torch.from_numpy(h0))


def test_rnn_unbatched_no_bias_and_errors(rng):
    fm, tm = nn.GRU(3, 4, bias=False), torch.nn.GRU(3, 4, bias=False)
    _compare_rnn(fm, tm, rng.standard_normal((5, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="expected input"):
        fm(T(rng.standard_normal((5, 2, 7)).astype(np.float32)))
    with pytest.raises(ValueError, match="h0 of shape"):
        fm(T(rng.standard_normal((5, 2, 3)).astype(np.float32)), T(np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)


def test_rnn_cells(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    for fcls, tcls in ((nn.LSTMCell, torch.nn.LSTMCell), (nn.GRUCell, torch.nn.GRUCell)):
        fm, tm = fcls(4, 5), tcls(4, 5)
        copy_from_torch(fm, tm)
        out_f, out_t = fm(T(x)), tm(torch.from_numpy(x))
        out_f = out_f[0] if isinstance(out_f, tuple) else out_f
        out_t = out_t[0] if isinstance(out_t, tuple) else out_t
        assert rel_error(out_f, out_t.detach().numpy()) < 1e-5


def _compare_mha(fm, tm, q, k, v, tol=1e-5, **kw):
    copy_from_torch(fm, tm)
    qs = [T(a, True) for a in (q, k, v)]
    ts = [torch.from_numpy(a.copy()).requires_grad_(True) for a in (q, k, v)]
    of, wf = fm(*qs, **{k_: (T(v_) if isinstance(v_, np.ndarray) else v_) for k_, v_ in kw.items()})
    ot, wt = tm(*ts, **{k_: (torch.from_numpy(v_) if isinstance(v_, np.ndarray) else v_) for k_, v_ in kw.items()})
    assert rel_error(of, ot.detach().numpy()) < tol
    if wt is None:
        assert wf is None
    else:
        assert rel_error(wf, wt.detach().numpy()) < tol
    dy = np.random.default_rng(3).standard_normal(of.shape).astype(np.float32)
    (of * T(dy)).sum().backward()
    ot.backward(torch.from_numpy(dy))
    for a, b in zip(qs, ts):
        assert rel_error(a.grad, b.grad.numpy()) < tol
    tp = dict(tm.named_parameters())
    for name, p in fm.named_parameters():
        assert rel_error(p.grad, tp[name].grad.numpy()) < tol, name


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_self(batch_first, rng):
    fm = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first)
    assert list(fm.state_dict()) == list(tm.state_dict())
    x = rng.standard_normal((2, 5, 8) if batch_first else (5, 2, 8)).astype(np.float32)
    _compare_mha(fm, tm, x, x, x)
    _compare_mha(fm, tm, x, x, x, need_weights=False)
    _compare_mha(fm, tm, x, x, x, average_attn_weights=False)


def test_multihead_attention_masks_and_kdim(rng):
    fm = nn.MultiheadAttention(8, 4, kdim=6, vdim=5, batch_first=True)
    tm = torch.nn.MultiheadAttention(8, 4, kdim=6, vdim=5, batch_first=True)
    assert list(fm.state_dict()) == list(tm.state_dict())
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    k = rng.standard_normal((2, 4, 6)).astype(np.float32)
    v = rng.standard_normal((2, 4, 5)).astype(np.float32)
    kpm = np.array([[False, False, True, False], [False, False, False, True]])
    am = np.triu(np.ones((3, 4), dtype=bool), 2)
    _compare_mha(fm, tm, q, k, v, key_padding_mask=kpm, attn_mask=am)
    fam = rng.standard_normal((3, 4)).astype(np.float32)
    _compare_mha(fm, tm, q, k, v, attn_mask=fam, need_weights=False)


def test_multihead_attention_no_bias_unbatched(rng):
    fm, tm = nn.MultiheadAttention(6, 3, bias=False), torch.nn.MultiheadAttention(6, 3, bias=False)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    _compare_mha(fm, tm, x, x, x)
    with pytest.raises(ValueError, match="multiple of"):
        nn.MultiheadAttention(6, 4)


class TorchSE(torch.nn.Module):
    def __init__(self, c, s):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Conv2d(c, s, 1), torch.nn.Conv2d(s, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class TorchSpatial(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
        d = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(d))


def test_squeeze_excitation_and_spatial_attention(rng):
    x = rng.standard_normal((2, 8, 5, 6)).astype(np.float32)
    check_layer(nn.SqueezeExcitation(8, 2), TorchSE(8, 2), x)
    check_layer(nn.SpatialAttention(3), TorchSpatial(3), x)


def test_self_attention_2d(rng):
    m = nn.SelfAttention2d(8, reduction=4)
    x = rng.standard_normal((2, 8, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(m(T(x)).numpy(), x)  # gamma starts at 0: identity
    m.gamma.data[...] = 0.5
    q = m.query(T(x)).numpy().reshape(2, 2, 12).transpose(0, 2, 1)
    k = m.key(T(x)).numpy().reshape(2, 2, 12).transpose(0, 2, 1)
    v = m.value(T(x)).numpy().reshape(2, 8, 12).transpose(0, 2, 1)
    s = q @ k.transpose(0, 2, 1)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ref = x + 0.5 * (a @ v).transpose(0, 2, 1).reshape(x.shape)
    xf = T(x, True)
    y = m(xf)
    assert rel_error(y, ref) < 1e-5
    y.sum().backward()
    assert xf.grad.shape == x.shape and m.gamma.grad is not None
