"""Recurrent layers: LSTM and GRU (multi-layer, bidirectional, batch_first) and their cells.

Parameter names, shapes, gate order and initialisation follow torch.nn, so a
torch state dict loads directly.  The time loop is Python over
``fastconv.functional.lstm_cell`` / ``gru_cell``; each step's cell is one
fused kernel.
"""
import math

import numpy as np

from .. import functional as F
from ..ops import stack, cat
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class _RNNBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        if proj_size:
            raise ValueError(f"{name}: proj_size is not supported")
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError(f"{name}: input_size, hidden_size and num_layers must be >= 1, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        ndir = 2 if bidirectional else 1
        g = self._gates * hidden_size
        self._flat_names = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * ndir
            for d in range(ndir):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                names = [f"weight_ih{sfx}", f"weight_hh{sfx}"]
                setattr(self, names[0], Parameter(np.empty((g, layer_in), dtype=dtype)))
                setattr(self, names[1], Parameter(np.empty((g, hidden_size), dtype=dtype)))
                if bias:
                    names += [f"bias_ih{sfx}", f"bias_hh{sfx}"]
                    setattr(self, names[2], Parameter(np.empty(g, dtype=dtype)))
                    setattr(self, names[3], Parameter(np.empty(g, dtype=dtype)))
                self._flat_names.append(names)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _weights(self, layer, d):
        names = self._flat_names[layer * (2 if self.bidirectional else 1) + d]
        ws = [getattr(self, n) for n in names]
        return ws if self.bias else ws + [None, None]

    def _check_input(self, x):
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input must be a fastconv.Tensor, got {type(x).__name__}")
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input (L, N, {self.input_size}) "
                             f"({'batch_first: (N, L, ...)' if self.batch_first else 'time first'}) or "
                             f"unbatched (L, {self.input_size}), got {x.shape}")

    def _initial(self, hx, n, like, what):
        ndir = 2 if self.bidirectional else 1
        shape = (self.num_layers * ndir, n, self.hidden_size)
        if hx is None:
            z = like.xp.zeros(shape[1:], dtype=like.dtype)
            return [Tensor(z) for _ in range(shape[0])]
        if not isinstance(hx, Tensor):
            hx = Tensor(hx)
        if hx.shape != shape:
            raise ValueError(f"{type(self).__name__}: expected {what} of shape {shape}, got {hx.shape}")
        return [hx[i] for i in range(shape[0])]

    def _run(self, x, states, step):
        """Run all layers/directions; ``states`` is a list (one per state kind) of per-(layer, dir) lists."""
        self._check_input(x)
        unbatched = x.ndim == 2
        if unbatched:
            x = x.reshape(x.shape[0], 1, x.shape[1])
        elif self.batch_first:
            x = x.transpose(0, 1)
        seq_len, n = x.shape[0], x.shape[1]
        if seq_len == 0:
            raise ValueError(f"{type(self).__name__}: empty sequence (length 0)")
        states = [self._initial(s, n, x, w) for s, w in zip(states, self._state_names)]
        ndir = 2 if self.bidirectional else 1
        xs = [x[t] for t in range(seq_len)]
        finals = [[] for _ in states]
        for layer in range(self.num_layers):
            outs = []
            for d in range(ndir):
                st = [s[layer * ndir + d] for s in states]
                ws = self._weights(layer, d)
                hs = [None] * seq_len
                for t in (range(seq_len - 1, -1, -1) if d else range(seq_len)):
                    st = step(xs[t], st, ws)
                    hs[t] = st[0]
                for k, s in enumerate(st):
                    finals[k].append(s)
                outs.append(hs)
            xs = outs[0] if ndir == 1 else [cat([f, b], dim=1) for f, b in zip(*outs)]
            if self.dropout and self.training and layer < self.num_layers - 1:
                seed = int(init.get_generator().integers(0, 2 ** 31 - 1))
                y = F.dropout(stack(xs, dim=0), self.dropout, True, seed=seed)
                xs = [y[t] for t in range(seq_len)]
        out = stack(xs, dim=0)
        finals = [stack(f, dim=0) for f in finals]
        if unbatched:
            out = out.reshape(seq_len, out.shape[-1])
            finals = [f.reshape(f.shape[0], f.shape[2]) for f in finals]
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, finals

    def _unbatched_hx(self, hx, x):
        if hx is not None and x.ndim == 2:
            hx = hx if isinstance(hx, Tensor) else Tensor(hx)
            if hx.ndim == 2:
                return hx.reshape(hx.shape[0], 1, hx.shape[1])
        return hx

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


class LSTM(_RNNBase):
    """Long short-term memory; ``forward(x, (h0, c0)=None) -> (output, (h_n, c_n))``."""

    _gates = 4
    _state_names = ("h0", "c0")

    def forward(self, x, hx=None):
        h0, c0 = (None, None) if hx is None else hx
        h0, c0 = self._unbatched_hx(h0, x), self._unbatched_hx(c0, x)

        def step(xt, st, ws):
            return list(F.lstm_cell(xt, st[0], st[1], *ws))

        out, (h_n, c_n) = self._run(x, [h0, c0], step)
        return out, (h_n, c_n)


class GRU(_RNNBase):
    """Gated recurrent unit; ``forward(x, h0=None) -> (output, h_n)``."""

    _gates = 3
    _state_names = ("h0",)

    def forward(self, x, hx=None):
        hx = self._unbatched_hx(hx, x)

        def step(xt, st, ws):
            return [F.gru_cell(xt, st[0], *ws)]

        out, (h_n,) = self._run(x, [hx], step)
        return out, h_n


class _CellBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self._gates * hidden_size
        self.weight_ih = Parameter(np.empty((g, input_size), dtype=dtype))
        self.weight_hh = Parameter(np.empty((g, hidden_size), dtype=dtype))
        if bias:
            self.bias_ih = Parameter(np.empty(g, dtype=dtype))
            self.bias_hh = Parameter(np.empty(g, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _zeros(self, x):
        return Tensor(x.xp.zeros((x.shape[0], self.hidden_size), dtype=x.dtype))


class LSTMCell(_CellBase):
    _gates = 4

    def forward(self, x, hx=None):
        h, c = (self._zeros(x), self._zeros(x)) if hx is None else hx
        return F.lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(_CellBase):
    _gates = 3

    def forward(self, x, hx=None):
        h = self._zeros(x) if hx is None else hx
        return F.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
