# cython: language_level=3
"""2-D pooling on the CPU: direct loops, OpenMP over the N*C planes.

Results follow PyTorch exactly: max-pool ``argmax`` is the flat index h*W + w
into the input plane, the first maximum in window order wins and a NaN wins
over numbers (PyTorch's ``val > max || isnan(val)`` rule, so the last NaN of a
window is reported); average pooling uses PyTorch's divisor (windows clipped
to the padded input, ``count_include_pad``, ``ceil_mode``); adaptive pooling
uses the bins [floor(i*H/oh), ceil((i+1)*H/oh)).
Sums are accumulated in float64.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport isnan, INFINITY

from .. import _checks as CK
from ..reference import pool as RP
from ..reference.pool import _x_shape
from ._threads import num_threads

cnp.import_array()

__all__ = [
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
]

ctypedef fused real:
    float
    double

ctypedef struct Win:
    Py_ssize_t planes
    int H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, include_pad

cdef Py_ssize_t GRAIN = 1 << 15  # window taps per thread below which one thread is used


cdef inline void* _ptr(a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef Win _win(x_shape, out_hw, kernel, stride, padding, dilation, bint include_pad):
    cdef Win w
    w.planes = <Py_ssize_t>x_shape[0] * x_shape[1]
    w.H, w.W = x_shape[2], x_shape[3]
    w.P, w.Q = out_hw
    w.kh, w.kw = kernel
    w.sh, w.sw = stride
    w.ph, w.pw = padding
    w.dh, w.dw = dilation
    w.include_pad = include_pad
    return w


# ---------------------------------------------------------------- max pool
cdef void _max_fwd_plane(const real* x, real* y, cnp.int64_t* idx, const Win* g, Py_ssize_t pl) noexcept nogil:
    cdef const real* xp = x + pl * g.H * g.W
    cdef real* yp = y + pl * g.P * g.Q
    cdef cnp.int64_t* ip = idx + pl * g.P * g.Q
    cdef int p, q, ih, iw, h0, h1, w0, w1, best
    cdef real v, m
    for p in range(g.P):
        h0 = p * g.sh - g.ph
        h1 = min(h0 + (g.kh - 1) * g.dh + 1, g.H)
        while h0 < 0:
            h0 += g.dh
        for q in range(g.Q):
            w0 = q * g.sw - g.pw
            w1 = min(w0 + (g.kw - 1) * g.dw + 1, g.W)
            while w0 < 0:
                w0 += g.dw
            best = h0 * g.W + w0
            m = -INFINITY
            ih = h0
            while ih < h1:
                iw = w0
                while iw < w1:
                    v = xp[ih * g.W + iw]
                    if v > m or isnan(v):
                        m = v
                        best = ih * g.W + iw
                    iw = iw + g.dw
                ih = ih + g.dh
            yp[p * g.Q + q] = m
            ip[p * g.Q + q] = best


cdef void _max_fwd(const real* x, real* y, cnp.int64_t* idx, const Win* g, int nt) noexcept nogil:
    cdef Py_ssize_t pl
    for pl in prange(g.planes, num_threads=nt, schedule="static"):
        _max_fwd_plane(x, y, idx, g, pl)


cdef int _max_bwd(const real* dy, const cnp.int64_t* idx, real* dx, Py_ssize_t planes,
                  Py_ssize_t pq, Py_ssize_t hw, int nt) noexcept nogil:
    """Returns the number of out-of-range indices (skipped)."""
    cdef Py_ssize_t pl, i, j
    cdef int bad = 0
    for pl in prange(planes, num_threads=nt, schedule="static"):
        for i in range(pq):
            j = idx[pl * pq + i]
            if j < 0 or j >= hw:
                bad += 1
            else:
                dx[pl * hw + j] += dy[pl * pq + i]
    return bad


def max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode):
    """(y, argmax): window maxima and their flat indices h*W + w (int64), like PyTorch."""
    op = "max_pool2d_forward"
    x = CK.array(op, "x", x, ndim=4, device="cpu")
    kernel, stride, padding, dilation, out_hw = CK.pool2d_geometry(
        op, x.shape, kernel_size, stride, padding, dilation, bool(ceil_mode))
    N, C = x.shape[:2]
    y = np.empty((N, C) + out_hw, dtype=x.dtype)
    idx = np.empty((N, C) + out_hw, dtype=np.int64)
    if y.size == 0:
        return y, idx
    cdef Win g = _win(x.shape, out_hw, kernel, stride, padding, dilation, 0)
    cdef int nt = num_threads(y.size * kernel[0] * kernel[1], GRAIN)
    cdef void* px = _ptr(x)
    cdef void* py = _ptr(y)
    cdef cnp.int64_t* pi = <cnp.int64_t*>_ptr(idx)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _max_fwd(<float*>px, <float*>py, pi, &g, nt)
        else:
            _max_fwd(<double*>px, <double*>py, pi, &g, nt)
    return y, idx


def max_pool2d_backward(dy, argmax, x_shape):
    """dx: each dy routed to its argmax (indices repeated by overlapping windows add up)."""
    op = "max_pool2d_backward"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    argmax = CK.array(op, "argmax", argmax, ndim=4, dtypes=CK.INDEX_DTYPES, device="cpu")
    CK.same_shape(op, "dy", dy, "argmax", argmax)
    x_shape = _x_shape(op, x_shape)
    if tuple(dy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; expected (N, C) = {tuple(x_shape[:2])} from x_shape")
    argmax = argmax.astype(np.int64, copy=False)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    if dy.size == 0:
        return dx
    cdef Py_ssize_t planes = dy.shape[0] * dy.shape[1]
    cdef Py_ssize_t pq = dy.shape[2] * dy.shape[3], hw = x_shape[2] * x_shape[3]
    cdef int nt = num_threads(dy.size, GRAIN)
    cdef void* pdy = _ptr(dy)
    cdef void* pdx = _ptr(dx)
    cdef cnp.int64_t* pi = <cnp.int64_t*>_ptr(argmax)
    cdef bint is32 = dy.dtype == np.float32
    cdef int bad
    with nogil:
        if is32:
            bad = _max_bwd(<float*>pdy, pi, <float*>pdx, planes, pq, hw, nt)
        else:
            bad = _max_bwd(<double*>pdy, pi, <double*>pdx, planes, pq, hw, nt)
    if bad:
        raise ValueError(f"{op}: argument 'argmax' has {bad} indices outside the input plane [0, {hw}) of x_shape {x_shape}")
    return dx


# ---------------------------------------------------------------- average pool
cdef inline int _avg_window(const Win* g, int p, int q, int* h0, int* h1, int* w0, int* w1) noexcept nogil:
    """Clip the window of output (p, q); returns PyTorch's divisor (0: empty window)."""
    cdef int a = p * g.sh - g.ph, b = q * g.sw - g.pw
    cdef int ae = min(a + g.kh, g.H + g.ph), be = min(b + g.kw, g.W + g.pw)
    cdef int pool = (ae - a) * (be - b)
    h0[0] = max(a, 0)
    w0[0] = max(b, 0)
    h1[0] = min(ae, g.H)
    w1[0] = min(be, g.W)
    if h0[0] >= h1[0] or w0[0] >= w1[0]:
        return 0
    return pool if g.include_pad else (h1[0] - h0[0]) * (w1[0] - w0[0])


