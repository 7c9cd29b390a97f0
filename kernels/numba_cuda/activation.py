"""Activations: element-wise kernels (grid-stride, coalesced) and row-wise softmax.

Constants reach the kernels as scalars of the array's dtype, so float32
kernels do float32 math (a Python float literal would promote to float64).
softmax / log_softmax: the reduced axis is moved last (a copy when it is not
last already); each row is reduced by LANES threads in shared memory (max,
then sum of exp), ROWS rows per block.  prelu is not written here and falls
back to the reference.
"""
import math

from numba import cuda

from .. import _checks as C
from ._launch import DEVICE, LANES, ROWS, THREADS, Launch, blocks, jit, lanes_sum, row_max_sumexp

__all__ = [
    "relu_forward", "relu_backward",
    "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "gelu_forward", "gelu_backward",
    "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


# ----------------------------------------------------------------- element-wise


# relu: each thread handles UNROLL elements THREADS apart (coalesced), all loads
# issued before the stores.  One element per thread keeps too few bytes in
# flight to saturate HBM3 (~1.6 TB/s measured on an H200, torch 4.1 TB/s).
UNROLL = 4


@jit
def _relu_fwd(x, y, zero):
    n = x.size
    i = cuda.blockIdx.x * (THREADS * UNROLL) + cuda.threadIdx.x
    step = cuda.gridDim.x * (THREADS * UNROLL)
    while i < n:
        if i + (UNROLL - 1) * THREADS < n:
            v0 = x[i]
            v1 = x[i + THREADS]
            v2 = x[i + 2 * THREADS]
            v3 = x[i + 3 * THREADS]
            y[i] = zero if v0 < zero else v0
            y[i + THREADS] = zero if v1 < zero else v1
            y[i + 2 * THREADS] = zero if v2 < zero else v2
            y[i + 3 * THREADS] = zero if v3 < zero else v3
        else:  # the ragged end
            for u in range(UNROLL):
                j = i + u * THREADS
                if j < n:
                    v = x[j]
                    y[j] = zero if v < zero else v
        i += step


@jit
def _relu_bwd(dy, y, dx, zero):
    """dx = 0 where y <= 0, else dy (NaN keeps its gradient, as in PyTorch)."""
    n = dy.size
    i = cuda.blockIdx.x * (THREADS * UNROLL) + cuda.threadIdx.x
    step = cuda.gridDim.x * (THREADS * UNROLL)
    while i < n:
        if i + (UNROLL - 1) * THREADS < n:
            y0 = y[i]
            y1 = y[i + THREADS]
            y2 = y[i + 2 * THREADS]
            y3 = y[i + 3 * THREADS]
            g0 = dy[i]
            g1 = dy[i + THREADS]
            g2 = dy[i + 2 * THREADS]
            g3 = dy[i + 3 * THREADS]
            dx[i] = zero if y0 <= zero else g0
            dx[i + THREADS] = zero if y1 <= zero else g1
            dx[i + 2 * THREADS] = zero if y2 <= zero else g2
            dx[i + 3 * THREADS] = zero if y3 <= zero else g3
        else:
            for u in range(UNROLL):
                j = i + u * THREADS
                if j < n:
                    dx[j] = zero if y[j] <= zero else dy[j]
        i += step


@jit
def _leaky_fwd(x, y, slope):
    i = cuda.grid(1)
    while i < x.size:
        v = x[i]
        y[i] = v if v > 0 else v * slope
        i += cuda.gridsize(1)


@jit
def _leaky_bwd(dy, x, dx, slope):
    i = cuda.grid(1)
    while i < dy.size:
        g = dy[i]
        dx[i] = g if x[i] > 0 else g * slope
        i += cuda.gridsize(1)


@jit
def _sigmoid_fwd(x, y, one):
    i = cuda.grid(1)
    while i < x.size:
        v = x[i]
        e = math.exp(-abs(v))  # never overflows
        y[i] = one / (one + e) if v >= 0 else e / (one + e)
        i += cuda.gridsize(1)


@jit
def _sigmoid_bwd(dy, y, dx, one):
    i = cuda.grid(1)
    while i < dy.size:
        v = y[i]
        dx[i] = dy[i] * v * (one - v)
        i += cuda.gridsize(1)


@jit
def _tanh_fwd(x, y):
    i = cuda.grid(1)
    while i < x.size:
        y[i] = math.tanh(x[i])
        i += cuda.gridsize(1)


@jit
def _tanh_bwd(dy, y, dx, one):
    i = cuda.grid(1)
    while i < dy.size:
        v = y[i]
        dx[i] = dy[i] * (one - v * v)
        i += cuda.gridsize(1)


@jit
def _gelu_fwd(x, y, tanh_approx, k):
    half, one, inv_sqrt2, inv_sqrt2pi, s2pi, c, c3 = k
    i = cuda.grid(1)
    while i < x.size:
        v = x[i]
        if tanh_approx:
            y[i] = half * v * (one + math.tanh(s2pi * (v + c * v * v * v)))
        else:
            y[i] = half * v * (one + math.erf(v * inv_sqrt2))
        i += cuda.gridsize(1)


@jit
def _gelu_bwd(dy, x, dx, tanh_approx, k):
    half, one, inv_sqrt2, inv_sqrt2pi, s2pi, c, c3 = k
    i = cuda.grid(1)
    while i < x.size:
        v = x[i]
        if tanh_approx:
            v2 = v * v
            th = math.tanh(s2pi * (v + c * v2 * v))
            d = half * (one + th) + half * v * (one - th * th) * (s2pi * (one + c3 * v2))
        else:
            d = half * (one + math.erf(v * inv_sqrt2)) + v * inv_sqrt2pi * math.exp(-half * v * v)
        dx[i] = dy[i] * d
        i += cuda.gridsize(1)


def _grad_pair(op, dy, other, name):
    dy = C.array(op, "dy", dy, device=DEVICE)
    other = C.array(op, name, other, device=DEVICE)
    C.same_device(op, dy=dy, **{name: other})
    C.same_shape(op, "dy", dy, name, other)
    C.same_dtype(op, dy=dy, **{name: other})
    return dy, other


def _typed(t, consts):
    """Kernel scalars: floats in the array's dtype, flags as ints, tuples as given."""
    return [c if isinstance(c, tuple) else int(c) if isinstance(c, bool) else t(c) for c in consts]


def _unary(kernel, x, *consts, per_thread=1):
    """y = kernel(x) for a validated x; ``consts`` are converted to x's dtype."""
    L = Launch(x)
    y = L.empty(x.shape, x.dtype)
    if y.size:
        t = x.dtype.type
        kernel[blocks(y.size, THREADS * per_thread), THREADS, L.stream](L.dev(x), L.out(y), *_typed(t, consts))
    return L.done(y)


def _binary(kernel, dy, other, *consts, per_thread=1):
    """dx = kernel(dy, other) for a validated pair."""
    L = Launch(dy)
    dx = L.empty(dy.shape, dy.dtype)
    if dx.size:
        t = dy.dtype.type
        kernel[blocks(dx.size, THREADS * per_thread), THREADS, L.stream](
            L.dev(dy), L.dev(other), L.out(dx), *_typed(t, consts))
    return L.done(dx)


def _x(op, x):
    return C.array(op, "x", x, device=DEVICE)


def relu_forward(x):
    """y = max(x, 0); NaN passes through."""
    return _unary(_relu_fwd, _x("relu_forward", x), 0, per_thread=UNROLL)


def relu_backward(dy, y):
    """dx = 0 where y <= 0 (the forward output), else dy."""
    return _binary(_relu_bwd, *_grad_pair("relu_backward", dy, y, "y"), 0, per_thread=UNROLL)


def leaky_relu_forward(x, negative_slope):
    op = "leaky_relu_forward"
    x = _x(op, x)
    return _unary(_leaky_fwd, x, C.number(op, "negative_slope", negative_slope))


def leaky_relu_backward(dy, x, negative_slope):
    """dx = dy where x > 0, else negative_slope * dy (PyTorch's rule at 0)."""
    op = "leaky_relu_backward"
    dy, x = _grad_pair(op, dy, x, "x")
    return _binary(_leaky_bwd, dy, x, C.number(op, "negative_slope", negative_slope))


def sigmoid_forward(x):
    return _unary(_sigmoid_fwd, _x("sigmoid_forward", x), 1)


def sigmoid_backward(dy, y):
    return _binary(_sigmoid_bwd, *_grad_pair("sigmoid_backward", dy, y, "y"), 1)


def tanh_forward(x):
    return _unary(_tanh_fwd, _x("tanh_forward", x))


def tanh_backward(dy, y):
    return _binary(_tanh_bwd, *_grad_pair("tanh_backward", dy, y, "y"), 1)


_GELU_K = (0.5, 1.0, _INV_SQRT_2, _INV_SQRT_2PI, _SQRT_2_OVER_PI, _GELU_C, 3 * _GELU_C)


def gelu_forward(x, approximate):
    """x * Phi(x) ('none', exact erf) or the tanh approximation ('tanh')."""
    op = "gelu_forward"
    x = _x(op, x)
    approximate = C.choice(op, "approximate", approximate, ("none", "tanh"))
    t = x.dtype.type
    return _unary(_gelu_fwd, x, approximate == "tanh", tuple(t(v) for v in _GELU_K))


def gelu_backward(dy, x, approximate):
    op = "gelu_backward"
    dy, x = _grad_pair(op, dy, x, "x")
    approximate = C.choice(op, "approximate", approximate, ("none", "tanh"))
    t = x.dtype.type
    return _binary(_gelu_bwd, dy, x, approximate == "tanh", tuple(t(v) for v in _GELU_K))


# ------------------------------------------------------------------ row softmax


@jit
def _softmax_rows(x, y, nrows, L, log, ninf, zero):
    """One row per threadIdx.y, LANES threads along it: max, sum(exp), write."""
    sm = cuda.shared.array((ROWS, LANES), dtype=y.dtype)
    lane = cuda.threadIdx.x
    # every thread of the block runs the same number of iterations (syncthreads inside)
    for row0 in range(cuda.blockIdx.x * ROWS, nrows, cuda.gridDim.x * ROWS):
        row = row0 + cuda.threadIdx.y
        base = row * L
        m, s = row_max_sumexp(x, base, L, row < nrows, sm, ninf, zero)
        if row < nrows:
            if log:
                ls = math.log(s)
                for j in range(lane, L, LANES):
                    y[base + j] = (x[base + j] - m) - ls
            else:
                for j in range(lane, L, LANES):
                    y[base + j] = math.exp(x[base + j] - m) / s


@jit
def _softmax_rows_bwd(dy, y, dx, nrows, L, log, zero):
    """softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy)."""
    sm = cuda.shared.array((ROWS, LANES), dtype=dx.dtype)
    lane = cuda.threadIdx.x
    for row0 in range(cuda.blockIdx.x * ROWS, nrows, cuda.gridDim.x * ROWS):
        row = row0 + cuda.threadIdx.y
        base = row * L
        s = zero
        if row < nrows:
            for j in range(lane, L, LANES):
                if log:
                    s += dy[base + j]
                else:
                    s += dy[base + j] * y[base + j]
        s = lanes_sum(sm, s)
        if row < nrows:
            for j in range(lane, L, LANES):
                if log:
                    dx[base + j] = dy[base + j] - math.exp(y[base + j]) * s
                else:
                    dx[base + j] = y[base + j] * (dy[base + j] - s)


def _axis(op, axis, ndim):
    axis = C.integer(op, "axis", axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: argument 'axis' {axis} is out of range for a {ndim}-D array")
    return axis % ndim


def _rows(L, a, axis):
    """``a`` with ``axis`` moved last, C-contiguous (a view when it already is last)."""
    return L.xp.ascontiguousarray(L.xp.moveaxis(a, axis, -1))


def _row_grid(nrows):
    return blocks(nrows, ROWS)


def _softmax_forward(op, x, axis, log):
    x = C.array(op, "x", x, min_ndim=1, device=DEVICE)
    axis = _axis(op, axis, x.ndim)
    L = Launch(x)
    if x.size == 0:
        return L.empty(x.shape, x.dtype)
    xr = _rows(L, x, axis)
    yr = L.empty(xr.shape, x.dtype)
    n = xr.shape[-1]
    nrows = xr.size // n
    t = x.dtype.type
    _softmax_rows[_row_grid(nrows), (LANES, ROWS), L.stream](
        L.dev(xr), L.out(yr), nrows, n, int(log), t(-math.inf), t(0))
    L.done()
    return L.xp.ascontiguousarray(L.xp.moveaxis(yr, -1, axis))


def _softmax_backward(op, dy, y, axis, log):
    dy, y = _grad_pair(op, dy, y, "y")
    if y.ndim < 1:
        raise ValueError(f"{op}: argument 'y' must have at least 1 dimension, got shape {tuple(y.shape)}")
    axis = _axis(op, axis, y.ndim)
    L = Launch(dy)
    if y.size == 0:
        return L.empty(y.shape, y.dtype)
    dyr, yr = _rows(L, dy, axis), _rows(L, y, axis)
    dxr = L.empty(yr.shape, y.dtype)
    n = yr.shape[-1]
    nrows = yr.size // n
    _softmax_rows_bwd[_row_grid(nrows), (LANES, ROWS), L.stream](
        L.dev(dyr), L.dev(yr), L.out(dxr), nrows, n, int(log), y.dtype.type(0))
    L.done()
    return L.xp.ascontiguousarray(L.xp.moveaxis(dxr, -1, axis))


def softmax_forward(x, axis):
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    return _softmax_forward("softmax_forward", x, axis, False)


def softmax_backward(dy, y, axis):
    """dx = y * (dy - sum(dy * y)), y the softmax output."""
    return _softmax_backward("softmax_backward", dy, y, axis, False)


def log_softmax_forward(x, axis):
    """x - max - log(sum(exp(x - max))) along ``axis``."""
    return _softmax_forward("log_softmax_forward", x, axis, True)


def log_softmax_backward(dy, y, axis):
    """dx = dy - exp(y) * sum(dy), y the log-softmax output."""
    return _softmax_backward("log_softmax_backward", dy, y, axis, True)
