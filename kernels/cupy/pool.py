"""Pooling on the GPU (pool.cu): one pass per output, gather-form backward
(deterministic: each input pixel sums the windows that used it, in order).

max_pool2d_backward expects the argmax produced by max_pool2d_forward (every
index inside its own window); out-of-window indices receive no gradient.
"""
import cupy
import numpy as np

from .. import _checks as C
from ..reference import pool as RP
from ..reference.pool import _x_shape
from . import _module as M

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
]


def kernel_names():
    names = ("maxpool_fwd", "maxpool_bwd_ranges", "maxpool_bwd_atomic", "avgpool_fwd", "avgpool_bwd",
             "adaptive_avg_fwd", "adaptive_avg_bwd")
    out = [("pool.cu", f"{n}<{t}>", False) for t in ("float", "double") for n in names]
    return out + [("pool.cu", "maxpool_bounds", False), ("pool.cu", "maxpool_ranges", False)]


def _fn(name, dtype):
    return M.function("pool.cu", f"{name}<{M.ctype(dtype)}>")


def _check_dy(op, dy, expected):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; this geometry gives {tuple(expected)}")


def _i32s(*vals):
    return tuple(M.i32(v) for v in vals)


def _launch(name, dtype, total, args):
    if total > 0:
        M.launch(_fn(name, dtype), M.blocks_for(total), M.THREADS, args)


# ---------------------------------------------------------------- max pooling

