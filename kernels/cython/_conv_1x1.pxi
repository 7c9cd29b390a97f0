# Pointwise (1x1, stride 1, no padding) conv items: textually included by conv.pyx.
#
# float32 on AVX-512 CPUs with hw >= 16: _conv_1x1.h's 8x48 kernel over the column space
# of all images (each thread packs a 48-column panel of x once and runs every 8-row block
# of W on it; the next panel is prefetched, bias fused, stores masked at the edges).
# Elsewhere (float64, other CPUs, tiny images): one OpenBLAS GEMM per image, group and
# column chunk.  Forward: _pw_fwd_item.  Backward-input (dx = W^T . dy, the same kernel
# reading W transposed): _pw_bwd_input_item, conv.pyx's backward-input branch.
# Backward-weight (dW += dY . X^T, _conv_1x1_bw.h's 6x64 kernel, any hw): _pw_bwd_weight_item.
# Test hooks: _pw_use_avx512, _pw_no_buffer (both kernels), _pw_force_shift, _pwb_tune;
# _pw_backward_input drives the backward-input items.

cdef extern from "_conv_1x1.h" nogil:
    int fc_pw_available()
    int fc_pw_no_buffer, fc_pw_shift
    void fc_pw_forward(int K, int C, const float* w, Py_ssize_t ldw, Py_ssize_t ask, const float* x, Py_ssize_t xs,
                       float* y, Py_ssize_t ys, Py_ssize_t hw, int N, int part, int nparts,
                       const float* bias)

cdef extern from "_conv_1x1_bw.h" nogil:
    int fc_pwb_pfa, fc_pwb_pfb, fc_pwb_kc, fc_pwb_minseg
    int fc_pwb_weight(int K, int C, const float* dy, Py_ssize_t dys, const float* x, Py_ssize_t xs, Py_ssize_t hw,
                     int N, float* dw, Py_ssize_t ldw, int part, int nparts)

cdef bint _PW_AVX512 = fc_pw_available() != 0
cdef enum:
    _PW_MAX_DEPTH = 16384  # the kernel's panel buffer per thread: depth x 48 floats (3 MiB)


cdef void _pw_fwd_item(const real* x, const real* w, const real* b, real* y, const Geo* g,
                       int it, int nchunk) noexcept nogil:
    """Item ``it`` of y = W . x (+ b) for a 1x1 conv.  AVX-512: the items of a group split its
    (48-column panel, 8-row block) work units evenly, columns spanning images; else item =
    (image, group, column chunk), one BLAS GEMM."""
    cdef int ng = it // nchunk, ch = it % nchunk
    cdef int n = ng // g.groups, gi = ng % g.groups
    cdef int hw = g.H * g.W, a, e, per
    cdef real* xg = <real*>x + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw
    cdef real* wg = <real*>w + <Py_ssize_t>gi * g.Kg * g.Cg
    cdef real* yg = y + (<Py_ssize_t>n * g.K + gi * g.Kg) * hw
    cdef real* bg = NULL if b == NULL else <real*>b + gi * g.Kg
    if real is float:
        if _PW_AVX512 and hw >= 16 and g.Cg <= _PW_MAX_DEPTH:
            per = g.N * nchunk  # items per group
            gi = it // per
            fc_pw_forward(g.Kg, g.Cg, w + <Py_ssize_t>gi * g.Kg * g.Cg, g.Cg, 1, x + <Py_ssize_t>gi * g.Cg * hw,
                          <Py_ssize_t>g.C * hw, y + <Py_ssize_t>gi * g.Kg * hw, <Py_ssize_t>g.K * hw, hw, g.N,
                          it % per, per, NULL if b == NULL else <real*>b + gi * g.Kg)
            return
    _split(hw, nchunk, ch, &a, &e)
    if e > a:
        _gemm(c'N', c'N', e - a, g.Kg, g.Cg, <real>1, xg + a, hw, wg, g.Cg, <real>0, yg + a, hw)
        if bg != NULL:
            _bias_rows(yg, bg, g.Kg, hw, a, e)


cdef void _pw_bwd_input_item(const real* dy, const real* w, real* dx, const Geo* g, int it,
                             int nchunk) noexcept nogil:
    """Item ``it`` of dx = W^T . dy for a 1x1 conv (the same kernel with W read transposed:
    element (c, k) at w[k*Cg + c]); items as in _pw_fwd_item.  conv.pyx's backward-input
    pointwise branch."""
    cdef int ng = it // nchunk, ch = it % nchunk
    cdef int n = ng // g.groups, gi = ng % g.groups
    cdef int hw = g.H * g.W, a, e, per
    if real is float:
        if _PW_AVX512 and hw >= 16 and g.Kg <= _PW_MAX_DEPTH:
            per = g.N * nchunk
            gi = it // per
            fc_pw_forward(g.Cg, g.Kg, w + <Py_ssize_t>gi * g.Kg * g.Cg, 1, g.Cg, dy + <Py_ssize_t>gi * g.Kg * hw,
                          <Py_ssize_t>g.K * hw, dx + <Py_ssize_t>gi * g.Cg * hw, <Py_ssize_t>g.C * hw, hw, g.N,
                          it % per, per, NULL)
            return
    _split(hw, nchunk, ch, &a, &e)
    if e > a:
        _gemm(c'N', c'T', e - a, g.Cg, g.Kg, <real>1, <real*>dy + (<Py_ssize_t>n * g.K + gi * g.Kg) * hw + a, hw,
              <real*>w + <Py_ssize_t>gi * g.Kg * g.Cg, g.Cg, <real>0, dx + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw + a, hw)


