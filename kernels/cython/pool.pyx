# cython: language_level=3
# distutils: depends = kernels/cython/_pool_impl.h kernels/cython/_pool_avg_impl.h
"""2-D pooling on the CPU: SIMD loops in ``_pool_impl.h`` (OpenMP over planes / row blocks).

Results follow PyTorch exactly: max-pool ``argmax`` is the flat index h*W + w
into the input plane, the first maximum in window order wins and a NaN wins
over numbers (PyTorch's ``val > max || isnan(val)`` rule, so the last NaN of a
window is reported); average pooling uses PyTorch's divisor (windows clipped
to the padded input, ``count_include_pad``, ``ceil_mode``); adaptive pooling
uses the bins [floor(i*H/oh), ceil((i+1)*H/oh)) (bins that tile the input run the
average-pool kernel; a 1x1 output is one reduction per plane).
Average-pool sums are accumulated in the input type in window order, like PyTorch's
CPU kernel; global pooling sums blocks of 256 and adds the blocks in float64; the
general adaptive path (separable row / column bin sums) accumulates in float64.
"""
import numpy as np
cimport numpy as cnp

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

cdef extern from "_pool_impl.h" nogil:
    ctypedef struct Win "fc_pool_geom":
        Py_ssize_t planes
        int H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, include_pad
    int fc_max_fwd_f32(const float*, float*, cnp.int64_t*, const Win*, int)
    int fc_max_fwd_f64(const double*, double*, cnp.int64_t*, const Win*, int)
    Py_ssize_t fc_max_bwd_f32(const float*, const cnp.int64_t*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, int)
    Py_ssize_t fc_max_bwd_f64(const double*, const cnp.int64_t*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, int)
    int fc_avg_f32(const float*, float*, const Win*, int, int)
    int fc_avg_f64(const double*, double*, const Win*, int, int)
    void fc_gap_f32(const float*, float*, Py_ssize_t, Py_ssize_t, int, int)
    void fc_gap_f64(const double*, double*, Py_ssize_t, Py_ssize_t, int, int)
    int fc_adapt_f32(const float*, float*, const Win*, int, int)
    int fc_adapt_f64(const double*, double*, const Win*, int, int)
    int fc_pool_set_isa(int)
    int fc_pool_isa()

cdef Py_ssize_t GRAIN = 1 << 15  # window taps per thread below which one thread is used


def _simd_level(level=None):
    """The instruction-set level the pool loops run at: 2 AVX-512, 1 AVX2, 0 baseline x86-64.
    ``level`` (tests) caps it at that level; -1 restores the best this CPU runs."""
    if level is None:
        return fc_pool_isa()
    return fc_pool_set_isa(int(level))


cdef _raise(op, int err):
    if err == -2:
        raise ValueError(f"{op}: window span times input width is too large (2^31 or more elements)")
    if err:
        raise MemoryError(f"{op}: out of memory for the row buffers")


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
    cdef int err
    with nogil:
        if is32:
            err = fc_max_fwd_f32(<float*>px, <float*>py, pi, &g, nt)
        else:
            err = fc_max_fwd_f64(<double*>px, <double*>py, pi, &g, nt)
    _raise(op, err)
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
    dx = np.empty(x_shape, dtype=dy.dtype)  # each plane is zeroed by the thread that scatters into it
    if dx.size == 0:
        return dx
    cdef Py_ssize_t planes = dy.shape[0] * dy.shape[1]
    cdef Py_ssize_t pq = dy.shape[2] * dy.shape[3], hw = x_shape[2] * x_shape[3]
    cdef int nt = num_threads(dx.size, GRAIN)
    cdef void* pdy = _ptr(dy)
    cdef void* pdx = _ptr(dx)
    cdef cnp.int64_t* pi = <cnp.int64_t*>_ptr(argmax)
    cdef bint is32 = dy.dtype == np.float32
    cdef Py_ssize_t bad
    with nogil:
        if is32:
            bad = fc_max_bwd_f32(<float*>pdy, pi, <float*>pdx, planes, pq, hw, nt)
        else:
            bad = fc_max_bwd_f64(<double*>pdy, pi, <double*>pdx, planes, pq, hw, nt)
    if bad:
        raise ValueError(f"{op}: argument 'argmax' has {bad} indices outside the input plane [0, {hw}) of x_shape {x_shape}")
    return dx


