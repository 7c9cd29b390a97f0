"""Recurrent cells as autograd Functions (one fused kernel each way)."""
from ..tensor import Function
from ._base import KernelFunction, prepare, tensor_arg

__all__ = ["lstm_cell", "gru_cell"]


def _biases(b_ih, b_hh, op):
    return (None if b_ih is None else tensor_arg("b_ih", b_ih, op),
            None if b_hh is None else tensor_arg("b_hh", b_hh, op))


def _bias_grads(has_b, db_ih, db_hh):
    """The kernel returns both bias gradients; keep those of the biases that were given."""
    return tuple(g if has else None for g, has in zip((db_ih, db_hh), has_b))


class LSTMCell(KernelFunction, Function):
    """(x, hx, cx, w_ih, w_hh, b_ih, b_hh) -> (h, c)."""

    def forward(self, x, hx, cx, w_ih, w_hh, b_ih, b_hh, backend=None):
        prepare(self, x, backend)
        h, c, gates = self.k("lstm_cell_forward")(x, hx, cx, w_ih, w_hh, b_ih, b_hh)
        self.has_b = (b_ih is not None, b_hh is not None)
        self.save_for_backward(x, hx, cx, w_ih, w_hh, gates, c)
        return h, c

    def backward(self, dh, dc):
        x, hx, cx, w_ih, w_hh, gates, c = self.saved
        dx, dhx, dcx, dw_ih, dw_hh, db_ih, db_hh = self.k("lstm_cell_backward")(
            dh, dc, x, hx, cx, w_ih, w_hh, gates, c, has_bias=any(self.has_b))
        return (dx, dhx, dcx, dw_ih, dw_hh) + _bias_grads(self.has_b, db_ih, db_hh)


class GRUCell(KernelFunction, Function):
    """(x, hx, w_ih, w_hh, b_ih, b_hh) -> h."""

    def forward(self, x, hx, w_ih, w_hh, b_ih, b_hh, backend=None):
        prepare(self, x, backend)
        h, saved = self.k("gru_cell_forward")(x, hx, w_ih, w_hh, b_ih, b_hh)
        self.has_b = (b_ih is not None, b_hh is not None)
        self.save_for_backward(x, hx, w_ih, w_hh, saved)
        return h

    def backward(self, dh):
        x, hx, w_ih, w_hh, saved = self.saved
        dx, dhx, dw_ih, dw_hh, db_ih, db_hh = self.k("gru_cell_backward")(
            dh, x, hx, w_ih, w_hh, saved, has_bias=any(self.has_b))
        return (dx, dhx, dw_ih, dw_hh) + _bias_grads(self.has_b, db_ih, db_hh)


def _batched(op, x, *states):
    """PyTorch cells also take unbatched 1-D input: add the batch axis (returns unsqueeze flag)."""
    if x.ndim == 1:
        for s in states:
            if s.ndim != 1:
                raise ValueError(f"{op}: unbatched 1-D input needs 1-D hidden state, got shape {s.shape}")
        return True, (x.reshape(1, -1),) + tuple(s.reshape(1, -1) for s in states)
    if x.ndim != 2:
        raise ValueError(f"{op}: input must be 1-D or 2-D (N, input_size), got shape {x.shape}")
    return False, (x,) + states


def lstm_cell(x, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None, backend=None):
    """One LSTM step (torch.nn.LSTMCell's math): returns (h, c), each (N, H) (or (H,) for 1-D input)."""
    op = "lstm_cell"
    args = [tensor_arg(n, a, op) for n, a in (("x", x), ("hx", hx), ("cx", cx), ("w_ih", w_ih), ("w_hh", w_hh))]
    squeeze, (x, hx, cx) = _batched(op, *args[:3])
    h, c = LSTMCell.apply(x, hx, cx, args[3], args[4], *_biases(b_ih, b_hh, op), backend=backend)
    return (h.reshape(-1), c.reshape(-1)) if squeeze else (h, c)


def gru_cell(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, backend=None):
    """One GRU step (torch.nn.GRUCell's math): returns h (N, H) (or (H,) for 1-D input)."""
    op = "gru_cell"
    args = [tensor_arg(n, a, op) for n, a in (("x", x), ("hx", hx), ("w_ih", w_ih), ("w_hh", w_hh))]
    squeeze, (x, hx) = _batched(op, *args[:2])
    h = GRUCell.apply(x, hx, args[2], args[3], *_biases(b_ih, b_hh, op), backend=backend)
    return h.reshape(-1) if squeeze else h