cdef void _pw_bwd_weight_item(const real* dy, const real* x, real* dw, const Geo* g, int it,
                              int nchunk) noexcept nogil:
    """Item ``it`` of dw += dY . X^T for a 1x1 conv, into this thread's private dw copy.
    AVX-512 float32: the items of a group are the parts of _conv_1x1_bw.h's split (reduction
    segments x row ranges, columns spanning images); else item = (image, group, column chunk),
    one BLAS GEMM accumulating (beta = 1).  conv.pyx's backward-weight pointwise branch."""
    cdef int ng = it // nchunk, ch = it % nchunk
    cdef int n = ng // g.groups, gi = ng % g.groups
    cdef int hw = g.H * g.W, a, e, per
    if real is float:
        if _PW_AVX512:
            per = g.N * nchunk
            gi = it // per
            fc_pwb_weight(g.Kg, g.Cg, dy + <Py_ssize_t>gi * g.Kg * hw, <Py_ssize_t>g.K * hw,
                         x + <Py_ssize_t>gi * g.Cg * hw, <Py_ssize_t>g.C * hw, hw, g.N,
                         dw + <Py_ssize_t>gi * g.Kg * g.Cg, g.Cg, it % per, per)
            return
    _split(hw, nchunk, ch, &a, &e)
    if e > a:
        _gemm(c'T', c'N', g.Cg, g.Kg, e - a, <real>1, <real*>x + (<Py_ssize_t>n * g.C + gi * g.Cg) * hw + a, hw,
              <real*>dy + (<Py_ssize_t>n * g.K + gi * g.Kg) * hw + a, hw, <real>1,
              dw + <Py_ssize_t>gi * g.Kg * g.Cg, g.Cg)


def _pw_backward_input(dy, w, int groups, int nchunk=1):
    """Test/benchmark driver of _pw_bwd_input_item (C-contiguous float arrays, no validation:
    conv2d_backward_input's checks apply once it is wired in); items in a prange."""
    cdef Geo g
    g.N, g.K, g.H, g.W = dy.shape
    g.Kg = g.K // groups
    g.Cg = w.shape[1]
    g.C = g.Cg * groups
    g.groups = groups
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dy.dtype)
    cdef void* pdy = _ptr(dy)
    cdef void* pw = _ptr(w)
    cdef void* pdx = _ptr(dx)
    cdef int it, nitems = g.N * groups * nchunk, nt = num_threads(dx.size * g.Kg, 1 << 18)
    cdef bint is32 = dy.dtype == np.float32
    with _BlasSerial():
        with nogil:
            for it in prange(nitems, num_threads=nt, schedule="dynamic"):
                if is32:
                    _pw_bwd_input_item(<float*>pdy, <float*>pw, <float*>pdx, &g, it, nchunk)
                else:
                    _pw_bwd_input_item(<double*>pdy, <double*>pw, <double*>pdx, &g, it, nchunk)
    return dx


def _pw_no_buffer(on):
    """Test hook: make the kernel act as if its panel buffer could not be allocated."""
    global fc_pw_no_buffer
    fc_pw_no_buffer = 1 if on else 0


def _pw_force_shift(sh=-1):
    """Test hook: start the kernel's panels ``sh`` columns early (-1: by y's alignment)."""
    global fc_pw_shift
    fc_pw_shift = sh


def _pw_use_avx512(on=None):
    """Test hook: whether float32 1x1 forwards use the AVX-512 kernel (set with ``on``, only
    where the CPU has AVX-512F); returns the setting in force."""
    global _PW_AVX512
    if on is not None:
        _PW_AVX512 = bool(on) and fc_pw_available() != 0
    return bool(_PW_AVX512)



def _pwb_tune(pfa=None, pfb=None, kc=None, minseg=None):
    """Test/benchmark hook of the backward-weight kernel: its prefetches (pfa: the next row
    block's A lines, pfb: the next panel's B rows), chunk width ``kc`` and minimum reduction
    segment ``minseg`` (columns); returns the settings (pfa, pfb, kc, minseg)."""
    global fc_pwb_pfa, fc_pwb_pfb, fc_pwb_kc, fc_pwb_minseg
    if pfa is not None:
        fc_pwb_pfa = 1 if pfa else 0
    if pfb is not None:
        fc_pwb_pfb = 1 if pfb else 0
    if kc is not None:
        if not 1 <= kc <= 1 << 16:
            raise ValueError(f"_pwb_tune: kc must be in [1, 65536], got {kc}")
        fc_pwb_kc = kc
    if minseg is not None:
        if minseg < 1:
            raise ValueError(f"_pwb_tune: minseg must be >= 1, got {minseg}")
        fc_pwb_minseg = minseg
    return bool(fc_pwb_pfa), bool(fc_pwb_pfb), fc_pwb_kc, fc_pwb_minseg