def _max_geometry(op, x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    return C.pool2d_geometry(op, x_shape, kernel_size, stride, padding, dilation, bool(ceil_mode))


_RANGES = {}


def _window_ranges(H, P, k, s, p, d):
    """int32 (first, last) per input row h: the output rows whose window (k taps, stride
    s, padding p, dilation d) spans h, first..last inclusive (first > last: none).  Cached."""
    key = (H, P, k, s, p, d)
    hit = _RANGES.get(key)
    if hit is None:
        h = np.arange(H, dtype=np.int64) + p
        ext = (k - 1) * d + 1
        first = np.where(h < ext, 0, (h - ext) // s + 1)
        last = np.minimum(h // s + 1, P) - 1
        hit = _RANGES[key] = tuple(cupy.asarray(v.astype(np.int32)) for v in (first, last))
    return hit


def max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode):
    """(y, argmax int64 flat h*W + w); first maximum wins, NaN wins (like PyTorch)."""
    op = "max_pool2d_forward"
    x = C.array(op, "x", x, ndim=4, device="cuda")
    k, s, p, d, (P, Q) = _max_geometry(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    N, Cc, H, W = x.shape
    y = cupy.empty((N, Cc, P, Q), dtype=x.dtype)
    arg = cupy.empty((N, Cc, P, Q), dtype=cupy.int64)
    geo = _i32s(N * Cc, H, W, P, Q, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    _launch("maxpool_fwd", x.dtype, y.size, (x, y, arg) + geo)
    return y, arg


def max_pool2d_backward(dy, argmax, x_shape, kernel_size=None, stride=None, padding=0, dilation=1,
                        ceil_mode=False, deterministic=None):
    """dx: dy summed into the argmax positions.

    The contract passes only (dy, argmax, x_shape).  Given the forward's window
    geometry as extra keywords (``kernel_size``, ``stride``, ...), each input
    pixel gathers from the windows that can contain it.  Without it, the
    candidate windows are bounded from the argmax itself (a min/max pass over
    it, then the same gather): deterministic and exact for any argmax.
    ``deterministic=False`` (default: ``not fastconv.config.deterministic``)
    scatters with atomicAdd instead.
    """
    op = "max_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4, device="cuda")
    argmax = C.array(op, "argmax", argmax, ndim=4, dtypes=C.INDEX_DTYPES, device="cuda")
    C.same_shape(op, "dy", dy, "argmax", argmax)
    N, Cc, H, W = _x_shape(op, x_shape)
    if tuple(dy.shape[:2]) != (N, Cc):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; expected (N, C) = {(N, Cc)} from x_shape")
    P, Q = dy.shape[2], dy.shape[3]
    if kernel_size is not None:
        k, s, p, d, out_hw = _max_geometry(op, (N, Cc, H, W), kernel_size, stride, padding, dilation, ceil_mode)
        _check_dy(op, dy, (N, Cc) + tuple(out_hw))
    if argmax.dtype != cupy.int64:
        argmax = argmax.astype(cupy.int64)
    if kernel_size is not None:
        dx = cupy.empty((N, Cc, H, W), dtype=dy.dtype)
        if dx.size == 0:
            return dx
        # window ranges per input row / column from the geometry (cached): the gather
        # kernel then does no divisions for them
        pf, pl = _window_ranges(H, P, k[0], s[0], p[0], d[0])
        qf, ql = _window_ranges(W, Q, k[1], s[1], p[1], d[1])
        _launch("maxpool_bwd_ranges", dy.dtype, dx.size, (dy, argmax, dx, pf, pl, qf, ql) + _i32s(N * Cc, H, W, P, Q))
        return dx
    if deterministic is None:
        from fastconv import config

        deterministic = config.deterministic
    if not deterministic:
        dx = cupy.zeros((N, Cc, H, W), dtype=dy.dtype)
        _launch("maxpool_bwd_atomic", dy.dtype, dy.size, (dy, argmax, dx) + _i32s(N * Cc, H * W, P * Q))
        return dx
    dx = cupy.empty((N, Cc, H, W), dtype=dy.dtype)
    if dx.size == 0:
        return dx
    NC = N * Cc
    if NC == 0 or P * Q == 0:
        dx.fill(0)
        return dx
    big = 2**31 - 1
    rlo, rhi = cupy.full(P, big, dtype=cupy.int32), cupy.full(P, -1, dtype=cupy.int32)
    clo, chi = cupy.full(Q, big, dtype=cupy.int32), cupy.full(Q, -1, dtype=cupy.int32)
    chunk = max(64, -(-NC // 65535))  # grid.y <= 65535
    threads = min(M.THREADS, -(-Q // 32) * 32)
    M.launch(M.function("pool.cu", "maxpool_bounds"), (P, -(-NC // chunk)), threads,
             (argmax, rlo, rhi, clo, chi) + _i32s(NC, W, H * W, P, Q, chunk))
    pf, pl = cupy.empty(H, dtype=cupy.int32), cupy.empty(H, dtype=cupy.int32)
    qf, ql = cupy.empty(W, dtype=cupy.int32), cupy.empty(W, dtype=cupy.int32)
    rng = M.function("pool.cu", "maxpool_ranges")
    M.launch(rng, -(-H // M.THREADS), M.THREADS, (rlo, rhi, pf, pl) + _i32s(P, H))
    M.launch(rng, -(-W // M.THREADS), M.THREADS, (clo, chi, qf, ql) + _i32s(Q, W))
    _launch("maxpool_bwd_ranges", dy.dtype, dx.size, (dy, argmax, dx, pf, pl, qf, ql) + _i32s(NC, H, W, P, Q))
    return dx


# ------------------------------------------------------------ average pooling

def _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode):
    k, s, p, _, out_hw = C.pool2d_geometry(op, x_shape, kernel_size, stride, padding, 1, bool(ceil_mode))
    return k, s, p, out_hw


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """y: window means with PyTorch's divisor (padded window, or in-plane taps only)."""
    op = "avg_pool2d_forward"
    x = C.array(op, "x", x, ndim=4, device="cuda")
    k, s, p, (P, Q) = _avg_geometry(op, x.shape, kernel_size, stride, padding, ceil_mode)
    N, Cc, H, W = x.shape
    y = cupy.empty((N, Cc, P, Q), dtype=x.dtype)
    geo = _i32s(N * Cc, H, W, P, Q, k[0], k[1], s[0], s[1], p[0], p[1], 1 if count_include_pad else 0)
    _launch("avgpool_fwd", x.dtype, y.size, (x, y) + geo)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """dx: each input pixel gathers dy / divisor from the windows containing it."""
    op = "avg_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4, device="cuda")
    N, Cc, H, W = _x_shape(op, x_shape)
    k, s, p, (P, Q) = _avg_geometry(op, (N, Cc, H, W), kernel_size, stride, padding, ceil_mode)
    _check_dy(op, dy, (N, Cc, P, Q))
    dx = cupy.empty((N, Cc, H, W), dtype=dy.dtype)
    geo = _i32s(N * Cc, H, W, P, Q, k[0], k[1], s[0], s[1], p[0], p[1], 1 if count_include_pad else 0)
    _launch("avgpool_bwd", dy.dtype, dx.size, (dy, dx) + geo)
    return dx


# --------------------------------------------------- adaptive average pooling

def adaptive_avg_pool2d_forward(x, output_size):
    """y (N, C, oh, ow): means over bins [floor(i*H/oh), ceil((i+1)*H/oh))."""
    x, (oh, ow) = RP.check_adaptive_avg_pool2d_forward(x, output_size, device="cuda")
    N, Cc, H, W = x.shape
    y = cupy.empty((N, Cc, oh, ow), dtype=x.dtype)
    _launch("adaptive_avg_fwd", x.dtype, y.size, (x, y) + _i32s(N * Cc, H, W, oh, ow))
    return y


def adaptive_avg_pool2d_backward(dy, x_shape):
    """dx: each input pixel gathers dy / bin size from the bins containing it."""
    dy, (N, Cc, H, W) = RP.check_adaptive_avg_pool2d_backward(dy, x_shape, device="cuda")
    oh, ow = dy.shape[2], dy.shape[3]
    dx = cupy.empty((N, Cc, H, W), dtype=dy.dtype)
    _launch("adaptive_avg_bwd", dy.dtype, dx.size, (dy, dx) + _i32s(N * Cc, H, W, oh, ow))
    return dx
