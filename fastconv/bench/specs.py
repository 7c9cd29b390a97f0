"""Per-op benchmark specs: inputs from the kernel contract, kernel calls, FLOP/byte counts.

Each spec turns a case's params into float64 NumPy inputs (``make``; values are
float32-representable so the float64 reference sees exactly what a float32
kernel sees) and, for one direction, binds kernels to converted inputs
(``bind``), returning ``(run, extract)``: ``run()`` is the timed call and
``extract(result)`` the outputs compared with the float64 reference.
Backward directions run the same backend's forward once in ``bind`` (untimed)
because backward kernels take what forward saved.

``get(name)`` returns a kernel or raises ``KernelMissing`` (reported 'n/a').
"""
import math

import numpy as np

from .cases import param_shapes


class KernelMissing(LookupError):
    """The backend has no kernel of that name."""


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(t) for t in v)


def _rand(rng, shape, scale=1.0, shift=0.0):
    """Normal(shift, scale) values that float32 represents exactly (stored as float64)."""
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32).astype(np.float64)


class Spec:
    op = ""
    directions = ("fwd", "bwd")
    bound = "bytes"  # which machine limit applies: 'flops' (SGEMM) or 'bytes' (copy bandwidth)
    tol = 1e-4  # float32 vs float64 reference, ||out - ref|| / ||ref||
    kernels = {}  # direction -> kernel names the direction needs

    def make(self, p, rng):
        raise NotImplementedError

    def bind(self, get, d, a, p):
        raise NotImplementedError

    def work(self, p, d, itemsize):
        """(flops or None, bytes moved or None) for one call."""
        raise NotImplementedError

    @staticmethod
    def get_all(get, names):
        return [get(n) for n in names]


def _ident(r):
    return r if isinstance(r, tuple) else (r,)


