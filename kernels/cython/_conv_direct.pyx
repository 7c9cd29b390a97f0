# cython: language_level=3
"""Direct conv2d loops (OpenMP over output planes): depthwise and tiny-channel layers.

Called by the ``conv`` module's entry points (``algo='direct'``) after they validated
the arguments and allocated the outputs; not public entry points.

Depthwise layers (C / groups == 1, any multiplier K / C, stride, dilation, padding) run
the SIMD kernels of _conv_direct_impl.h (AVX-512 / AVX2 / SSE2 builds, the vector width
picked per call): one task per input channel (n, c); each output vector sums all filter
taps in a register.  Stride-1 3x3 / 5x5 layers with 'same' or no column padding read
the plane in place; others copy it into a zero-padded, column-phase-split buffer so
every tap is a contiguous vector load.  Backward-input with stride 1 is the forward
correlation of dy with the flipped filter; with larger strides dy rows are scattered
into a ring of padded rows.  Backward-weight sums each image's taps in registers, then
over images in a fixed order (deterministic, independent of the thread count).

Small-channel layers (groups 1, stride 1, dilation 1, R * S <= 64; LeNet C3 / C5) run the
kernels of _conv_small.pxi / _conv_small_impl.h: vector lanes over images (or over
flattened padded rows when the batch is small), backward-input as the forward of dy with
the flipped filters.  Filters 5 wide run the lanes forward as a 1-D Winograd F(2, 5) along
the rows (_conv_small_w1.h: 6 multiply-adds per 2 outputs and filter row instead of 10;
LeNet C3 forward 1 thread 342 -> 261 us; float32 error 3e-7 .. 6e-7 against float64, the
direct kernels' 1e-7 .. 3e-7).  Other shapes use the scalar loops below.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid

include "_conv_common.pxi"

# empty here; named so that edits to them trigger a rebuild
cdef extern from "_conv_direct_simd.h":
    pass
cdef extern from "_conv_direct_simd_bwd.h":
    pass

cdef extern from "_conv_direct_impl.h" nogil:
    ctypedef struct fc_dwg:
        Py_ssize_t nbuf, ndyb
    int fc_dw_setup(fc_dwg* g, int H, int W, int P, int Q, int R, int S, int sh, int sw,
                    int ph, int pw, int dh, int dw)
    int fc_dw_set_level(int level)
    int fc_dw_level()
    void fc_dw_fwd_f32(const float* x, const float* w, const float* b, float* y, int Kg, const fc_dwg* g, float* buf,
                       int edges)
    void fc_dw_fwd_f64(const double* x, const double* w, const double* b, double* y, int Kg, const fc_dwg* g,
                       double* buf, int edges)
    void fc_dw_bwd_in1_f32(const float* dy, const float* wf, float* dx, int Kg, const fc_dwg* g, float* buf,
                           int edges)
    void fc_dw_bwd_in1_f64(const double* dy, const double* wf, double* dx, int Kg, const fc_dwg* g, double* buf,
                           int edges)
    void fc_dw_bwd_in_f32(const float* dy, const float* w, float* dx, int Kg, const fc_dwg* g, float* buf, float* dyb)
    void fc_dw_bwd_in_f64(const double* dy, const double* w, double* dx, int Kg, const fc_dwg* g, double* buf, double* dyb)
    void fc_dw_bwd_w_f32(const float* x, const float* dy, double* out, int Kg, const fc_dwg* g, float* buf, float* dyb)
    void fc_dw_bwd_w_f64(const double* x, const double* dy, double* out, int Kg, const fc_dwg* g, double* buf,
                         double* dyb)

cnp.import_array()


cdef void _fwd_rows_fused(const real* x, const real* w, real* yp, const Geo* g, int n, int k) noexcept nogil:
    """Stride-1 rows with S = 3 or 5: all taps of a filter row in one pass over the
    output row where every tap is inside the input; single taps at the edges."""
    cdef int gi = k // g.Kg, c, r, s, p, q, ih, qa, qb, off
    cdef int qa_c = max(0, g.pw), qb_c = min(g.Q, g.W - (g.S - 1) * g.dw + g.pw)
    cdef int d1 = g.dw, d2 = 2 * g.dw, d3 = 3 * g.dw, d4 = 4 * g.dw
    cdef real w0, w1, w2, w3, w4, wv
    cdef int qas[5]
    cdef int qbs[5]
    cdef Py_ssize_t j, nq
    cdef const real* x0
    cdef const real* x1
    cdef const real* x2
    cdef const real* x3
    cdef const real* x4
    cdef real* y0
    cdef const real* wr
    cdef const real* xp
    cdef const real* xr
    cdef real* yr
    for s in range(g.S):
        _qrange(g, s, &qas[s], &qbs[s], &off)
    for c in range(g.Cg):
        xp = x + (<Py_ssize_t>n * g.C + gi * g.Cg + c) * g.H * g.W
        for r in range(g.R):
            wr = w + ((<Py_ssize_t>k * g.Cg + c) * g.R + r) * g.S
            w0 = wr[0]
            w1 = wr[1]
            w2 = wr[2]
            w3 = wr[3] if g.S == 5 else 0
            w4 = wr[4] if g.S == 5 else 0
            for p in range(g.P):
                ih = p * g.sh - g.ph + r * g.dh
                if ih < 0 or ih >= g.H:
                    continue
                xr = xp + ih * g.W - g.pw  # tap s of output q reads xr[q + s * dw]
                yr = yp + p * g.Q
                if qa_c < qb_c:  # pointers per tap and a Py_ssize_t index: the loops vectorize
                    x0 = xr + qa_c
                    x1 = x0 + d1
                    x2 = x0 + d2
                    x3 = x0 + d3
                    x4 = x0 + d4
                    y0 = yr + qa_c
                    nq = qb_c - qa_c
                    if g.S == 3:
                        for j in range(nq):
                            y0[j] = y0[j] + w0 * x0[j] + w1 * x1[j] + w2 * x2[j]
                    else:
                        for j in range(nq):
                            y0[j] = y0[j] + w0 * x0[j] + w1 * x1[j] + w2 * x2[j] + w3 * x3[j] + w4 * x4[j]
                for s in range(g.S):
                    wv = wr[s]
                    qa = qas[s]
                    qb = qbs[s]
                    if qa_c >= qb_c:  # no common range: every tap on its own
                        for q in range(qa, qb):
                            yr[q] += wv * xr[q + s * g.dw]
                        continue
                    for q in range(qa, min(qb, qa_c)):
                        yr[q] += wv * xr[q + s * g.dw]
                    for q in range(max(qa, qb_c), qb):
                        yr[q] += wv * xr[q + s * g.dw]


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
    if g.sw == 1 and (g.S == 3 or g.S == 5):
        _fwd_rows_fused(x, w, yp, g, n, k)
        return
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



cdef inline void* _ptr(a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


def _simd_level(level=None):
    """The depthwise kernels' instruction set: 0 SSE2, 1 AVX2+FMA, 2 AVX-512F. With
    ``level``, use at most that one (-1: the best this CPU has); returns the one in use."""
    if level is not None:
        return fc_dw_set_level(int(level))
    return fc_dw_level()


cdef bint _dw_setup(const Geo* g, fc_dwg* d):
    """The depthwise SIMD path's buffer geometry for g's forward correlation (False: not taken)."""
    if g.Cg != 1:
        return False
    return fc_dw_setup(d, g.H, g.W, g.P, g.Q, g.R, g.S, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw) != 0


cdef inline Py_ssize_t _chunk(Py_ssize_t nplanes, int nt) noexcept nogil:
    """Planes per scheduling chunk: about 8 chunks per thread."""
    return max(1, nplanes // (8 * nt))


cdef inline int _edges(Py_ssize_t t, Py_ssize_t nplanes) noexcept nogil:
    """Task t's planes' neighbours in the array: bit 0 one before them, bit 1 one after
    (the unpadded kernels read a few elements across a row's borders and mask them)."""
    return (1 if t > 0 else 0) | (2 if t + 1 < nplanes else 0)


cdef inline Py_ssize_t _round16(Py_ssize_t n) noexcept nogil:
    return (n + 15) // 16 * 16


cdef void _fwd_dw(const real* x, const real* w, const real* b, real* y, const Geo* g,
                  const fc_dwg* d, real* work, Py_ssize_t ws, int nt) noexcept nogil:
    cdef Py_ssize_t t, hw = <Py_ssize_t>g.H * g.W, kpq = <Py_ssize_t>g.Kg * g.P * g.Q
    cdef Py_ssize_t krs = <Py_ssize_t>g.Kg * g.R * g.S
    cdef Py_ssize_t nplanes = <Py_ssize_t>g.N * g.C
    cdef int c
    cdef real* buf
    with parallel(num_threads=nt):
        buf = work + threadid() * ws
        # chunks of consecutive planes: a thread slowed down by other work on the machine
        # does not hold the others up
        for t in prange(nplanes, schedule="dynamic", chunksize=_chunk(nplanes, nt)):
            c = t % g.C
            if real is float:
                fc_dw_fwd_f32(x + t * hw, w + c * krs, NULL if b == NULL else b + c * g.Kg, y + t * kpq, g.Kg, d, buf,
                              _edges(t, nplanes))
            else:
                fc_dw_fwd_f64(x + t * hw, w + c * krs, NULL if b == NULL else b + c * g.Kg, y + t * kpq, g.Kg, d, buf,
                              _edges(t, nplanes))


cdef void _bwd_input_dw(const real* dy, const real* w, real* dx, const Geo* g, const fc_dwg* d,
                        bint unit, real* work, Py_ssize_t ws, int nt) noexcept nogil:
    """unit (stride 1): d is the flipped-filter correlation dy -> dx and w the flipped w."""
    cdef Py_ssize_t t, hw = <Py_ssize_t>g.H * g.W, kpq = <Py_ssize_t>g.Kg * g.P * g.Q
    cdef Py_ssize_t krs = <Py_ssize_t>g.Kg * g.R * g.S
    cdef Py_ssize_t nplanes = <Py_ssize_t>g.N * g.C
    cdef int c
    cdef real* buf
    with parallel(num_threads=nt):
        buf = work + threadid() * ws
        for t in prange(nplanes, schedule="dynamic", chunksize=_chunk(nplanes, nt)):
            c = t % g.C
            if real is float:
                if unit:
                    fc_dw_bwd_in1_f32(dy + t * kpq, w + c * krs, dx + t * hw, g.Kg, d, buf, _edges(t, nplanes))
                else:
                    fc_dw_bwd_in_f32(dy + t * kpq, w + c * krs, dx + t * hw, g.Kg, d, buf, buf + _round16(d.nbuf))
            else:
                if unit:
                    fc_dw_bwd_in1_f64(dy + t * kpq, w + c * krs, dx + t * hw, g.Kg, d, buf, _edges(t, nplanes))
                else:
                    fc_dw_bwd_in_f64(dy + t * kpq, w + c * krs, dx + t * hw, g.Kg, d, buf, buf + _round16(d.nbuf))


cdef void _bwd_weight_dw(const real* dy, const real* x, double* part, const Geo* g, const fc_dwg* d,
                         real* work, Py_ssize_t ws, int nt) noexcept nogil:
    """part[n, k, :] = image n's R*S taps of dw[k]."""
    cdef Py_ssize_t t, hw = <Py_ssize_t>g.H * g.W, kpq = <Py_ssize_t>g.Kg * g.P * g.Q
    cdef Py_ssize_t krs = <Py_ssize_t>g.Kg * g.R * g.S
    cdef Py_ssize_t nplanes = <Py_ssize_t>g.N * g.C
    cdef real* buf
    with parallel(num_threads=nt):
        buf = work + threadid() * ws
        for t in prange(nplanes, schedule="dynamic", chunksize=_chunk(nplanes, nt)):
            if real is float:
                fc_dw_bwd_w_f32(x + t * hw, dy + t * kpq, part + t * krs, g.Kg, d, buf, buf + _round16(d.nbuf))
            else:
                fc_dw_bwd_w_f64(x + t * hw, dy + t * kpq, part + t * krs, g.Kg, d, buf, buf + _round16(d.nbuf))


cdef tuple _work(const fc_dwg* d, int nt, dtype, bint with_dy):
    """Per-thread buffers, zeroed (the kernels never write their padding): (array, elements
    per thread)."""
    cdef Py_ssize_t ws = _round16(d.nbuf) + (_round16(d.ndyb) if with_dy else 0)
    return np.zeros(nt * ws, dtype=dtype), ws


include "_conv_small.pxi"


def pick(op, x_shape, w_shape, stride, padding, dilation, groups):
    """'direct' or 'gemm' for a non-depthwise, non-1x1, non-Winograd shape (``conv``'s 'auto').

    'direct' where the small-channel kernels (_conv_small.pxi) measured faster than the
    GEMM paths (LeNet C1 / C3 / C5 shapes, float32 at 1 and 2 threads; float64 too except
    C1 forward, ~15 % slower): stride 1,
    no dilation, groups 1, 5x5-sized filters, few channels, small planes and a batch that
    fills the vector lanes (float32 lanes assumed; float64 has half as many).  C = 1
    layers (LeNet C1) run the depthwise kernels there, faster than the small-channel ones.
    """
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    if groups != 1 or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1) or R * S > 64:
        return "gemm"
    P, Q = H + 2 * padding[0] - R + 1, W + 2 * padding[1] - S + 1
    if P < 1 or Q < 1:
        return "gemm"
    # measured: the batch-vector kernels win on 5x5 filters over batches that fill the
    # lanes (LeNet); 3x3 ones (CIFAR ResNet stem: 0.85x of GEMM), partly-filled lanes and
    # large planes were slower or not measured
    lanes = fc_sm_lanes(4)
    full = N >= lanes and (-(-N // lanes) * lanes) <= 1.25 * N
    if not full or R * S < 16 or P * Q > 1024:
        return "gemm"
    if op == "conv2d_backward_weight" and C <= 16 and K <= 64:
        return "direct"
    if op == "conv2d_forward" and C * R * S <= 400 and K <= 128:
        return "direct"
    # stride-1 dx: the batch-vector forward of dy with the flipped filters (C outputs: few
    # of them leave the register block of 8 filters mostly empty)
    if (op == "conv2d_backward_input" and K * R * S <= 400 and 4 <= C <= 128
            and padding[0] <= R - 1 and padding[1] <= S - 1):
        return "direct"
    return "gemm"


def forward(x, w, b, y, Geo g, int nt):
    cdef fc_dwg d
    cdef void* px = _ptr(x)
    cdef void* pwt = _ptr(w)
    cdef void* pb = NULL if b is None else _ptr(b)
    cdef void* py = _ptr(y)
    cdef bint is32 = x.dtype == np.float32
    cdef bint dw = _dw_setup(&g, &d)
    cdef Py_ssize_t ws = 0
    cdef void* pw = NULL
    if not dw and _small_forward(x, w, b, y, g, nt) is not None:  # (C = 1: the depthwise kernels are faster)
        return y
    if dw:
        nt = max(1, min(nt, g.N * g.C))
        work, ws = _work(&d, nt, x.dtype, False)
        pw = _ptr(work)
    with nogil:
        if dw and is32:
            _fwd_dw(<float*>px, <float*>pwt, <float*>pb, <float*>py, &g, &d, <float*>pw, ws, nt)
        elif dw:
            _fwd_dw(<double*>px, <double*>pwt, <double*>pb, <double*>py, &g, &d, <double*>pw, ws, nt)
        elif is32:
            _fwd_direct(<float*>px, <float*>pwt, <float*>pb, <float*>py, &g, nt)
        else:
            _fwd_direct(<double*>px, <double*>pwt, <double*>pb, <double*>py, &g, nt)
    return y


def backward_input(dy, w, dx, Geo g, int nt):
    cdef fc_dwg d
    cdef bint unit = g.sh == 1 and g.sw == 1
    cdef bint dw = _dw_setup(&g, &d)
    if not dw and _small_backward_input(dy, w, dx, g, nt) is not None:
        return dx
    if dw and unit:  # dx = dy correlated with the flipped filter, padding (R-1)*d - p
        w = np.ascontiguousarray(w[:, :, ::-1, ::-1])
        dw = fc_dw_setup(&d, g.P, g.Q, g.H, g.W, g.R, g.S, 1, 1, (g.R - 1) * g.dh - g.ph,
                         (g.S - 1) * g.dw - g.pw, g.dh, g.dw) != 0
    cdef void* pdy = _ptr(dy)
    cdef void* pwt = _ptr(w)
    cdef void* pdx = _ptr(dx)
    cdef bint is32 = dy.dtype == np.float32
    cdef Py_ssize_t ws = 0
    cdef void* pw = NULL
    if dw:
        nt = max(1, min(nt, g.N * g.C))
        work, ws = _work(&d, nt, dy.dtype, not unit)
        pw = _ptr(work)
    with nogil:
        if dw and is32:
            _bwd_input_dw(<float*>pdy, <float*>pwt, <float*>pdx, &g, &d, unit, <float*>pw, ws, nt)
        elif dw:
            _bwd_input_dw(<double*>pdy, <double*>pwt, <double*>pdx, &g, &d, unit, <double*>pw, ws, nt)
        elif is32:
            _bwd_input_direct(<float*>pdy, <float*>pwt, <float*>pdx, &g, nt)
        else:
            _bwd_input_direct(<double*>pdy, <double*>pwt, <double*>pdx, &g, nt)
    return dx


def backward_weight(dy, x, dw, Geo g, int nt):
    cdef fc_dwg d
    cdef void* pdy = _ptr(dy)
    cdef void* px = _ptr(x)
    cdef void* pdw = _ptr(dw)
    cdef bint is32 = dy.dtype == np.float32
    cdef Py_ssize_t ws
    cdef void* pw
    cdef void* pc
    if _dw_setup(&g, &d):
        nt = max(1, min(nt, g.N * g.C))
        work, ws = _work(&d, nt, x.dtype, True)
        part = np.empty((g.N, g.K * g.R * g.S), dtype=np.float64)
        pw = _ptr(work)
        pc = _ptr(part)
        with nogil:
            if is32:
                _bwd_weight_dw(<float*>pdy, <float*>px, <double*>pc, &g, &d, <float*>pw, ws, nt)
            else:
                _bwd_weight_dw(<double*>pdy, <double*>px, <double*>pc, &g, &d, <double*>pw, ws, nt)
        dw[...] = part.sum(axis=0).reshape(dw.shape)  # over images in a fixed order
        return dw
    if _small_backward_weight(dy, x, dw, g, nt) is not None:
        return dw
    nt = max(1, min(nt, g.K * g.Cg))
    scratch = np.empty(nt * g.R * g.S, dtype=np.float64)
    pc = _ptr(scratch)
    with nogil:
        if is32:
            _bwd_weight_direct(<float*>pdy, <float*>px, <float*>pdw, &g, <double*>pc, nt)
        else:
            _bwd_weight_direct(<double*>pdy, <double*>px, <double*>pdw, &g, <double*>pc, nt)
    return dw