# ---------------------------------------------------------------- average pool
cdef _avg_run(op, src, dst, Win g, bint bwd):
    """Average-pool forward (src x -> dst y) or backward (src dy -> dst dx) in C."""
    cdef int nt = num_threads(<Py_ssize_t>g.planes * g.P * g.Q * g.kh * g.kw, GRAIN)
    cdef void* ps = _ptr(src)
    cdef void* pd = _ptr(dst)
    cdef bint is32 = src.dtype == np.float32
    cdef int err
    with nogil:
        if is32:
            err = fc_avg_f32(<float*>ps, <float*>pd, &g, bwd, nt)
        else:
            err = fc_avg_f64(<double*>ps, <double*>pd, &g, bwd, nt)
    _raise(op, err)
    return dst


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
    return _avg_run(op, x, y, _win(x.shape, out_hw, kernel, stride, padding, (1, 1), inc), False)


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """dx: each dy spread evenly (dy / divisor) over its clipped window."""
    op = "avg_pool2d_backward"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    x_shape = _x_shape(op, x_shape)
    kernel, stride, padding, out_hw, inc = _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    if tuple(dy.shape) != tuple(x_shape[:2]) + tuple(out_hw):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; this geometry gives {tuple(x_shape[:2]) + tuple(out_hw)}")
    dx = np.empty(x_shape, dtype=dy.dtype)  # zeroed plane by plane in C
    if dx.size == 0:
        return dx
    return _avg_run(op, dy, dx, _win(x_shape, out_hw, kernel, stride, padding, (1, 1), inc), True)


# ---------------------------------------------------------------- adaptive average pool
cdef _gap_run(src, dst, Py_ssize_t planes, Py_ssize_t n, bint bwd):
    """Global average pool: one float64-accumulated reduction (or fill) per plane."""
    cdef int nt = num_threads(planes * n, GRAIN)
    cdef void* ps = _ptr(src)
    cdef void* pd = _ptr(dst)
    cdef bint is32 = src.dtype == np.float32
    with nogil:
        if is32:
            fc_gap_f32(<float*>ps, <float*>pd, planes, n, bwd, nt)
        else:
            fc_gap_f64(<double*>ps, <double*>pd, planes, n, bwd, nt)
    return dst


cdef _adapt_run(op, src, dst, Win g, bint bwd):
    """General adaptive bins (separable row / column passes in C)."""
    cdef int nt = num_threads(<Py_ssize_t>g.planes * g.H * g.W, GRAIN)
    cdef void* ps = _ptr(src)
    cdef void* pd = _ptr(dst)
    cdef bint is32 = src.dtype == np.float32
    cdef int err
    with nogil:
        if is32:
            err = fc_adapt_f32(<float*>ps, <float*>pd, &g, bwd, nt)
        else:
            err = fc_adapt_f64(<double*>ps, <double*>pd, &g, bwd, nt)
    _raise(op, err)
    return dst


def _uniform_bins(x_shape, out_hw):
    """Adaptive bins that tile the input exactly are average-pool windows: kernel = stride = H/oh."""
    H, W = x_shape[2:]
    oh, ow = out_hw
    if H % oh == 0 and W % ow == 0:
        return (H // oh, W // ow)
    return None


def adaptive_avg_pool2d_forward(x, output_size):
    """y (N, C, oh, ow): means over PyTorch's adaptive bins; ``None`` keeps that input size."""
    x, out_hw = RP.check_adaptive_avg_pool2d_forward(x, output_size, device="cpu")
    out_hw = tuple(out_hw)
    y = np.empty(x.shape[:2] + out_hw, dtype=x.dtype)
    if y.size == 0:
        return y
    if out_hw == (1, 1):
        return _gap_run(x, y, y.size, x.shape[2] * x.shape[3], False)
    k = _uniform_bins(x.shape, out_hw)
    if k is not None:
        return _avg_run("adaptive_avg_pool2d_forward", x, y, _win(x.shape, out_hw, k, k, (0, 0), (1, 1), 1), False)
    return _adapt_run("adaptive_avg_pool2d_forward", x, y, _win(x.shape, out_hw, (1, 1), (1, 1), (0, 0), (1, 1), 0), False)


def adaptive_avg_pool2d_backward(dy, x_shape):
    """dx: each dy spread evenly over its adaptive bin (output size read from dy)."""
    dy, x_shape = RP.check_adaptive_avg_pool2d_backward(dy, x_shape, device="cpu")
    out_hw = tuple(dy.shape[2:])
    if dy.size == 0:
        return np.zeros(x_shape, dtype=dy.dtype)
    if out_hw == (1, 1):
        return _gap_run(dy, np.empty(x_shape, dtype=dy.dtype), dy.size, x_shape[2] * x_shape[3], True)
    k = _uniform_bins(x_shape, out_hw)
    if k is not None:
        return _avg_run("adaptive_avg_pool2d_backward", dy, np.empty(x_shape, dtype=dy.dtype),
                        _win(x_shape, out_hw, k, k, (0, 0), (1, 1), 1), True)
    return _adapt_run("adaptive_avg_pool2d_backward", dy, np.empty(x_shape, dtype=dy.dtype),
                      _win(x_shape, out_hw, (1, 1), (1, 1), (0, 0), (1, 1), 0), True)
