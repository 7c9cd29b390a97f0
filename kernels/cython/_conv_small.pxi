# Small-channel (LeNet-sized) direct conv paths of _conv_direct.pyx: the flattened-row
# SIMD kernels of _conv_small_impl.h (stride 1, dilation 1, groups 1, R * S <= 64).
# Textually included by _conv_direct.pyx.

cdef extern from "_conv_small_simd.h":
    pass
cdef extern from "_conv_small_w1.h":  # (named for rebuilds; included by _conv_small_simd.h)
    pass

cdef extern from "_conv_small_impl.h" nogil:
    ctypedef struct fc_smg:
        int J, L, Kp
    int FC_SM_NB
    int fc_sm_setup(fc_smg* g, int N, int C, int H, int W, int K, int P, int Q, int R, int S, int ph, int pw)
    int fc_sm_jalloc(const fc_smg* g)
    Py_ssize_t fc_sm_nv_extra(const fc_smg* g, int lanes)
    Py_ssize_t fc_sm_w1_setup(fc_smg* g, int lanes)
    void fc_sm_packw1_f32(const float* w, float* up, const fc_smg* g)
    void fc_sm_packw1_f64(const double* w, double* up, const fc_smg* g)
    void fc_sm_fwd_nv1w_f32(const float* x, const float* up, const float* b, float* y, int n0, const fc_smg* g,
                            float* xt)
    void fc_sm_fwd_nv1w_f64(const double* x, const double* up, const double* b, double* y, int n0,
                            const fc_smg* g, double* xt)
    int fc_sm_lanes(int es)
    void fc_sm_fwd_nv_f32(const float* x, const float* wp, const float* b, float* y, int n0, const fc_smg* g,
                          float* xt)
    void fc_sm_fwd_nv_f64(const double* x, const double* wp, const double* b, double* y, int n0, const fc_smg* g,
                          double* xt)
    void fc_sm_packw_f32(const float* w, float* wp, const fc_smg* g)
    void fc_sm_packw_f64(const double* w, double* wp, const fc_smg* g)
    void fc_sm_fwd_f32(const float* x, const float* wp, const float* b, float* y, const fc_smg* g, float* xb, float* yb)
    void fc_sm_fwd_f64(const double* x, const double* wp, const double* b, double* y, const fc_smg* g, double* xb,
                       double* yb)
    void fc_sm_bww_nv_f32(const float* x, const float* dy, int n0, const fc_smg* g, float* xt, float* dyt,
                          double* out)
    void fc_sm_bww_nv_f64(const double* x, const double* dy, int n0, const fc_smg* g, double* xt, double* dyt,
                          double* out)
    void fc_sm_bww_f32(const float* x, const float* dy, int n0, int nb, const fc_smg* g, float* xb, float* dyb,
                       double* out)
    void fc_sm_bww_f64(const double* x, const double* dy, int n0, int nb, const fc_smg* g, double* xb, double* dyb,
                       double* out)


cdef bint _small_setup(const Geo* g, fc_smg* s):
    """The small-channel path's geometry for g (False: shape not taken)."""
    if g.groups != 1 or g.sh != 1 or g.sw != 1 or g.dh != 1 or g.dw != 1:
        return False
    return fc_sm_setup(s, g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.R, g.S, g.ph, g.pw) != 0


cdef void _small_fwd(const real* x, const real* wp, const real* b, real* y, const Geo* g, const fc_smg* s,
                     real* work, Py_ssize_t ws, int nt) noexcept nogil:
    cdef Py_ssize_t n, chw = <Py_ssize_t>g.C * g.H * g.W, kpq = <Py_ssize_t>g.K * g.P * g.Q
    cdef real* buf
    with parallel(num_threads=nt):
        buf = work + threadid() * ws
        for n in prange(g.N, schedule="dynamic"):
            if real is float:
                fc_sm_fwd_f32(x + n * chw, wp, b, y + n * kpq, s, buf, buf + <Py_ssize_t>g.C * s.L)
            else:
                fc_sm_fwd_f64(x + n * chw, wp, b, y + n * kpq, s, buf, buf + <Py_ssize_t>g.C * s.L)


