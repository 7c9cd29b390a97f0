# cython: language_level=3
"""2-D convolution on the CPU: BLAS GEMM (SciPy's cython_blas) + OpenMP loops.

Algorithms (``algo=`` forces one; ``'auto'`` picks by shape):

``'1x1'``     1x1, stride 1, no padding: one GEMM per image and group, straight
              on the input (no im2col).
``'gemm'``    im2col of a chunk of output rows (bounded by
              ``fastconv.config.workspace_bytes``) then GEMM; backward-input is
              GEMM + col2im, backward-weight a GEMM against im2col.
``'direct'``  direct loops, OpenMP over (image, channel) planes: depthwise and
              tiny-channel layers, where GEMMs are too thin to pay off.
``'winograd'`` F(2x2, 3x3) for 3x3 / stride 1 / dilation 1 forward (module
              ``_winograd``); see its docstring for the measured error.

Threading: im2col/col2im and the direct loops run on ``num_threads`` OpenMP
threads; BLAS calls are made from the serial part (never inside a ``prange``)
and use OpenBLAS's own threads, so the two pools never nest.
Error: float32 GEMM and direct paths match the float64 result within a
relative error (||out - ref|| / ||ref||) of about 1e-7..1e-6 on the tests.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

from .. import _checks as CK
from ._threads import num_threads

cnp.import_array()

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]

ALGOS = ("auto", "1x1", "gemm", "direct", "winograd")

ctypedef fused real:
    float
    double

ctypedef struct Geo:
    int N, C, H, W, K, R, S, P, Q
    int sh, sw, ph, pw, dh, dw, groups, Cg, Kg


cdef inline void _gemm(char ta, char tb, int m, int n, int k, real alpha, real* a, int lda,
                       real* b, int ldb, real beta, real* c, int ldc) noexcept nogil:
    """Column-major GEMM C = alpha op(A) op(B) + beta C (row-major callers swap operands)."""
    if real is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)


cdef inline void _qrange(const Geo* g, int s, int* qa, int* qb, int* off) noexcept nogil:
    """Output columns q whose input column q*sw + off (off = s*dw - pw) lies in [0, W)."""
    cdef int o = s * g.dw - g.pw
    off[0] = o
    qa[0] = 0 if o >= 0 else (-o + g.sw - 1) // g.sw
    if g.W - 1 - o < 0:
        qb[0] = 0
    else:
        qb[0] = min(g.Q, (g.W - 1 - o) // g.sw + 1)
    if qa[0] > qb[0]:
        qa[0] = qb[0]


# ---------------------------------------------------------------- im2col / col2im
cdef void _im2col_row(const real* x, real* col, const Geo* g, int row, int p0, int p1) noexcept nogil:
    """One row (c, r, s) of the im2col matrix for output rows [p0, p1) of one group."""
    cdef int rs = g.R * g.S
    cdef int c = row // rs, r = (row % rs) // g.S, s = row % g.S
    cdef int qa, qb, off, p, q, ih
    cdef int ncols = (p1 - p0) * g.Q
    cdef real* dst = col + <Py_ssize_t>row * ncols
    cdef const real* src
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
                for q in range(qa, qb):
                    dst[q] = src[q]
            else:
                for q in range(qa, qb):
                    dst[q] = src[q * g.sw]
            for q in range(qb, g.Q):
                dst[q] = 0
        dst += g.Q


cdef void _im2col(const real* x, real* col, const Geo* g, int p0, int p1, int nt) noexcept nogil:
    cdef int row, nrows = g.Cg * g.R * g.S
    for row in prange(nrows, num_threads=nt, schedule="static"):
        _im2col_row(x, col, g, row, p0, p1)


cdef void _col2im_chan(const real* col, real* dx, const Geo* g, int c, int p0, int p1) noexcept nogil:
    """dx[c] += the (c, :, :) rows of a column matrix for output rows [p0, p1)."""
    cdef int r, s, p, q, ih, qa, qb, off
    cdef int ncols = (p1 - p0) * g.Q
    cdef const real* src
    cdef real* dst
    for r in range(g.R):
        for s in range(g.S):
            _qrange(g, s, &qa, &qb, &off)
            src = col + <Py_ssize_t>((c * g.R + r) * g.S + s) * ncols
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


cdef void _col2im(const real* col, real* dx, const Geo* g, int p0, int p1, int nt) noexcept nogil:
    cdef int c
    for c in prange(g.Cg, num_threads=nt, schedule="static"):
        _col2im_chan(col, dx, g, c, p0, p1)


# ---------------------------------------------------------------- GEMM paths
cdef void _fwd_gemm(const real* x, const real* w, real* y, real* col, const Geo* g,
                    int rows, bint pointwise, int nt) noexcept nogil:
    cdef int n, gi, p0, p1, ncols
    cdef int crs = g.Cg * g.R * g.S, pq = g.P * g.Q, hw = g.H * g.W
    cdef const real* xg
    cdef real* wg
    cdef real* yg
    for n in range(g.N):
        for gi in range(g.groups):
            xg = x + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
            wg = <real*>w + <Py_ssize_t>gi * g.Kg * crs
            yg = y + (<Py_ssize_t>n * g.K + gi * g.Kg) * pq
            if pointwise:
                _gemm(c'N', c'N', pq, g.Kg, g.Cg, <real>1, <real*>xg, hw, wg, g.Cg, <real>0, yg, pq)
                continue
            p0 = 0
            while p0 < g.P:
                p1 = min(g.P, p0 + rows)
                ncols = (p1 - p0) * g.Q
                _im2col(xg, col, g, p0, p1, nt)
                _gemm(c'N', c'N', ncols, g.Kg, crs, <real>1, col, ncols, wg, crs, <real>0, yg + p0 * g.Q, pq)
                p0 = p1


cdef void _bwd_input_gemm(const real* dy, const real* w, real* dx, real* col, const Geo* g,
                          int rows, bint pointwise, int nt) noexcept nogil:
    cdef int n, gi, p0, p1, ncols
    cdef int crs = g.Cg * g.R * g.S, pq = g.P * g.Q, hw = g.H * g.W
    cdef real* dyg
    cdef real* wg
    cdef real* dxg
    for n in range(g.N):
        for gi in range(g.groups):
            dyg = <real*>dy + (<Py_ssize_t>n * g.K + gi * g.Kg) * pq
            wg = <real*>w + <Py_ssize_t>gi * g.Kg * crs
            dxg = dx + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
            if pointwise:
                _gemm(c'N', c'T', hw, g.Cg, g.Kg, <real>1, dyg, pq, wg, crs, <real>0, dxg, hw)
                continue
            p0 = 0
            while p0 < g.P:
                p1 = min(g.P, p0 + rows)
                ncols = (p1 - p0) * g.Q
                _gemm(c'N', c'T', ncols, crs, g.Kg, <real>1, dyg + p0 * g.Q, pq, wg, crs, <real>0, col, ncols)
                _col2im(col, dxg, g, p0, p1, nt)
                p0 = p1


cdef void _bwd_weight_gemm(const real* dy, const real* x, real* dw, real* col, const Geo* g,
                           int rows, bint pointwise, int nt) noexcept nogil:
    cdef int n, gi, p0, p1, ncols
    cdef int crs = g.Cg * g.R * g.S, pq = g.P * g.Q, hw = g.H * g.W
    cdef real* dyg
    cdef const real* xg
    cdef real* dwg
    for n in range(g.N):
        for gi in range(g.groups):
            dyg = <real*>dy + (<Py_ssize_t>n * g.K + gi * g.Kg) * pq
            xg = x + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
            dwg = dw + <Py_ssize_t>gi * g.Kg * crs
            if pointwise:
                _gemm(c'T', c'N', g.Cg, g.Kg, hw, <real>1, <real*>xg, hw, dyg, pq, <real>1, dwg, crs)
                continue
            p0 = 0
            while p0 < g.P:
                p1 = min(g.P, p0 + rows)
                ncols = (p1 - p0) * g.Q
                _im2col(xg, col, g, p0, p1, nt)
                _gemm(c'T', c'N', crs, g.Kg, ncols, <real>1, col, ncols, dyg + p0 * g.Q, pq, <real>1, dwg, crs)
                p0 = p1


cdef void _add_bias(real* y, const real* b, const Geo* g, int nt) noexcept nogil:
    cdef Py_ssize_t nk, i, pq = g.P * g.Q
    cdef real bv
    cdef real* yp
    for nk in prange(<Py_ssize_t>g.N * g.K, num_threads=nt, schedule="static"):
        bv = b[nk % g.K]
        yp = y + nk * pq
        for i in range(pq):
            yp[i] = yp[i] + bv


# ---------------------------------------------------------------- direct loops
cdef void _fwd_direct_plane(const real* x, const real* w, const real* b, real* y,
                            const Geo* g, Py_ssize_t nk) noexcept nogil:
    cdef int n = nk // g.K, k = nk % g.K
    cdef int gi = k // g.Kg, c, r, s, p, q, ih, qa, qb, off
    cdef int pq = g.P * g.Q
    cdef real wv
    cdef real bv = b[k] if b != NULL else 0
    cdef real* yp = y + nk * pq
    cdef real* yr
    cdef const real* xp
    cdef const real* xr
    for q in range(pq):
        yp[q] = bv
    for c in range(g.Cg):
        xp = x + (<Py_ssize_t>n * g.C + gi * g.Cg + c) * g.H * g.W
        for r in range(g.R):
            for s in range(g.S):
                wv = w[((<Py_ssize_t>k * g.Cg + c) * g.R + r) * g.S + s]
                _qrange(g, s, &qa, &qb, &off)
                for p in range(g.P):
                    ih = p * g.sh - g.ph + r * g.dh
                    if ih < 0 or ih >= g.H:
                        continue
                    xr = xp + ih * g.W + off
                    yr = yp + p * g.Q
                    if g.sw == 1:
                        for q in range(qa, qb):
                            yr[q] += wv * xr[q]
                    else:
                        for q in range(qa, qb):
                            yr[q] += wv * xr[q * g.sw]


cdef void _bwd_input_direct_plane(const real* dy, const real* w, real* dx,
                                  const Geo* g, Py_ssize_t nc) noexcept nogil:
    cdef int n = nc // g.C, cgl = nc % g.C
    cdef int gi = cgl // g.Cg, c = cgl % g.Cg, kk, k, r, s, p, q, ih, qa, qb, off
    cdef real wv
    cdef real* dxp = dx + nc * g.H * g.W
    cdef real* dxr
    cdef const real* dyp
    cdef const real* dyr
    for q in range(g.H * g.W):
        dxp[q] = 0
    for kk in range(g.Kg):
        k = gi * g.Kg + kk
        dyp = dy + (<Py_ssize_t>n * g.K + k) * g.P * g.Q
        for r in range(g.R):
            for s in range(g.S):
                wv = w[((<Py_ssize_t>k * g.Cg + c) * g.R + r) * g.S + s]
                _qrange(g, s, &qa, &qb, &off)
                for p in range(g.P):
                    ih = p * g.sh - g.ph + r * g.dh
                    if ih < 0 or ih >= g.H:
                        continue
                    dxr = dxp + ih * g.W + off
                    dyr = dyp + p * g.Q
                    if g.sw == 1:
                        for q in range(qa, qb):
                            dxr[q] += wv * dyr[q]
                    else:
                        for q in range(qa, qb):
                            dxr[q * g.sw] += wv * dyr[q]


cdef void _bwd_weight_direct_pair(const real* dy, const real* x, real* dw,
                                  const Geo* g, Py_ssize_t kc, double* acc) noexcept nogil:
    """dw[k, c] (one R x S filter) = sum over images and pixels; acc is R*S scratch."""
    cdef int k = kc // g.Cg, c = kc % g.Cg, gi = k // g.Kg
    cdef int n, r, s, p, q, ih, qa, qb, off
    cdef real t
    cdef const real* xp
    cdef const real* dyp
    cdef const real* xr
    cdef const real* dyr
    for r in range(g.R * g.S):
        acc[r] = 0
    for n in range(g.N):
        xp = x + (<Py_ssize_t>n * g.C + gi * g.Cg + c) * g.H * g.W
        dyp = dy + (<Py_ssize_t>n * g.K + k) * g.P * g.Q
        for r in range(g.R):
            for s in range(g.S):
                _qrange(g, s, &qa, &qb, &off)
                for p in range(g.P):
                    ih = p * g.sh - g.ph + r * g.dh
                    if ih < 0 or ih >= g.H:
                        continue
                    xr = xp + ih * g.W + off
                    dyr = dyp + p * g.Q
                    t = 0
                    if g.sw == 1:
                        for q in range(qa, qb):
                            t = t + dyr[q] * xr[q]
                    else:
                        for q in range(qa, qb):
                            t = t + dyr[q] * xr[q * g.sw]
                    acc[r * g.S + s] += t
    for r in range(g.R * g.S):
        dw[kc * g.R * g.S + r] = <real>acc[r]


cdef void _fwd_direct(const real* x, const real* w, const real* b, real* y, const Geo* g, int nt) noexcept nogil:
    cdef Py_ssize_t nk
    for nk in prange(<Py_ssize_t>g.N * g.K, num_threads=nt, schedule="dynamic"):
        _fwd_direct_plane(x, w, b, y, g, nk)


cdef void _bwd_input_direct(const real* dy, const real* w, real* dx, const Geo* g, int nt) noexcept nogil:
    cdef Py_ssize_t nc
    for nc in prange(<Py_ssize_t>g.N * g.C, num_threads=nt, schedule="dynamic"):
        _bwd_input_direct_plane(dy, w, dx, g, nc)


cdef void _bwd_weight_direct(const real* dy, const real* x, real* dw, const Geo* g,
                             double* scratch, int nt) noexcept nogil:
    """scratch: nt * R * S doubles, one R x S accumulator per thread."""
    cdef Py_ssize_t kc
    with parallel(num_threads=nt):
        for kc in prange(<Py_ssize_t>g.K * g.Cg, schedule="dynamic"):
            _bwd_weight_direct_pair(dy, x, dw, g, kc, scratch + threadid() * g.R * g.S)


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


def _setup(op, x_shape, w_shape, stride, padding, dilation, groups, algo):
    """Validate geometry and pick an algorithm; returns (Geo as dict, algo, rows per chunk)."""
    stride, padding, dilation, groups, out = CK.conv2d_geometry(op, x_shape, w_shape, stride, padding, dilation, groups)
    CK.choice(op, "algo", algo, ALGOS)
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    if Cg < 1:
        raise ValueError(f"{op}: argument 'w' has an empty dimension: shape {tuple(w_shape)}")
    P, Q = out[2], out[3]
    crs = Cg * R * S
    for v in (C * H * W, K * P * Q, crs * Q, crs * K):
        if v >= 2 ** 31:
            raise ValueError(f"{op}: problem too large for 32-bit BLAS indexing (x {tuple(x_shape)}, w {tuple(w_shape)})")
    pointwise_ok = R == 1 and S == 1 and stride == (1, 1) and padding == (0, 0)
    if algo == "auto":
        Kg = K // groups
        if pointwise_ok:
            algo = "1x1"
        elif Cg == 1 or Kg * crs <= 256:
            algo = "direct"
        else:
            algo = "gemm"
    elif algo == "1x1" and not pointwise_ok:
        raise ValueError(f"{op}: algo '1x1' needs a 1x1 kernel, stride 1 and no padding (w {tuple(w_shape)}, stride {stride}, padding {padding})")
    elif algo == "winograd":
        raise ValueError(f"{op}: algo 'winograd' is not available for this call")
    return (stride, padding, dilation, groups, out), algo


def _rows(geo_args, w_shape, itemsize):
    from fastconv import config
    K, Cg, R, S = w_shape
    Q = geo_args[4][3]
    P = geo_args[4][2]
    budget = max(1, int(config.workspace_bytes) // itemsize)
    return max(1, min(P, budget // max(1, Cg * R * S * Q)))


def conv2d_forward(x, w, b, stride, padding, dilation, groups, *, algo="auto"):
    """y (N, K, P, Q) = conv2d(x, w) + b; see the module docstring for ``algo``."""
    op = "conv2d_forward"
    x = CK.array(op, "x", x, ndim=4, device="cpu")
    w = CK.array(op, "w", w, ndim=4, device="cpu")
    b = CK.array(op, "b", b, ndim=1, allow_none=True, device="cpu")
    CK.same_dtype(op, x=x, w=w, b=b)
    geo, algo = _setup(op, x.shape, w.shape, stride, padding, dilation, groups, algo)
    stride, padding, dilation, groups, out = geo
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"{op}: bias shape {tuple(b.shape)} does not match K={w.shape[0]} (w shape {tuple(w.shape)})")
    y = np.empty(out, dtype=x.dtype)
    if y.size == 0:
        return y
    cdef Geo g = _geo(x.shape, w.shape, stride, padding, dilation, groups, out)
    cdef int nt = num_threads(g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S, 1 << 16)
    cdef int rows = _rows(geo, w.shape, x.itemsize)
    cdef bint pw = algo == "1x1"
    cdef void* px = _ptr(x)
    cdef void* pwt = _ptr(w)
    cdef void* pb = NULL if b is None else _ptr(b)
    cdef void* py = _ptr(y)
    cdef void* pc = NULL
    cdef bint is32 = x.dtype == np.float32
    if algo == "direct":
        with nogil:
            if is32:
                _fwd_direct(<float*>px, <float*>pwt, <float*>pb, <float*>py, &g, nt)
            else:
                _fwd_direct(<double*>px, <double*>pwt, <double*>pb, <double*>py, &g, nt)
        return y
    if not pw:
        col = np.empty(g.Cg * g.R * g.S * rows * g.Q, dtype=x.dtype)
        pc = _ptr(col)
    with nogil:
        if is32:
            _fwd_gemm(<float*>px, <float*>pwt, <float*>py, <float*>pc, &g, rows, pw, nt)
            if pb != NULL:
                _add_bias(<float*>py, <float*>pb, &g, nt)
        else:
            _fwd_gemm(<double*>px, <double*>pwt, <double*>py, <double*>pc, &g, rows, pw, nt)
            if pb != NULL:
                _add_bias(<double*>py, <double*>pb, &g, nt)
    return y


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups, *, algo="auto"):
    """dx of ``x_shape``: the transposed convolution of dy (GEMM + col2im, or direct)."""
    op = "conv2d_backward_input"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    w = CK.array(op, "w", w, ndim=4, device="cpu")
    CK.same_dtype(op, dy=dy, w=w)
    x_shape = CK.tuple_n(op, "x_shape", x_shape, 4, minimum=0)
    geo, algo = _setup(op, x_shape, w.shape, stride, padding, dilation, groups, algo)
    stride, padding, dilation, groups, out = geo
    if tuple(dy.shape) != tuple(out):
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match the output shape {tuple(out)} of x {x_shape} and w {tuple(w.shape)}")
    dx = np.zeros(x_shape, dtype=dy.dtype)
    if dx.size == 0:
        return dx
    cdef Geo g = _geo(x_shape, w.shape, stride, padding, dilation, groups, out)
    cdef int nt = num_threads(g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S, 1 << 16)
    cdef int rows = _rows(geo, w.shape, dy.itemsize)
    cdef bint pw = algo == "1x1"
    cdef void* pdy = _ptr(dy)
    cdef void* pwt = _ptr(w)
    cdef void* pdx = _ptr(dx)
    cdef void* pc = NULL
    cdef bint is32 = dy.dtype == np.float32
    if algo == "direct":
        with nogil:
            if is32:
                _bwd_input_direct(<float*>pdy, <float*>pwt, <float*>pdx, &g, nt)
            else:
                _bwd_input_direct(<double*>pdy, <double*>pwt, <double*>pdx, &g, nt)
        return dx
    if not pw:
        col = np.empty(g.Cg * g.R * g.S * rows * g.Q, dtype=dy.dtype)
        pc = _ptr(col)
    with nogil:
        if is32:
            _bwd_input_gemm(<float*>pdy, <float*>pwt, <float*>pdx, <float*>pc, &g, rows, pw, nt)
        else:
            _bwd_input_gemm(<double*>pdy, <double*>pwt, <double*>pdx, <double*>pc, &g, rows, pw, nt)
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups, *, algo="auto"):
    """dw of ``w_shape``: GEMM of dy against im2col(x) (or direct loops), summed over images."""
    op = "conv2d_backward_weight"
    dy = CK.array(op, "dy", dy, ndim=4, device="cpu")
    x = CK.array(op, "x", x, ndim=4, device="cpu")
    CK.same_dtype(op, dy=dy, x=x)
    w_shape = CK.tuple_n(op, "w_shape", w_shape, 4, minimum=1)
    geo, algo = _setup(op, x.shape, w_shape, stride, padding, dilation, groups, algo)
    stride, padding, dilation, groups, out = geo
    if tuple(dy.shape) != tuple(out):
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match the output shape {tuple(out)} of x {tuple(x.shape)} and w {w_shape}")
    dw = np.zeros(w_shape, dtype=dy.dtype)
    if dy.size == 0:
        return dw
    cdef Geo g = _geo(x.shape, w_shape, stride, padding, dilation, groups, out)
    cdef int nt = num_threads(g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S, 1 << 16)
    cdef int rows = _rows(geo, w_shape, dy.itemsize)
    cdef bint pw = algo == "1x1"
    cdef void* pdy = _ptr(dy)
    cdef void* px = _ptr(x)
    cdef void* pdw = _ptr(dw)
    cdef void* pc = NULL
    cdef bint is32 = dy.dtype == np.float32
    if algo == "direct":
        nt = num_threads(g.K * g.Cg, 1) if nt > 1 else 1
        scratch = np.empty(nt * g.R * g.S, dtype=np.float64)
        pc = _ptr(scratch)
        with nogil:
            if is32:
                _bwd_weight_direct(<float*>pdy, <float*>px, <float*>pdw, &g, <double*>pc, nt)
            else:
                _bwd_weight_direct(<double*>pdy, <double*>px, <double*>pdw, &g, <double*>pc, nt)
        return dw
    if not pw:
        col = np.empty(g.Cg * g.R * g.S * rows * g.Q, dtype=dy.dtype)
        pc = _ptr(col)
    with nogil:
        if is32:
            _bwd_weight_gemm(<float*>pdy, <float*>px, <float*>pdw, <float*>pc, &g, rows, pw, nt)
        else:
            _bwd_weight_gemm(<double*>pdy, <double*>px, <double*>pdw, <double*>pc, &g, rows, pw, nt)
    return dw


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