cdef void _avg_fwd_plane(const real* x, real* y, const Win* g, Py_ssize_t pl) noexcept nogil:
    cdef const real* xp = x + pl * g.H * g.W
    cdef real* yp = y + pl * g.P * g.Q
    cdef int p, q, ih, iw, h0, h1, w0, w1, div
    cdef double s
    for p in range(g.P):
        for q in range(g.Q):
            div = _avg_window(g, p, q, &h0, &h1, &w0, &w1)
            if div == 0:
                yp[p * g.Q + q] = 0
                continue
            s = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s = s + xp[ih * g.W + iw]
            yp[p * g.Q + q] = <real>(s / div)


cdef void _avg_bwd_plane(const real* dy, real* dx, const Win* g, Py_ssize_t pl) noexcept nogil:
    cdef real* xp = dx + pl * g.H * g.W
    cdef const real* yp = dy + pl * g.P * g.Q
    cdef int p, q, ih, iw, h0, h1, w0, w1, div
    cdef real v
    for p in range(g.P):
        for q in range(g.Q):
            div = _avg_window(g, p, q, &h0, &h1, &w0, &w1)
            if div == 0:
                continue
            v = <real>(yp[p * g.Q + q] / <double>div)
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    xp[ih * g.W + iw] += v


cdef void _avg_fwd(const real* x, real* y, const Win* g, int nt) noexcept nogil:
    cdef Py_ssize_t pl
    for pl in prange(g.planes, num_threads=nt, schedule="static"):
        _avg_fwd_plane(x, y, g, pl)


cdef void _avg_bwd(const real* dy, real* dx, const Win* g, int nt) noexcept nogil:
    cdef Py_ssize_t pl
    for pl in prange(g.planes, num_threads=nt, schedule="static"):
        _avg_bwd_plane(dy, dx, g, pl)