cdef void _small_bww(const real* x, const real* dy, double* part, const Geo* g, const fc_smg* s,
                     real* work, Py_ssize_t ws, int nt, int lanes) noexcept nogil:
    """lanes > 0: the batch-vector kernel on chunks of that many images."""
    cdef Py_ssize_t nb = lanes if lanes > 0 else FC_SM_NB
    cdef Py_ssize_t t, nchunk = (g.N + nb - 1) // nb
    cdef Py_ssize_t xts = <Py_ssize_t>g.C * (g.P + g.R - 1) * (g.Q + g.S - 1) * lanes
    cdef Py_ssize_t kcrs = <Py_ssize_t>g.K * g.C * g.R * g.S
    cdef Py_ssize_t xs = <Py_ssize_t>FC_SM_NB * g.C * s.L
    cdef int n0
    cdef real* buf
    with parallel(num_threads=nt):
        buf = work + threadid() * ws
        for t in prange(nchunk, schedule="dynamic"):
            n0 = t * nb
            if lanes > 0:
                if real is float:
                    fc_sm_bww_nv_f32(x, dy, n0, s, buf, buf + xts, part + t * kcrs)
                else:
                    fc_sm_bww_nv_f64(x, dy, n0, s, buf, buf + xts, part + t * kcrs)
            elif real is float:
                fc_sm_bww_f32(x, dy, n0, min(FC_SM_NB, g.N - n0), s, buf, buf + xs, part + t * kcrs)
            else:
                fc_sm_bww_f64(x, dy, n0, min(FC_SM_NB, g.N - n0), s, buf, buf + xs, part + t * kcrs)


cdef void _small_fwd_nv(const real* x, const real* wp, const real* b, real* y, const Geo* g, const fc_smg* s,
                        int lanes, real* work, Py_ssize_t ws, int nt, bint w1) noexcept nogil:
    cdef Py_ssize_t t, nchunk = (g.N + lanes - 1) // lanes
    cdef real* buf
    with parallel(num_threads=nt):
        buf = work + threadid() * ws
        for t in prange(nchunk, schedule="dynamic"):
            if w1:
                if real is float:
                    fc_sm_fwd_nv1w_f32(x, wp, b, y, t * lanes, s, buf)
                else:
                    fc_sm_fwd_nv1w_f64(x, wp, b, y, t * lanes, s, buf)
            elif real is float:
                fc_sm_fwd_nv_f32(x, wp, b, y, t * lanes, s, buf)
            else:
                fc_sm_fwd_nv_f64(x, wp, b, y, t * lanes, s, buf)


_small_mode = ["auto"]  # tests: 'flat' / 'nv' / 'w1' force one forward kernel ('w1': S = 5 only)


