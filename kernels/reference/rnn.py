"""Recurrent cells (PyTorch's formulas and gate order): forward and backward side by side.

LSTM (gates i, f, g, o):
    gates = x W_ih^T + b_ih + h W_hh^T + b_hh
    i, f, o = sigmoid(.), g = tanh(.)
    c' = f * c + i * g,   h' = o * tanh(c')
GRU (gates r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
Shapes: x (N, I), h and c (N, H), w_ih (G*H, I), w_hh (G*H, H), biases (G*H,) or
None, with G = 4 (LSTM) or 3 (GRU).  Both input-to-hidden and hidden-to-hidden
products are single GEMMs over all gates; the element-wise gate math runs once
over the (N, G*H) gate block.
"""
from .. import _checks as C
from ._util import xp_of

__all__ = ["lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward"]


def _sigmoid(xp, a):
    """1 / (1 + exp(-a)) without overflow: exp only ever sees -|a|."""
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _check_cell(op, gates, x, h, w_ih, w_hh, b_ih, b_hh, c=None):
    """Validate a cell's arguments; return them contiguous plus (N, I, H)."""
    x = C.array(op, "x", x, ndim=2)
    h = C.array(op, "h", h, ndim=2)
    w_ih = C.array(op, "w_ih", w_ih, ndim=2)
    w_hh = C.array(op, "w_hh", w_hh, ndim=2)
    b_ih = C.array(op, "b_ih", b_ih, ndim=1, allow_none=True)
    b_hh = C.array(op, "b_hh", b_hh, ndim=1, allow_none=True)
    if c is not None:
        c = C.array(op, "c", c, ndim=2)
    C.same_dtype(op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    C.same_device(op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    N, I = x.shape
    H = h.shape[1]
    if w_ih.shape != (gates * H, I):
        raise ValueError(
            f"{op}: 'w_ih' shape {tuple(w_ih.shape)} does not match ({gates}*hidden_size, input_size) = "
            f"({gates * H}, {I}) from x {tuple(x.shape)} and h {tuple(h.shape)}"
        )
    if w_hh.shape != (gates * H, H):
        raise ValueError(
            f"{op}: 'w_hh' shape {tuple(w_hh.shape)} does not match ({gates}*hidden_size, hidden_size) = "
            f"({gates * H}, {H}) from h {tuple(h.shape)}"
        )
    if h.shape[0] != N:
        raise ValueError(f"{op}: batch size of 'h' {tuple(h.shape)} does not match 'x' {tuple(x.shape)}")
    if c is not None and c.shape != h.shape:
        raise ValueError(f"{op}: 'c' shape {tuple(c.shape)} does not match 'h' shape {tuple(h.shape)}")
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None and b.shape != (gates * H,):
            raise ValueError(f"{op}: '{name}' shape {tuple(b.shape)} must be ({gates}*hidden_size,) = ({gates * H},)")
    return x, h, c, w_ih, w_hh, b_ih, b_hh, (N, I, H)


def _affine(x, w, b):
    """x @ w.T (+ b)."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def _weight_grads(dgi, dgh, x, h, has_bias):
    """(dw_ih, dw_hh, db_ih, db_hh) from the pre-activation gate gradients."""
    dw_ih = dgi.T @ x
    dw_hh = dgh.T @ h
    if not has_bias:
        return dw_ih, dw_hh, None, None
    return dw_ih, dw_hh, dgi.sum(axis=0), dgh.sum(axis=0)


# ---- LSTM ------------------------------------------------------------------------

def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, c_new, gates); gates (N, 4H) holds the activated i, f, g, o."""
    op = "lstm_cell_forward"
    x, h, c, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 4, x, h, w_ih, w_hh, b_ih, b_hh, c)
    xp = xp_of(x)
    gates = _affine(x, w_ih, b_ih)
    gates += _affine(h, w_hh, b_hh)
    ifo = gates.reshape(N, 4, H)
    ifo[:, (0, 1, 3)] = _sigmoid(xp, ifo[:, (0, 1, 3)])
    ifo[:, 2] = xp.tanh(ifo[:, 2])
    i, f, g, o = (ifo[:, k] for k in range(4))
    c_new = f * c + i * g
    h_new = o * xp.tanh(c_new)
    return h_new, c_new, gates


def _check_lstm_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new):
    """lstm_cell_backward's arguments checked (every backend's slow path): the arrays, then (N, I, H)."""
    op = "lstm_cell_backward"
    x, h, c, w_ih, w_hh, _, _, (N, I, H) = _check_cell(op, 4, x, h, w_ih, w_hh, None, None, c)
    dh_new = C.array(op, "dh_new", dh_new, ndim=2)
    dc_new = C.array(op, "dc_new", dc_new, ndim=2)
    gates = C.array(op, "gates", gates, ndim=2)
    c_new = C.array(op, "c_new", c_new, ndim=2)
    C.same_dtype(op, x=x, dh_new=dh_new, dc_new=dc_new, gates=gates, c_new=c_new)
    for name, a in (("dh_new", dh_new), ("dc_new", dc_new), ("c_new", c_new)):
        C.same_shape(op, name, a, "h", h)
    if gates.shape != (N, 4 * H):
        raise ValueError(f"{op}: 'gates' shape {tuple(gates.shape)} must be (N, 4*hidden_size) = ({N}, {4 * H})")
    return dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new, (N, I, H)