def _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    kernel, stride, padding, _, out_hw = CK.pool2d_geometry(
        op, x_shape, kernel_size, stride, padding, 1, bool(ceil_mode))
    return kernel, stride, padding, out_hw, bool(count_include_pad)


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """y: window means with PyTorch's divisor."""
    op = "avg_pool2d_forward"
    x = CK.array(op, "x", x, ndim=4, device="cpu")
    kernel, stride, padding, out_hw, inc = _avg_geometry(op, x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    y = np.empty(x.shape[:2] + out_hw, dtype=x.dtype)
    if y.size == 0:
        return y
    cdef Win g = _win(x.shape, out_hw, kernel, stride, padding, (1, 1), inc)
    cdef int nt = num_threads(y.size * kernel[0] * kernel[1], GRAIN)
    cdef void* px = _ptr(x)
    cdef void* py = _ptr(y)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _avg_fwd(<float*>px, <float*>py, &g, nt)
        else:
            _avg_fwd(<double*>px, <double*>py, &g, nt)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """dx: each dy spread evenly (dy / divisor) over its clipped window."""
    op = "avg_pool2d_backward"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    x_shape = _x_shape(op, x_shape)
    kernel, stride, padding, out_hw, inc = _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    if tuple(dy.shape) != tuple(x_shape[:2]) + tuple(out_hw):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; this geometry gives {tuple(x_shape[:2]) + tuple(out_hw)}")
    dx = np.zeros(x_shape, dtype=dy.dtype)
    if dy.size == 0:
        return dx
    cdef Win g = _win(x_shape, out_hw, kernel, stride, padding, (1, 1), inc)
    cdef int nt = num_threads(dy.size * kernel[0] * kernel[1], GRAIN)
    cdef void* pdy = _ptr(dy)
    cdef void* pdx = _ptr(dx)
    cdef bint is32 = dy.dtype == np.float32
    with nogil:
        if is32:
            _avg_bwd(<float*>pdy, <float*>pdx, &g, nt)
        else:
            _avg_bwd(<double*>pdy, <double*>pdx, &g, nt)
    return dx


# ---------------------------------------------------------------- adaptive average pool
cdef void _adapt_fwd_plane(const real* x, real* y, const Win* g, Py_ssize_t pl) noexcept nogil:
    cdef const real* xp = x + pl * g.H * g.W
    cdef real* yp = y + pl * g.P * g.Q
    cdef int p, q, ih, iw, h0, h1, w0, w1
    cdef double s
    for p in range(g.P):
        h0 = (p * g.H) // g.P
        h1 = ((p + 1) * g.H + g.P - 1) // g.P
        for q in range(g.Q):
            w0 = (q * g.W) // g.Q
            w1 = ((q + 1) * g.W + g.Q - 1) // g.Q
            s = 0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    s = s + xp[ih * g.W + iw]
            yp[p * g.Q + q] = <real>(s / ((h1 - h0) * (w1 - w0)))


cdef void _adapt_bwd_plane(const real* dy, real* dx, const Win* g, Py_ssize_t pl) noexcept nogil:
    cdef real* xp = dx + pl * g.H * g.W
    cdef const real* yp = dy + pl * g.P * g.Q
    cdef int p, q, ih, iw, h0, h1, w0, w1
    cdef real v
    for p in range(g.P):
        h0 = (p * g.H) // g.P
        h1 = ((p + 1) * g.H + g.P - 1) // g.P
        for q in range(g.Q):
            w0 = (q * g.W) // g.Q
            w1 = ((q + 1) * g.W + g.Q - 1) // g.Q
            v = <real>(yp[p * g.Q + q] / <double>((h1 - h0) * (w1 - w0)))
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    xp[ih * g.W + iw] += v


cdef void _adapt_fwd(const real* x, real* y, const Win* g, int nt) noexcept nogil:
    cdef Py_ssize_t pl
    for pl in prange(g.planes, num_threads=nt, schedule="static"):
        _adapt_fwd_plane(x, y, g, pl)


cdef void _adapt_bwd(const real* dy, real* dx, const Win* g, int nt) noexcept nogil:
    cdef Py_ssize_t pl
    for pl in prange(g.planes, num_threads=nt, schedule="static"):
        _adapt_bwd_plane(dy, dx, g, pl)


def adaptive_avg_pool2d_forward(x, output_size):
    """y (N, C, oh, ow): means over PyTorch's adaptive bins; ``None`` keeps that input size."""
    x, out_hw = RP.check_adaptive_avg_pool2d_forward(x, output_size, device="cpu")
    y = np.empty(x.shape[:2] + out_hw, dtype=x.dtype)
    if y.size == 0:
        return y
    cdef Win g = _win(x.shape, out_hw, (1, 1), (1, 1), (0, 0), (1, 1), 0)
    cdef int nt = num_threads(x.size, GRAIN)
    cdef void* px = _ptr(x)
    cdef void* py = _ptr(y)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _adapt_fwd(<float*>px, <float*>py, &g, nt)
        else:
            _adapt_fwd(<double*>px, <double*>py, &g, nt)
    return y


def adaptive_avg_pool2d_backward(dy, x_shape):
    """dx: each dy spread evenly over its adaptive bin (output size read from dy)."""
    dy, x_shape = RP.check_adaptive_avg_pool2d_backward(dy, x_shape, device="cpu")
    dx = np.zeros(x_shape, dtype=dy.dtype)
    if dy.size == 0:
        return dx
    cdef Win g = _win(x_shape, dy.shape[2:], (1, 1), (1, 1), (0, 0), (1, 1), 0)
    cdef int nt = num_threads(dx.size, GRAIN)
    cdef void* pdy = _ptr(dy)
    cdef void* pdx = _ptr(dx)
    cdef bint is32 = dy.dtype == np.float32
    with nogil:
        if is32:
            _adapt_bwd(<float*>pdy, <float*>pdx, &g, nt)
        else:
            _adapt_bwd(<double*>pdy, <double*>pdx, &g, nt)
    return dx