cdef bint _use_nv(const Geo* g, const fc_smg* s, int lanes):
    """Batch-vector lanes when they waste less than the flattened rows' wrap-around."""
    if _small_mode[0] != "auto":
        return _small_mode[0] in ("nv", "w1")
    cdef double flat = s.J / <double>(g.P * g.Q)
    cdef double nv = ((g.N + lanes - 1) // lanes * lanes) / <double>g.N
    return nv * 1.15 < flat


cdef object _small_forward(x, w, b, y, Geo g, int nt):
    """y by the small-channel kernels, or None when the shape is not taken."""
    cdef fc_smg s
    if not _small_setup(&g, &s):
        return None
    cdef int lanes = fc_sm_lanes(x.itemsize)
    cdef bint nv = _use_nv(&g, &s, lanes)
    # rows of 5 taps: a 1-D Winograd F(2, 5) along them (fwd_nv1w_), 1.67x fewer multiply-adds
    cdef bint w1 = nv and g.S == 5 and _small_mode[0] in ("auto", "w1")
    nt = max(1, min(nt, (g.N + lanes - 1) // lanes if nv else g.N))
    cdef Py_ssize_t ws = _round16(<Py_ssize_t>g.C * s.L + 8 * <Py_ssize_t>fc_sm_jalloc(&s))
    if w1:
        ws = _round16(fc_sm_w1_setup(&s, lanes))
    elif nv:
        ws = _round16(<Py_ssize_t>g.C * (g.P + g.R - 1) * (g.Q + g.S - 1) * lanes + fc_sm_nv_extra(&s, lanes))
    # (the batch-vector packing writes its buffer's padding zeros itself)
    work = (np.empty if nv else np.zeros)(nt * ws, dtype=x.dtype)
    wp = np.empty(<Py_ssize_t>s.Kp * g.C * g.R * (6 if w1 else g.S), dtype=x.dtype)
    cdef void* px = _ptr(x)
    cdef void* pwt = _ptr(w)
    cdef void* pwp = _ptr(wp)
    cdef void* pb = NULL if b is None else _ptr(b)
    cdef void* py = _ptr(y)
    cdef void* pw = _ptr(work)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            if w1:
                fc_sm_packw1_f32(<float*>pwt, <float*>pwp, &s)
            else:
                fc_sm_packw_f32(<float*>pwt, <float*>pwp, &s)
            if nv:
                _small_fwd_nv(<float*>px, <float*>pwp, <float*>pb, <float*>py, &g, &s, lanes, <float*>pw, ws, nt, w1)
            else:
                _small_fwd(<float*>px, <float*>pwp, <float*>pb, <float*>py, &g, &s, <float*>pw, ws, nt)
        else:
            if w1:
                fc_sm_packw1_f64(<double*>pwt, <double*>pwp, &s)
            else:
                fc_sm_packw_f64(<double*>pwt, <double*>pwp, &s)
            if nv:
                _small_fwd_nv(<double*>px, <double*>pwp, <double*>pb, <double*>py, &g, &s, lanes, <double*>pw, ws, nt,
                              w1)
            else:
                _small_fwd(<double*>px, <double*>pwp, <double*>pb, <double*>py, &g, &s, <double*>pw, ws, nt)
    return y


cdef object _small_backward_input(dy, w, dx, Geo g, int nt):
    """dx by the small-channel forward kernel (stride 1: dy correlated with the flipped,
    transposed filters, padding R - 1 - p), or None when the shape is not taken."""
    cdef Geo t = g
    if g.groups != 1 or g.sh != 1 or g.sw != 1 or g.dh != 1 or g.dw != 1 or g.ph > g.R - 1 or g.pw > g.S - 1:
        return None
    t.C, t.H, t.W, t.K, t.P, t.Q = g.K, g.P, g.Q, g.C, g.H, g.W
    t.ph, t.pw = g.R - 1 - g.ph, g.S - 1 - g.pw
    t.Cg, t.Kg = t.C, t.K
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return _small_forward(dy, wt, None, dx, t, nt)


cdef object _small_backward_weight(dy, x, dw, Geo g, int nt):
    """dw by the small-channel kernels, or None when the shape is not taken."""
    cdef fc_smg s
    if not _small_setup(&g, &s):
        return None
    cdef int lanes = fc_sm_lanes(x.itemsize)
    if not _use_nv(&g, &s, lanes):
        lanes = 0
    cdef Py_ssize_t nb = lanes if lanes > 0 else FC_SM_NB
    cdef Py_ssize_t nchunk = (g.N + nb - 1) // nb
    nt = max(1, min(nt, nchunk))
    cdef Py_ssize_t ws = _round16(<Py_ssize_t>FC_SM_NB * (g.C * <Py_ssize_t>s.L + s.Kp * <Py_ssize_t>s.J))
    if lanes > 0:
        ws = _round16(<Py_ssize_t>lanes * (g.C * <Py_ssize_t>(g.P + g.R - 1) * (g.Q + g.S - 1) + g.K * g.P * g.Q))
    work = (np.empty if lanes > 0 else np.zeros)(nt * ws, dtype=x.dtype)  # (lanes: packing writes all)
    part = np.empty((nchunk, g.K * g.C * g.R * g.S), dtype=np.float64)
    cdef void* px = _ptr(x)
    cdef void* pdy = _ptr(dy)
    cdef void* pp = _ptr(part)
    cdef void* pw = _ptr(work)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _small_bww(<float*>px, <float*>pdy, <double*>pp, &g, &s, <float*>pw, ws, nt, lanes)
        else:
            _small_bww(<double*>px, <double*>pdy, <double*>pp, &g, &s, <double*>pw, ws, nt, lanes)
    # over chunks of images in a fixed order: deterministic for any thread count
    dw[...] = (part[0] if nchunk == 1 else part.sum(axis=0)).reshape(dw.shape)
    return dw
