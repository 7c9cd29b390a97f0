# Pointwise (1x1, stride 1, no padding) forward item: textually included by conv.pyx.
#
# float32 on AVX-512 CPUs: _conv_1x1.h's unpacked 8x48 kernel (W rows broadcast, x rows
# loaded in place, bias in the epilogue, next panel prefetched); elsewhere (float64, other
# CPUs) one OpenBLAS GEMM per image, group and column chunk, as before.

cdef extern from "_conv_1x1.h" nogil:
    int fc_pw_available()
    int fc_pw_no_buffer, fc_pw_shift
    void fc_pw_forward(int K, int C, const float* w, Py_ssize_t ldw, const float* x, Py_ssize_t xs,
                       float* y, Py_ssize_t ys, Py_ssize_t hw, int N, int part, int nparts,
                       const float* bias)

cdef bint _PW_AVX512 = fc_pw_available() != 0


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
        if _PW_AVX512 and hw >= 16:
            per = g.N * nchunk  # items per group
            gi = it // per
            fc_pw_forward(g.Kg, g.Cg, w + <Py_ssize_t>gi * g.Kg * g.Cg, g.Cg, x + <Py_ssize_t>gi * g.Cg * hw,
                          <Py_ssize_t>g.C * hw, y + <Py_ssize_t>gi * g.Kg * hw, <Py_ssize_t>g.K * hw, hw, g.N,
                          it % per, per, NULL if b == NULL else b + gi * g.Kg)
            return
    _split(hw, nchunk, ch, &a, &e)
    if e > a:
        _gemm(c'N', c'N', e - a, g.Kg, g.Cg, <real>1, xg + a, hw, wg, g.Cg, <real>0, yg + a, hw)
        if bg != NULL:
            _bias_rows(yg, bg, g.Kg, hw, a, e)


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
