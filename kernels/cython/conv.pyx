# cython: language_level=3
"""2-D convolution on the CPU: BLAS GEMM (SciPy's cython_blas) + OpenMP loops.

Algorithms (``algo=`` forces one; ``'auto'`` picks by shape):

``'1x1'``     1x1, stride 1, no padding: a GEMM straight on the input (no im2col):
              forward, backward-input and backward-weight through _conv_1x1.pxi's
              AVX-512 kernels (float32), else OpenBLAS per image and group.
``'gemm'``    im2col of a chunk of output rows (bounded by
              ``fastconv.config.workspace_bytes``) then GEMM; backward-input is
              GEMM + col2im, backward-weight a GEMM against im2col.  float32 with
              groups 1 on AVX-512 CPUs uses the packed path of ``_conv_gemm.pxi``
              instead (own 8x48 micro-kernel, ~115 GF/s a core against OpenBLAS's
              70-90 on these shapes; im2col straight into packed panels; columns
              span images; stride-1 layers with short rows skip im2col entirely).
``'direct'``  direct loops, OpenMP over (image, channel) planes: depthwise layers,
              where GEMMs are too thin to pay off (module ``_conv_direct``).
``'winograd'`` F(2x2, 3x3) for 3x3 / stride 1 / dilation 1 / groups 1, forward,
              backward-input and backward-weight (``'winograd4'``: F(4x4, 3x3),
              forward and backward-input); module
              ``_conv_winograd``, float32 error 5e-7 (F2) / 2.5e-6 (F4).
``'winograd5'`` F(2x2, 5x5) for 5x5 / stride 1 / dilation 1 / groups 1: forward,
              backward-input and backward-weight (backward ops: padding <= 4; module
              ``_conv_winograd5``), float32 error ~2e-6 forward, ~6e-6 backward-weight.
``'winograd_s2'`` forward of stride-2 convs with filters up to 8x8, dilation 1, groups 1,
              float32 on AVX-512F CPUs: the four phases of the padded input (and their
              2-pixel shifts for filters over 4x4) as a stride-1 conv with 2x2 filters,
              run as Winograd F(4x4, 2x2)
              (module ``_conv_wino_s2``; 3x3: 81C products per 16 outputs against 144C
              direct; float32 error ~1e-6); 7x7 / 8x8 filters as F(3x3, 4x4) on their
              4x4 phase filters (``_conv_wino_s2x``; stem: 48 products per output against
              147).  Forced elsewhere it raises ValueError.
``'auto'``    1x1 -> '1x1'; depthwise (C/groups = 1) -> 'direct'; 3x3
              stride 1 with C, K >= WINO_MIN_C -> 'winograd'; 5x5 stride 1 where
              ``_conv_winograd5.pick`` says so -> 'winograd5'; float32 3x3 stride 2
              or 5x5..8x8 stride 2 (e.g. the ResNet stem) forward where
              ``_conv_wino_s2.pick`` says so -> 'winograd_s2'; else 'gemm' (rules in
              ``_conv_select``).  With ``fastconv.config.autotune`` on, 'auto' times
              the eligible algorithms once per configuration instead (``_conv_tune``).

Threading: work is cut into independent items (image, group, chunk of rows or
channels); OpenMP threads take items, and each calls BLAS single-threaded on
its own workspace slice while SciPy's OpenBLAS is held at one thread
(``_BlasSerial``), so OpenMP and OpenBLAS threads never compete for the cores.
Backward-weight accumulates per-thread copies of dw and sums them.
Error: float32 GEMM and direct paths match the float64 result within a
relative error (||out - ref|| / ||ref||) of about 1e-7..1e-6 on the tests.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset, memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

include "_conv_common.pxi"
from .. import _checks as CK
from . import _conv_direct as _direct
from ._threads import blas_threads, num_threads
from . import _conv_tune as _tune
from ._conv_select import ALGOS, WINO_MIN_C, _setup, _s2_engine, _wino, _wino5, _ws2  # noqa: F401

cnp.import_array()

cdef extern from "_conv_act.h" nogil:
    void fc_conv_relu_f32(float* y, Py_ssize_t n, int nt)
    void fc_conv_relu_f64(double* y, Py_ssize_t n, int nt)

ACTIVATIONS = (None, "relu")


def _epilogue(y, activation):
    """The forward's activation, in place on y (after the algorithm stored y + bias)."""
    if activation is None or y.size == 0:
        return y
    cdef Py_ssize_t n = y.size
    cdef int nt = num_threads(n, 1 << 16)
    cdef void* p = _ptr(y)
    cdef bint is32 = y.dtype == np.float32
    with nogil:
        if is32:
            fc_conv_relu_f32(<float*>p, n, nt)
        else:
            fc_conv_relu_f64(<double*>p, n, nt)
    return y

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]

