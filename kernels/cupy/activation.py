"""Activations on the GPU (activation.cu): element-wise kernels with 16-byte
vector loads (when every pointer is 16-byte aligned), PReLU with a
deterministic per-channel weight gradient, and row kernels for softmax /
log-softmax (a warp per row for short rows, a block per row otherwise)."""
import cupy

from .. import _checks as C
from . import _module as M

__all__ = [
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "prelu_forward", "prelu_backward", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "gelu_forward", "gelu_backward",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
]

_UNARY = ("ReluF", "LeakyF", "SigmoidF", "TanhF", "GeluErfF", "GeluTanhF")
_BINARY = ("ReluB", "LeakyB", "SigmoidB", "TanhB", "GeluErfB", "GeluTanhB")
_WARP_ROW_MAX = 1024  # rows up to this length use one warp each


def kernel_names():
    out = []
    for t in ("float", "double"):
        for v in ("true", "false"):
            out += [("activation.cu", f"ew_unary<{t},{op},{v}>", False) for op in _UNARY]
            out += [("activation.cu", f"ew_binary<{t},{op},{v}>", False) for op in _BINARY]
        for lg in ("true", "false"):
            for k in ("softmax_fwd_warp", "softmax_fwd_block", "softmax_bwd_warp", "softmax_bwd_block"):
                out.append(("activation.cu", f"{k}<{t},{lg}>", False))
        out += [("activation.cu", f"{k}<{t}>", False) for k in ("prelu_fwd", "prelu_bwd_dx", "prelu_bwd_dw")]
    return out