# ---------------------------------------------------------------- conv
class Conv2d(Spec):
    op = "conv2d"
    directions = ("fwd", "bwd_input", "bwd_weight", "fwd_bwd")
    bound = "flops"
    tol = 1e-3  # Winograd / TF32 paths are allowed 1e-3 by the numerical contract
    kernels = {"fwd": ["conv2d_forward"], "bwd_input": ["conv2d_backward_input"],
               "bwd_weight": ["conv2d_backward_weight"],
               "fwd_bwd": ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"]}

    @staticmethod
    def geom(p):
        s, pad, dil, g = p.get("stride", 1), p.get("pad", 0), p.get("dilation", 1), p.get("groups", 1)
        P = (p["H"] + 2 * pad - dil * (p["R"] - 1) - 1) // s + 1
        Q = (p["W"] + 2 * pad - dil * (p["S"] - 1) - 1) // s + 1
        return (s, s), (pad, pad), (dil, dil), g, P, Q

    def make(self, p, rng):
        _, _, _, g, P, Q = self.geom(p)
        fan_in = p["C"] // g * p["R"] * p["S"]
        return {"x": _rand(rng, (p["N"], p["C"], p["H"], p["W"])),
                "w": _rand(rng, (p["K"], p["C"] // g, p["R"], p["S"]), 1 / math.sqrt(fan_in)),
                "b": _rand(rng, (p["K"],)) if p.get("bias") else None,
                "dy": _rand(rng, (p["N"], p["K"], P, Q))}

    def bind(self, get, d, a, p):
        s, pad, dil, g, _, _ = self.geom(p)
        names = self.kernels[d] + (["conv2d_backward_bias"] if d == "fwd_bwd" and a["b"] is not None else [])
        ks = self.get_all(get, names)
        x, w, b, dy = a["x"], a["w"], a["b"], a["dy"]
        if d == "fwd":
            return (lambda: ks[0](x, w, b, s, pad, dil, g)), _ident
        if d == "bwd_input":
            return (lambda: ks[0](dy, w, x.shape, s, pad, dil, g)), _ident
        if d == "bwd_weight":
            return (lambda: ks[0](dy, x, w.shape, s, pad, dil, g)), _ident

        def run():
            y = ks[0](x, w, b, s, pad, dil, g)
            dx = ks[1](dy, w, x.shape, s, pad, dil, g)
            dw = ks[2](dy, x, w.shape, s, pad, dil, g)
            return (y, dx, dw, ks[3](dy) if len(ks) > 3 else None)
        return run, _ident

    def work(self, p, d, itemsize):
        _, _, _, g, P, Q = self.geom(p)
        f = 2 * p["N"] * p["K"] * P * Q * (p["C"] // g) * p["R"] * p["S"]
        nx, nw, ny = p["N"] * p["C"] * p["H"] * p["W"], p["K"] * p["C"] // g * p["R"] * p["S"], p["N"] * p["K"] * P * Q
        return (3 * f if d == "fwd_bwd" else f), (nx + nw + ny) * itemsize * (3 if d == "fwd_bwd" else 1)


# ---------------------------------------------------------------- pool
def _pool_out(n, k, s, pad):
    return (n + 2 * pad - k) // s + 1


class MaxPool2d(Spec):
    op = "max_pool2d"
    kernels = {"fwd": ["max_pool2d_forward"], "bwd": ["max_pool2d_forward", "max_pool2d_backward"]}

    def _g(self, p):
        k, s, pad = p["kernel_size"], p.get("stride") or p["kernel_size"], p.get("padding", 0)
        N, C, H, W = p["shape"]
        return k, s, pad, (N, C, _pool_out(H, k, s, pad), _pool_out(W, k, s, pad))

    def make(self, p, rng):
        return {"x": _rand(rng, tuple(p["shape"])), "dy": _rand(rng, self._g(p)[3])}

    def bind(self, get, d, a, p):
        k, s, pad, _ = self._g(p)
        ks = self.get_all(get, self.kernels[d])
        x = a["x"]
        if d == "fwd":
            return (lambda: ks[0](x, k, s, pad, 1, False)), (lambda r: (r[0],))
        _, am = ks[0](x, k, s, pad, 1, False)
        return (lambda: ks[1](a["dy"], am, x.shape)), _ident

    def work(self, p, d, itemsize):
        nx, ny = math.prod(p["shape"]), math.prod(self._g(p)[3])
        return None, (nx * itemsize + ny * (itemsize + 8))


class AvgPool2d(MaxPool2d):
    op = "avg_pool2d"
    kernels = {"fwd": ["avg_pool2d_forward"], "bwd": ["avg_pool2d_backward"]}

    def bind(self, get, d, a, p):
        k, s, pad, _ = self._g(p)
        (f,) = self.get_all(get, self.kernels[d])
        if d == "fwd":
            return (lambda: f(a["x"], k, s, pad, False, True)), _ident
        shape = a["x"].shape
        return (lambda: f(a["dy"], shape, k, s, pad, False, True)), _ident

    def work(self, p, d, itemsize):
        return None, (math.prod(p["shape"]) + math.prod(self._g(p)[3])) * itemsize


class AdaptiveAvgPool2d(Spec):
    op = "adaptive_avg_pool2d"
    kernels = {"fwd": ["adaptive_avg_pool2d_forward"], "bwd": ["adaptive_avg_pool2d_backward"]}

    def make(self, p, rng):
        N, C = p["shape"][:2]
        return {"x": _rand(rng, tuple(p["shape"])), "dy": _rand(rng, (N, C) + _pair(p["output_size"]))}

    def bind(self, get, d, a, p):
        (f,) = self.get_all(get, self.kernels[d])
        if d == "fwd":
            os_ = _pair(p["output_size"])
            return (lambda: f(a["x"], os_)), _ident
        shape = a["x"].shape
        return (lambda: f(a["dy"], shape)), _ident

    def work(self, p, d, itemsize):
        N, C = p["shape"][:2]
        return None, (math.prod(p["shape"]) + N * C * math.prod(_pair(p["output_size"]))) * itemsize


# ---------------------------------------------------------------- activation
class Relu(Spec):
    op = "relu"
    tol = 1e-6
    kernels = {"fwd": ["relu_forward"], "bwd": ["relu_forward", "relu_backward"]}

    def make(self, p, rng):
        return {"x": _rand(rng, tuple(p["shape"])), "dy": _rand(rng, tuple(p["shape"]))}

    def bind(self, get, d, a, p):
        ks = self.get_all(get, self.kernels[d])
        if d == "fwd":
            return (lambda: ks[0](a["x"])), _ident
        y = ks[0](a["x"])
        return (lambda: ks[1](a["dy"], y)), _ident

    def work(self, p, d, itemsize):
        return None, math.prod(p["shape"]) * itemsize * (2 if d == "fwd" else 3)


# ---------------------------------------------------------------- loss
class SoftmaxCrossEntropy(Spec):
    op = "softmax_cross_entropy"
    kernels = {"fwd": ["softmax_cross_entropy_forward"],
               "bwd": ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]}

    def make(self, p, rng):
        N, C = p["N"], p["C"]
        return {"logits": _rand(rng, (N, C), 3.0), "target": rng.integers(0, C, N).astype(np.int64),
                "dloss": np.array(1.0)}

    def bind(self, get, d, a, p):
        ks = self.get_all(get, self.kernels[d])
        ls, red = float(p.get("label_smoothing", 0.0)), p.get("reduction", "mean")
        lg, t = a["logits"], a["target"]
        if d == "fwd":
            return (lambda: ks[0](lg, t, None, ls, red, -100)), _ident
        _, lp = ks[0](lg, t, None, ls, red, -100)
        return (lambda: ks[1](a["dloss"], lp, t, None, ls, red, -100)), _ident

    def work(self, p, d, itemsize):
        n = p["N"] * p["C"]
        return None, 2 * n * itemsize + p["N"] * 8


# ---------------------------------------------------------------- norm
class BatchNorm(Spec):
    op = "batch_norm"
    kernels = {"fwd": ["batch_norm_forward"], "bwd": ["batch_norm_forward", "batch_norm_backward"]}

    def make(self, p, rng):
        C = p["shape"][1]
        return {"x": _rand(rng, tuple(p["shape"]), 2.0, 0.5), "dy": _rand(rng, tuple(p["shape"])),
                "gamma": _rand(rng, (C,), 1.0, 1.0), "beta": _rand(rng, (C,)),
                "running_mean": np.zeros(C), "running_var": np.ones(C)}

    def bind(self, get, d, a, p):
        ks = self.get_all(get, self.kernels[d])
        x, g, b, rm, rv = a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"]
        if d == "fwd":
            return (lambda: ks[0](x, g, b, rm, rv, True, 0.1, 1e-5)), _ident
        _, sm, si = ks[0](x, g, b, rm, rv, True, 0.1, 1e-5)
        return (lambda: ks[1](a["dy"], x, g, sm, si, True)), _ident

    def work(self, p, d, itemsize):
        return None, math.prod(p["shape"]) * itemsize * (2 if d == "fwd" else 3)


# ---------------------------------------------------------------- rnn
class LstmCell(Spec):
    op = "lstm_cell"
    bound = "flops"
    gates = 4
    kernels = {"fwd": ["lstm_cell_forward"], "bwd": ["lstm_cell_forward", "lstm_cell_backward"]}

    def make(self, p, rng):
        N, I, H, G = p["N"], p["input_size"], p["hidden_size"], self.gates
        s = 1 / math.sqrt(H)
        return {"x": _rand(rng, (N, I)), "h": _rand(rng, (N, H)), "c": _rand(rng, (N, H)),
                "w_ih": _rand(rng, (G * H, I), s), "w_hh": _rand(rng, (G * H, H), s),
                "b_ih": _rand(rng, (G * H,), s), "b_hh": _rand(rng, (G * H,), s),
                "dh": _rand(rng, (N, H)), "dc": _rand(rng, (N, H))}

    def bind(self, get, d, a, p):
        ks = self.get_all(get, self.kernels[d])
        x, h, c, wi, wh, bi, bh = (a[k] for k in ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"))
        if d == "fwd":
            return (lambda: ks[0](x, h, c, wi, wh, bi, bh)), _ident
        _, c_new, gates = ks[0](x, h, c, wi, wh, bi, bh)
        return (lambda: ks[1](a["dh"], a["dc"], x, h, c, wi, wh, gates, c_new)), _ident

    def work(self, p, d, itemsize):
        f = 2 * p["N"] * self.gates * p["hidden_size"] * (p["input_size"] + p["hidden_size"])
        return (f if d == "fwd" else 2 * f), None


class GruCell(LstmCell):
    op = "gru_cell"
    gates = 3
    kernels = {"fwd": ["gru_cell_forward"], "bwd": ["gru_cell_forward", "gru_cell_backward"]}

    def bind(self, get, d, a, p):
        ks = self.get_all(get, self.kernels[d])
        x, h, wi, wh, bi, bh = (a[k] for k in ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh"))
        if d == "fwd":
            return (lambda: ks[0](x, h, wi, wh, bi, bh)), _ident
        _, saved = ks[0](x, h, wi, wh, bi, bh)
        return (lambda: ks[1](a["dh"], x, h, wi, wh, saved)), _ident


# ---------------------------------------------------------------- attention
class Attention(Spec):
    op = "attention"
    bound = "flops"
    tol = 1e-4
    kernels = {"fwd": ["scaled_dot_product_attention_forward"],
               "bwd": ["scaled_dot_product_attention_forward", "scaled_dot_product_attention_backward"]}

    def make(self, p, rng):
        B, h, L, S, E = p["B"], p["heads"], p["L"], p["S"], p["E"]
        return {"q": _rand(rng, (B, h, L, E)), "k": _rand(rng, (B, h, S, E)), "v": _rand(rng, (B, h, S, E)),
                "dout": _rand(rng, (B, h, L, E))}

    def bind(self, get, d, a, p):
        ks = self.get_all(get, self.kernels[d])
        q, k, v, causal = a["q"], a["k"], a["v"], bool(p.get("causal", False))
        if d == "fwd":
            return (lambda: ks[0](q, k, v, None, None, causal)), _ident
        out, lse = ks[0](q, k, v, None, None, causal)
        return (lambda: ks[1](a["dout"], q, k, v, out, lse, None, None, causal)), _ident

    def work(self, p, d, itemsize):
        # 2 GEMMs forward; backward recomputes scores and runs 4 more (FlashAttention's 2.5x)
        f = 4 * p["B"] * p["heads"] * p["L"] * p["S"] * p["E"] * (0.5 if p.get("causal") else 1.0)
        return (f if d == "fwd" else 2.5 * f), None


# ---------------------------------------------------------------- optim
class Optim(Spec):
    """One fused step over a flat buffer holding every parameter of the model.

    Validation compares the update (new - old parameter, exact in float64) and
    the new state.  A float32 parameter carries a rounding error of ~eps*|p|,
    large against an Adam step of lr * O(0.01): hence the 1e-3 tolerance; a
    wrong update rule misses by O(1)."""
    directions = ("step",)
    tol = 1e-3
    state = ()
    bytes_per_elem = 5  # arrays read + written per element

    def numel(self, p):
        return sum(math.prod(s) for s in param_shapes(p["params"]))

    def make(self, p, rng):
        n = self.numel(p)
        a = {"param": _rand(rng, (n,), 0.05), "grad": _rand(rng, (n,), 1e-2)}
        for k in self.state:
            a[k] = np.abs(_rand(rng, (n,), 1e-2)) if k in ("exp_avg_sq", "state_sum") else _rand(rng, (n,), 1e-2)
        return a

    def bind(self, get, d, a, p):
        (f,) = self.get_all(get, [self.op + "_step"])
        xp_param = a["param"]
        p0 = xp_param.copy()
        call = self.call(f, a, p)

        def extract(_):  # compare the update, not the (much larger) parameter itself
            return (xp_param.astype("float64") - p0.astype("float64"),) + tuple(a[k] for k in self.state)
        return call, extract

    def work(self, p, d, itemsize):
        return None, self.numel(p) * itemsize * self.bytes_per_elem


class Sgd(Optim):
    op = "sgd"
    state = ("momentum_buf",)

    def call(self, f, a, p):
        args = (float(p["lr"]), float(p.get("momentum", 0.9)), float(p.get("dampening", 0.0)),
                float(p.get("weight_decay", 0.0)), bool(p.get("nesterov", False)), False)
        return lambda: f(a["param"], a["grad"], a["momentum_buf"], *args)


class Adam(Optim):
    op = "adam"
    state = ("exp_avg", "exp_avg_sq")
    bytes_per_elem = 7

    def call(self, f, a, p):
        args = (10, float(p["lr"]), 0.9, 0.999, 1e-8, float(p.get("weight_decay", 0.0)), bool(p.get("decoupled", False)))
        return lambda: f(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], *args)


class Adagrad(Optim):
    op = "adagrad"
    state = ("state_sum",)

    def call(self, f, a, p):
        args = (10, float(p["lr"]), 0.0, float(p.get("weight_decay", 0.0)), 1e-10)
        return lambda: f(a["param"], a["grad"], a["state_sum"], *args)


SPECS = {s.op: s for s in (Conv2d(), MaxPool2d(), AvgPool2d(), AdaptiveAvgPool2d(), Relu(), SoftmaxCrossEntropy(),
                           BatchNorm(), LstmCell(), GruCell(), Attention(), Sgd(), Adam(), Adagrad())}