cdef inline void _gemm(char ta, char tb, int m, int n, int k, real alpha, real* a, int lda,
                       real* b, int ldb, real beta, real* c, int ldc) noexcept nogil:
    """Column-major GEMM C = alpha op(A) op(B) + beta C (row-major callers swap operands)."""
    if real is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)


# ---------------------------------------------------------------- im2col / col2im
cdef void _im2col(const real* x, real* col, const Geo* g, int c0, int c1, int p0, int p1) noexcept nogil:
    """Rows (c, r, s), c in [c0, c1), of the im2col matrix of one group, output rows [p0, p1)."""
    cdef int row, c, r, s, qa, qb, off, p, q, ih
    cdef real* dst = col
    cdef const real* src
    for c in range(c0, c1):
        for r in range(g.R):
            for s in range(g.S):
                _qrange(g, s, &qa, &qb, &off)
                for p in range(p0, p1):
                    ih = p * g.sh - g.ph + r * g.dh
                    if ih < 0 or ih >= g.H:
                        memset(dst, 0, g.Q * sizeof(real))
                    else:
                        src = x + (<Py_ssize_t>c * g.H + ih) * g.W + off
                        for q in range(qa):
                            dst[q] = 0
                        if g.sw == 1:
                            memcpy(dst + qa, src + qa, (qb - qa) * sizeof(real))
                        else:
                            for q in range(qa, qb):
                                dst[q] = src[q * g.sw]
                        for q in range(qb, g.Q):
                            dst[q] = 0
                    dst += g.Q


cdef void _col2im(const real* col, real* dx, const Geo* g, int c0, int c1, int p0, int p1) noexcept nogil:
    """dx[c] += rows (c, :, :), c in [c0, c1), of a column matrix for output rows [p0, p1)."""
    cdef int c, r, s, p, q, ih, qa, qb, off
    cdef const real* src = col
    cdef real* dst
    for c in range(c0, c1):
        for r in range(g.R):
            for s in range(g.S):
                _qrange(g, s, &qa, &qb, &off)
                for p in range(p0, p1):
                    ih = p * g.sh - g.ph + r * g.dh
                    if 0 <= ih < g.H:
                        dst = dx + (<Py_ssize_t>c * g.H + ih) * g.W + off
                        if g.sw == 1:
                            for q in range(qa, qb):
                                dst[q] += src[q]
                        else:
                            for q in range(qa, qb):
                                dst[q * g.sw] += src[q]
                    src += g.Q


# ---------------------------------------------------------------- GEMM paths
# Work is split into independent items (image, group, chunk); OpenMP threads take
# items and each makes single-threaded BLAS calls on its own workspace slice
# (OpenBLAS is held at one thread meanwhile, see _BlasSerial), so the OpenMP
# and OpenBLAS thread pools never compete for the cores.
cdef inline void _split(int total, int nchunk, int ch, int* a, int* b) noexcept nogil:
    cdef int size = (total + nchunk - 1) // nchunk
    a[0] = min(total, ch * size)
    b[0] = min(total, a[0] + size)