def _unary(opname, functor, x, a=0.0):
    x = C.array(opname, "x", x, device="cuda")
    y = cupy.empty_like(x)
    n = x.size
    if n:
        vec = M.aligned16(x, y)
        fn = M.function("activation.cu", f"ew_unary<{M.ctype(x.dtype)},{functor},{'true' if vec else 'false'}>")
        per = (16 // x.dtype.itemsize) if vec else 1
        M.launch(fn, M.blocks_for(n, per_thread=per), M.THREADS, (x, y, M.i64(n), M.scalar(a, x.dtype)))
    return y


def _binary(opname, functor, dy, s, s_name, a=0.0):
    dy = C.array(opname, "dy", dy, device="cuda")
    s = C.array(opname, s_name, s, device="cuda")
    C.same_shape(opname, "dy", dy, s_name, s)
    C.same_dtype(opname, dy=dy, **{s_name: s})
    dx = cupy.empty_like(dy)
    n = dy.size
    if n:
        vec = M.aligned16(dy, s, dx)
        fn = M.function("activation.cu", f"ew_binary<{M.ctype(dy.dtype)},{functor},{'true' if vec else 'false'}>")
        per = (16 // dy.dtype.itemsize) if vec else 1
        M.launch(fn, M.blocks_for(n, per_thread=per), M.THREADS, (dy, s, dx, M.i64(n), M.scalar(a, dy.dtype)))
    return dx


def relu_forward(x):
    """y = max(x, 0); NaN passes through."""
    return _unary("relu_forward", "ReluF", x)


def relu_backward(dy, y):
    """dx = 0 where y <= 0, else dy (NaN keeps its gradient)."""
    return _binary("relu_backward", "ReluB", dy, y, "y")


def leaky_relu_forward(x, negative_slope):
    s = C.number("leaky_relu_forward", "negative_slope", negative_slope)
    return _unary("leaky_relu_forward", "LeakyF", x, s)


def leaky_relu_backward(dy, x, negative_slope):
    s = C.number("leaky_relu_backward", "negative_slope", negative_slope)
    return _binary("leaky_relu_backward", "LeakyB", dy, x, "x", s)


def sigmoid_forward(x):
    return _unary("sigmoid_forward", "SigmoidF", x)


def sigmoid_backward(dy, y):
    return _binary("sigmoid_backward", "SigmoidB", dy, y, "y")


def tanh_forward(x):
    return _unary("tanh_forward", "TanhF", x)


def tanh_backward(dy, y):
    return _binary("tanh_backward", "TanhB", dy, y, "y")


def gelu_forward(x, approximate):
    a = C.choice("gelu_forward", "approximate", approximate, ("none", "tanh"))
    return _unary("gelu_forward", "GeluErfF" if a == "none" else "GeluTanhF", x)


def gelu_backward(dy, x, approximate):
    a = C.choice("gelu_backward", "approximate", approximate, ("none", "tanh"))
    return _binary("gelu_backward", "GeluErfB" if a == "none" else "GeluTanhB", dy, x, "x")


# ---- prelu -------------------------------------------------------------------

def _prelu_layout(op, x, weight):
    """(outer, C, inner, shared) for x viewed as outer x C x inner."""
    if weight.ndim != 1:
        raise ValueError(f"{op}: argument 'weight' must be 1-D (C,) or (1,), got shape {tuple(weight.shape)}")
    if weight.shape[0] == 1:
        return 1, 1, max(x.size, 1), 1
    channels = x.shape[1] if x.ndim >= 2 else 1
    if x.ndim < 2 or weight.shape[0] != channels:
        raise ValueError(
            f"{op}: argument 'weight' has {weight.shape[0]} parameters but x shape {tuple(x.shape)} "
            f"has {channels} channels on axis 1 (weight must be (C,) or (1,))"
        )
    inner = 1
    for d in x.shape[2:]:
        inner *= d
    return x.shape[0], channels, max(inner, 1), 0


def prelu_forward(x, weight):
    op = "prelu_forward"
    x = C.array(op, "x", x, device="cuda")
    weight = C.array(op, "weight", weight, device="cuda")
    C.same_dtype(op, x=x, weight=weight)
    _, ch, inner, shared = _prelu_layout(op, x, weight)
    y = cupy.empty_like(x)
    if x.size:
        fn = M.function("activation.cu", f"prelu_fwd<{M.ctype(x.dtype)}>")
        M.launch(fn, M.blocks_for(x.size), M.THREADS,
                 (x, weight, y, M.i64(x.size), M.i32(ch), M.i64(inner), M.i32(shared)))
    return y


def prelu_backward(dy, x, weight):
    """(dx, dweight); dweight reduced per channel in a fixed order."""
    op = "prelu_backward"
    dy = C.array(op, "dy", dy, device="cuda")
    x = C.array(op, "x", x, device="cuda")
    weight = C.array(op, "weight", weight, device="cuda")
    C.same_shape(op, "dy", dy, "x", x)
    C.same_dtype(op, dy=dy, x=x, weight=weight)
    outer, ch, inner, shared = _prelu_layout(op, x, weight)
    dx = cupy.empty_like(x)
    dw = cupy.zeros(weight.shape, dtype=x.dtype)
    if x.size:
        t = M.ctype(x.dtype)
        M.launch(M.function("activation.cu", f"prelu_bwd_dx<{t}>"), M.blocks_for(x.size), M.THREADS,
                 (dy, x, weight, dx, M.i64(x.size), M.i32(ch), M.i64(inner), M.i32(shared)))
        M.launch(M.function("activation.cu", f"prelu_bwd_dw<{t}>"), ch, M.THREADS,
                 (dy, x, dw, M.i64(outer), M.i32(ch), M.i64(inner)))
    return dx, dw


# ---- softmax / log_softmax ----------------------------------------------------

def _axis(op, axis, ndim):
    axis = C.integer(op, "axis", axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: argument 'axis' {axis} is out of range for a {ndim}-D array")
    return axis % ndim


def _to_last(a, axis):
    return a if axis == a.ndim - 1 else cupy.ascontiguousarray(cupy.moveaxis(a, axis, -1))


def _from_last(a, axis):
    return a if axis == a.ndim - 1 else cupy.ascontiguousarray(cupy.moveaxis(a, -1, axis))


def _rows_launch(kind, log, dtype, D, rows, args):
    t = M.ctype(dtype)
    lg = "true" if log else "false"
    if D <= _WARP_ROW_MAX:
        fn = M.function("activation.cu", f"{kind}_warp<{t},{lg}>")
        M.launch(fn, -(-rows // (M.THREADS // 32)), M.THREADS, args)
    else:
        fn = M.function("activation.cu", f"{kind}_block<{t},{lg}>")
        M.launch(fn, min(rows, 65535 * 16), M.THREADS, args)


def _softmax_fwd(op, x, axis, log):
    x = C.array(op, "x", x, min_ndim=1, device="cuda")
    axis = _axis(op, axis, x.ndim)
    if x.size == 0:
        return cupy.empty_like(x)
    xl = _to_last(x, axis)
    D = xl.shape[-1]
    rows = xl.size // D
    y = cupy.empty_like(xl)
    _rows_launch("softmax_fwd", log, x.dtype, D, rows, (xl, y, M.i64(rows), M.i64(D)))
    return _from_last(y, axis)


def _softmax_bwd(op, dy, y, axis, log):
    dy = C.array(op, "dy", dy, device="cuda")
    y = C.array(op, "y", y, device="cuda")
    C.same_shape(op, "dy", dy, "y", y)
    C.same_dtype(op, dy=dy, y=y)
    if y.ndim < 1:
        raise ValueError(f"{op}: argument 'y' must have at least 1 dimension, got shape {tuple(y.shape)}")
    axis = _axis(op, axis, y.ndim)
    if y.size == 0:
        return cupy.empty_like(dy)
    dyl, yl = _to_last(dy, axis), _to_last(y, axis)
    D = yl.shape[-1]
    rows = yl.size // D
    dx = cupy.empty_like(yl)
    _rows_launch("softmax_bwd", log, y.dtype, D, rows, (dyl, yl, dx, M.i64(rows), M.i64(D)))
    return _from_last(dx, axis)


def softmax_forward(x, axis):
    return _softmax_fwd("softmax_forward", x, axis, False)


def softmax_backward(dy, y, axis):
    return _softmax_bwd("softmax_backward", dy, y, axis, False)


def log_softmax_forward(x, axis):
    return _softmax_fwd("log_softmax_forward", x, axis, True)


def log_softmax_backward(dy, y, axis):
    return _softmax_bwd("log_softmax_backward", dy, y, axis, True)