def _check_gru_backward(dh_new, x, h, w_ih, w_hh, saved):
    """gru_cell_backward's arguments checked: the arrays, then (N, I, H)."""
    op = "gru_cell_backward"
    x, h, _, w_ih, w_hh, _, _, (N, I, H) = _check_cell(op, 3, x, h, w_ih, w_hh, None, None)
    dh_new = C.array(op, "dh_new", dh_new, ndim=2)
    saved = C.array(op, "saved", saved, ndim=2)
    C.same_dtype(op, x=x, dh_new=dh_new, saved=saved)
    C.same_shape(op, "dh_new", dh_new, "h", h)
    if saved.shape != (N, 4 * H):
        raise ValueError(f"{op}: 'saved' shape {tuple(saved.shape)} must be (N, 4*hidden_size) = ({N}, {4 * H})")
    return dh_new, x, h, w_ih, w_hh, saved, (N, I, H)


def lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new, has_bias=True):
    """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh); db_* are None when not has_bias.

    ``gates`` and ``c_new`` are what the forward returned.  db_ih == db_hh (both
    biases enter the gates the same way); both are returned, as PyTorch does.
    """
    dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new, (N, I, H) = _check_lstm_backward(
        dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new)
    xp = xp_of(x)
    g4 = gates.reshape(N, 4, H)
    i, f, g, o = (g4[:, k] for k in range(4))
    tc = xp.tanh(c_new)
    dc_tot = dc_new + dh_new * o * (1 - tc * tc)
    d = xp.empty_like(g4)  # pre-activation gate gradients
    d[:, 0] = dc_tot * g * i * (1 - i)
    d[:, 1] = dc_tot * c * f * (1 - f)
    d[:, 2] = dc_tot * i * (1 - g * g)
    d[:, 3] = dh_new * tc * o * (1 - o)
    d = d.reshape(N, 4 * H)
    dx = d @ w_ih
    dh = d @ w_hh
    dc = dc_tot * f
    return (dx, dh, dc) + _weight_grads(d, d, x, h, has_bias)


# ---- GRU -------------------------------------------------------------------------

def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, saved); saved (N, 4H) = r, z, n, hn with hn = W_hn h + b_hn."""
    op = "gru_cell_forward"
    x, h, _, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 3, x, h, w_ih, w_hh, b_ih, b_hh)
    xp = xp_of(x)
    gi = _affine(x, w_ih, b_ih).reshape(N, 3, H)
    gh = _affine(h, w_hh, b_hh).reshape(N, 3, H)
    saved = xp.empty((N, 4, H), dtype=x.dtype)
    saved[:, :2] = _sigmoid(xp, gi[:, :2] + gh[:, :2])
    r, z = saved[:, 0], saved[:, 1]
    saved[:, 2] = xp.tanh(gi[:, 2] + r * gh[:, 2])
    saved[:, 3] = gh[:, 2]
    n = saved[:, 2]
    h_new = n + z * (h - n)
    return h_new, saved.reshape(N, 4 * H)


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, saved, has_bias=True):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); db_* are None when not has_bias."""
    dh_new, x, h, w_ih, w_hh, saved, (N, I, H) = _check_gru_backward(dh_new, x, h, w_ih, w_hh, saved)
    xp = xp_of(x)
    s = saved.reshape(N, 4, H)
    r, z, n, hn = (s[:, k] for k in range(4))
    dgi = xp.empty((N, 3, H), dtype=x.dtype)  # gradients of the input-side pre-activations
    dn = dh_new * (1 - z) * (1 - n * n)
    dgi[:, 0] = dn * hn * r * (1 - r)
    dgi[:, 1] = dh_new * (h - n) * z * (1 - z)
    dgi[:, 2] = dn
    dgh = dgi.copy()  # r and z enter both sides alike; n's hidden side is scaled by r
    dgh[:, 2] = dn * r
    dgi = dgi.reshape(N, 3 * H)
    dgh = dgh.reshape(N, 3 * H)
    dx = dgi @ w_ih
    dh = dgh @ w_hh + dh_new * z
    return (dx, dh) + _weight_grads(dgi, dgh, x, h, has_bias)