cdef void _bias_rows(real* yg, const real* bg, int Kg, Py_ssize_t pq, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef int k
    cdef Py_ssize_t i
    cdef real bv
    cdef real* yr
    for k in range(Kg):
        bv = bg[k]
        yr = yg + k * pq
        for i in range(a, b):
            yr[i] = yr[i] + bv


include "_conv_1x1.pxi"


cdef void _fwd_item(const real* x, const real* w, const real* b, real* y, real* col, const Geo* g,
                    int it, int nchunk, int rows, bint pointwise) noexcept nogil:
    cdef int ng = it // nchunk, ch = it % nchunk
    cdef int n = ng // g.groups, gi = ng % g.groups
    cdef int crs = g.Cg * g.R * g.S, pq = g.P * g.Q, hw = g.H * g.W
    cdef int a, e, p0, p1, ncols
    cdef real* xg = <real*>x + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
    cdef real* wg = <real*>w + <Py_ssize_t>gi * g.Kg * crs
    cdef real* yg = y + (<Py_ssize_t>n * g.K + gi * g.Kg) * pq
    if pointwise:  # (_conv_1x1.pxi)
        _pw_fwd_item(x, w, b, y, g, it, nchunk)
        return
    _split(g.P, nchunk, ch, &a, &e)
    p0 = a
    while p0 < e:
        p1 = min(e, p0 + rows)
        ncols = (p1 - p0) * g.Q
        _im2col(xg, col, g, 0, g.Cg, p0, p1)
        _gemm(c'N', c'N', ncols, g.Kg, crs, <real>1, col, ncols, wg, crs, <real>0, yg + p0 * g.Q, pq)
        if b != NULL:
            _bias_rows(yg, b + gi * g.Kg, g.Kg, pq, p0 * g.Q, p1 * g.Q)
        p0 = p1


cdef void _bwd_input_item(const real* dy, const real* w, real* dx, real* col, const Geo* g,
                          int it, int nchunk, int rows, bint pointwise) noexcept nogil:
    """Chunks split the channels (so col2im of different chunks never overlap)."""
    cdef int ng = it // nchunk, ch = it % nchunk
    cdef int n = ng // g.groups, gi = ng % g.groups
    cdef int rs = g.R * g.S, crs = g.Cg * g.R * g.S, pq = g.P * g.Q, hw = g.H * g.W
    cdef int c0, c1, p0, p1, ncols
    cdef real* dyg = <real*>dy + (<Py_ssize_t>n * g.K + gi * g.Kg) * pq
    cdef real* wg = <real*>w + <Py_ssize_t>gi * g.Kg * crs
    cdef real* dxg = dx + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
    if pointwise:
        _pw_bwd_input_item(dy, w, dx, g, it, nchunk)
        return
    _split(g.Cg, nchunk, ch, &c0, &c1)
    if c1 <= c0:
        return
    p0 = 0
    while p0 < g.P:
        p1 = min(g.P, p0 + rows)
        ncols = (p1 - p0) * g.Q
        _gemm(c'N', c'T', ncols, (c1 - c0) * rs, g.Kg, <real>1, dyg + p0 * g.Q, pq,
              wg + c0 * rs, crs, <real>0, col, ncols)
        _col2im(col, dxg, g, c0, c1, p0, p1)
        p0 = p1


cdef void _bwd_weight_item(const real* dy, const real* x, real* dw, real* col, const Geo* g,
                           int it, int nchunk, int rows, bint pointwise) noexcept nogil:
    """Accumulates (beta = 1) into dw, this thread's private copy."""
    cdef int ng = it // nchunk, ch = it % nchunk
    cdef int n = ng // g.groups, gi = ng % g.groups
    cdef int crs = g.Cg * g.R * g.S, pq = g.P * g.Q, hw = g.H * g.W
    cdef int a, e, p0, p1, ncols
    cdef real* dyg = <real*>dy + (<Py_ssize_t>n * g.K + gi * g.Kg) * pq
    cdef real* xg = <real*>x + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
    cdef real* dwg = dw + <Py_ssize_t>gi * g.Kg * crs
    if pointwise:  # (_conv_1x1.pxi)
        _pw_bwd_weight_item(dy, x, dw, g, it, nchunk)
        return
    _split(g.P, nchunk, ch, &a, &e)
    p0 = a
    while p0 < e:
        p1 = min(e, p0 + rows)
        ncols = (p1 - p0) * g.Q
        _im2col(xg, col, g, 0, g.Cg, p0, p1)
        _gemm(c'T', c'N', crs, g.Kg, ncols, <real>1, col, ncols, dyg + p0 * g.Q, pq, <real>1, dwg, crs)
        p0 = p1


cdef void _run_gemm(int which, const real* a, const real* b, const real* bias, real* out, real* work,
                    Py_ssize_t work_stride, const Geo* g, int nchunk, int rows, bint pointwise,
                    int nt) noexcept nogil:
    """which: 0 forward (a=x, b=w), 1 backward-input (a=dy, b=w), 2 backward-weight
    (a=dy, b=x; ``out`` holds nt private dw copies, ``work_stride`` apart... see caller)."""
    cdef int it, tid = 0, nitems = g.N * g.groups * nchunk
    cdef Py_ssize_t dwsize = <Py_ssize_t>g.K * g.Cg * g.R * g.S
    with parallel(num_threads=nt):
        tid = threadid()
        for it in prange(nitems, schedule="dynamic"):
            if which == 0:
                _fwd_item(a, b, bias, out, work + tid * work_stride, g, it, nchunk, rows, pointwise)
            elif which == 1:
                _bwd_input_item(a, b, out, work + tid * work_stride, g, it, nchunk, rows, pointwise)
            else:
                _bwd_weight_item(a, b, out + tid * dwsize, work + tid * work_stride, g, it, nchunk, rows, pointwise)


cdef void _bwd_bias(const real* dy, real* db, int N, int K, Py_ssize_t pq, int nt) noexcept nogil:
    cdef int k, n
    cdef Py_ssize_t i
    cdef double acc
    cdef real t
    cdef const real* p
    for k in prange(K, num_threads=nt, schedule="static"):
        acc = 0
        for n in range(N):
            p = dy + (<Py_ssize_t>n * K + k) * pq
            t = 0
            for i in range(pq):
                t = t + p[i]
            acc = acc + t
        db[k] = <real>acc


# ---------------------------------------------------------------- Python entry points
cdef inline void* _ptr(a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


include "_conv_gemm.pxi"


cdef Geo _geo(tuple xs, tuple ws, stride, padding, dilation, int groups, tuple out):
    cdef Geo g
    g.N, g.C, g.H, g.W = xs
    g.K, g.Cg, g.R, g.S = ws
    g.P, g.Q = out[2], out[3]
    g.sh, g.sw = stride
    g.ph, g.pw = padding
    g.dh, g.dw = dilation
    g.groups = groups
    g.Kg = g.K // groups
    return g


def _BlasSerial():
    """SciPy's OpenBLAS at one thread while OpenMP threads call it (restored after)."""
    return blas_threads("scipy", 1)


COL_TARGET_BYTES = 4 << 20  # im2col block per thread (stays near the caches; GEMMs stay wide)


def _plan(which, Geo g, int nt, int itemsize, bint pointwise):
    """(nchunk, rows, work_stride): chunks per (image, group) and rows per im2col block."""
    from fastconv import config
    base = g.N * g.groups
    nchunk = 1 if base >= 4 * nt else -(-4 * nt // base)
    cap = g.H * g.W if pointwise else (g.Cg if which == 1 else g.P)
    nchunk = max(1, min(nchunk, cap))
    if pointwise:
        return nchunk, 1, 0
    rs = g.R * g.S
    rowsize = (-(-g.Cg // nchunk) if which == 1 else g.Cg) * rs * g.Q
    budget = max(1, min(int(config.workspace_bytes) // nt, COL_TARGET_BYTES) // itemsize)
    span = g.P if which == 1 else -(-g.P // nchunk)
    rows = max(1, min(span, budget // rowsize))
    return nchunk, rows, rows * rowsize


def _gemm_path(int which, a, b, bias, out, Geo g, int nt, bint pointwise):
    nchunk, rows, stride = _plan(which, g, nt, a.itemsize, pointwise)
    work = np.empty(max(1, nt * stride), dtype=a.dtype)
    target = out
    if which == 2 and nt > 1:
        target = np.zeros((nt,) + out.shape, dtype=out.dtype)
    cdef void* pa = _ptr(a)
    cdef void* pb = _ptr(b)
    cdef void* pbias = NULL if bias is None else _ptr(bias)
    cdef void* po = _ptr(target)
    cdef void* pw = _ptr(work)
    cdef Py_ssize_t ws = stride
    cdef int nch = nchunk, nrows = rows
    cdef bint is32 = a.dtype == np.float32
    with _BlasSerial():
        with nogil:
            if is32:
                _run_gemm(which, <float*>pa, <float*>pb, <float*>pbias, <float*>po, <float*>pw, ws, &g, nch, nrows, pointwise, nt)
            else:
                _run_gemm(which, <double*>pa, <double*>pb, <double*>pbias, <double*>po, <double*>pw, ws, &g, nch, nrows, pointwise, nt)
    if target is not out:
        np.sum(target, axis=0, out=out)
    return out


def conv2d_forward(x, w, b, stride, padding, dilation, groups, *, algo="auto", activation=None):
    """y (N, K, P, Q) = conv2d(x, w) + b; see the module docstring for ``algo``.  ``activation``
    'relu' applies relu(y) in place before returning (the fused epilogue the layer API's
    ``conv2d_relu`` asks for), None nothing."""
    op = "conv2d_forward"
    CK.choice(op, "activation", activation, ACTIVATIONS)
    if activation is not None:
        return _epilogue(conv2d_forward(x, w, b, stride, padding, dilation, groups, algo=algo), activation)
    x = CK.array(op, "x", x, ndim=4, device="cpu")
    w = CK.array(op, "w", w, ndim=4, device="cpu")
    b = CK.array(op, "b", b, ndim=1, allow_none=True, device="cpu")
    CK.same_dtype(op, x=x, w=w, b=b)
    if _tune.enabled(algo):  # fastconv.config.autotune: time the candidates once per configuration
        algo = _tune.choose(_setup, ALGOS, op, x.shape, w.shape, (stride, padding, dilation, groups), x.dtype,
                            lambda a: conv2d_forward(x, w, b, stride, padding, dilation, groups, algo=a))
    geo, algo = _setup(op, x.shape, w.shape, stride, padding, dilation, groups, algo, x.dtype)
    stride, padding, dilation, groups, out = geo
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"{op}: bias shape {tuple(b.shape)} does not match K={w.shape[0]} (w shape {tuple(w.shape)})")
    y = np.empty(out, dtype=x.dtype)
    if y.size == 0:
        return y
    cdef Geo g = _geo(x.shape, w.shape, stride, padding, dilation, groups, out)
    cdef int nt = num_threads(g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S, 1 << 18)
    if algo == "winograd_s2":
        return _s2_engine(x.dtype, w.shape, stride, dilation, groups).forward(x, w, b, padding, y, nt)
    if algo.startswith("winograd"):
        with _BlasSerial():
            return (_wino5 if algo == "winograd5" else _wino).forward(x, w, b, padding, y, nt, 4 if algo == "winograd4" else 2)
    if algo == "gemm" and _pk_eligible(x.dtype, groups, w.shape, 0, out[2] * out[3]):
        return _pk_path(0, x, w, b, y, g, nt)
    if algo != "direct":
        return _gemm_path(0, x, w, b, y, g, nt, algo == "1x1")
    return _direct.forward(x, w, b, y, g, nt)


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups, *, algo="auto"):
    """dx of ``x_shape``: the transposed convolution of dy (GEMM + col2im, or direct)."""
    op = "conv2d_backward_input"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    w = CK.array(op, "w", w, ndim=4, device="cpu")
    CK.same_dtype(op, dy=dy, w=w)
    x_shape = CK.tuple_n(op, "x_shape", x_shape, 4, minimum=0)
    if _tune.enabled(algo):
        algo = _tune.choose(_setup, ALGOS, op, x_shape, w.shape, (stride, padding, dilation, groups), dy.dtype,
                            lambda a: conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups, algo=a))
    geo, algo = _setup(op, x_shape, w.shape, stride, padding, dilation, groups, algo, dy.dtype)
    stride, padding, dilation, groups, out = geo
    if tuple(dy.shape) != tuple(out):
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match the output shape {tuple(out)} of x {x_shape} and w {tuple(w.shape)}")
    cdef bint pointwise = algo == "1x1"
    dx = (np.zeros if algo == "gemm" else np.empty)(x_shape, dtype=dy.dtype)
    if dx.size == 0:
        return dx
    cdef Geo g = _geo(x_shape, w.shape, stride, padding, dilation, groups, out)
    cdef int nt = num_threads(g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S, 1 << 18)
    if algo.startswith("winograd"):
        with _BlasSerial():  # (the flipped filters are read straight from w)
            return (_wino5 if algo == "winograd5" else _wino).backward_input(dy, w, padding, dx, nt, 4 if algo == "winograd4" else 2)
    if algo == "gemm" and _pk_eligible(dy.dtype, groups, w.shape, 1):
        return _pk_path(1, dy, w, None, dx, g, nt)
    if algo != "direct":
        return _gemm_path(1, dy, w, None, dx, g, nt, pointwise)
    return _direct.backward_input(dy, w, dx, g, nt)


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups, *, algo="auto"):
    """dw of ``w_shape``: GEMM of dy against im2col(x) (or direct loops), summed over images."""
    op = "conv2d_backward_weight"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    x = CK.array(op, "x", x, ndim=4, device="cpu")
    CK.same_dtype(op, dy=dy, x=x)
    w_shape = CK.tuple_n(op, "w_shape", w_shape, 4, minimum=1)
    if _tune.enabled(algo):
        algo = _tune.choose(_setup, ALGOS, op, x.shape, w_shape, (stride, padding, dilation, groups), dy.dtype,
                            lambda a: conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups, algo=a))
    geo, algo = _setup(op, x.shape, w_shape, stride, padding, dilation, groups, algo, dy.dtype)
    stride, padding, dilation, groups, out = geo
    if tuple(dy.shape) != tuple(out):
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match the output shape {tuple(out)} of x {tuple(x.shape)} and w {w_shape}")
    dw = np.zeros(w_shape, dtype=dy.dtype)
    if dy.size == 0:
        return dw
    cdef Geo g = _geo(x.shape, w_shape, stride, padding, dilation, groups, out)
    cdef int nt = num_threads(g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S, 1 << 18)
    if algo == "winograd":
        with _BlasSerial():
            return _wino.backward_weight(dy, x, padding, dw, nt)
    if algo == "winograd5":
        return _wino5.backward_weight(dy, x, padding, dw, nt)
    if algo == "gemm" and _pk_eligible(dy.dtype, groups, w_shape, 2, out[2] * out[3]):
        return _pk_path(2, dy, x, None, dw, g, nt)
    if algo != "direct":
        return _gemm_path(2, dy, x, None, dw, g, nt, algo == "1x1")
    return _direct.backward_weight(dy, x, dw, g, nt)


def conv2d_backward_bias(dy):
    """db (K,) = dy summed over N, P, Q (accumulated in float64)."""
    op = "conv2d_backward_bias"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    N, K, P, Q = dy.shape
    db = np.zeros(K, dtype=dy.dtype)
    if dy.size == 0:
        return db
    cdef int nt = num_threads(dy.size, 1 << 15)
    cdef void* pdy = _ptr(dy)
    cdef void* pdb = _ptr(db)
    cdef int n_ = N, k_ = K
    cdef Py_ssize_t pq = P * Q
    cdef bint is32 = dy.dtype == np.float32
    with nogil:
        if is32:
            _bwd_bias(<float*>pdy, <float*>pdb, n_, k_, pq, nt)
        else:
            _bwd_bias(<double*>pdy, <double*>pdb, n_, k_, pq, nt)
    return db
