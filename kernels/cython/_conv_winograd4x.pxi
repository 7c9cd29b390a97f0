# F(4x4, 3x3) float32 tile transforms on AVX-512 CPUs (_wino_x4.h), textually included by
# _conv_winograd.pyx (shares its WG, SKEW, _next).  _inputs / _outputs of _conv_winograd4.pxi
# hand their float32 F(4x4) work here when the CPU has AVX-512F.
#
# A run is up to 16 lanes of tiles: consecutive tiles in (image, tile row, tile column) order,
# cut into segments of one tile row each, with one idle lane between segments; each segment's
# rows are copied (zero-padded) into a strip at 4 columns per lane, so small planes (4 tiles per
# row on res4 / CIFAR, 2 on res5) fill the vectors that a run of one tile row left 75-88 % empty.
# V and M keep their layout (tile i of the block at column i): the transforms compress the kept
# lanes on store and expand them on load.
cdef extern from "_wino_x4.h" nogil:
    int fcw4x_available()
    void fcw4x_in(const float* r0, Py_ssize_t W, float* v, Py_ssize_t cs, int nl, unsigned keep)
    void fcw4x_out(const float* mp, Py_ssize_t ks, float* y0, Py_ssize_t Q, int nl, unsigned keep, float bv)
    void fcw4x_seg_in(const float* plane, int H, int W, int h0, int w0, int ncol, float* dst, int nrows)
    void fcw4x_dy(const float* y0, Py_ssize_t Q, float* d, Py_ssize_t ks, int nl, unsigned keep)
    void fcw2x_in(const float* r0, Py_ssize_t W, float* v, Py_ssize_t cs, int nl, unsigned keep)
    void fcw2x_dy(const float* y0, Py_ssize_t Q, float* d, Py_ssize_t ks, int nl, unsigned keep)
    void fcw4x_seg_out(const float* src, float* plane, int P, int Q, int p0, int q0, int ncol)
    void fcw4x_prefetch_rows(const float* plane, int H, int W, int r0, int r1)
    void fcw4x_bgemm(int na, int K, int C, int nb, const float* U, Py_ssize_t us, const float* V, Py_ssize_t vs,
                     float* M, Py_ssize_t ms)

DEF XS = 96  # strip row stride (FCW4X_SS)
DEF XL = 16  # lanes per run

cdef bint _x4 = fcw4x_available() != 0


def _set_x4(bint on):
    """Use the AVX-512 F(4x4) transforms (when the CPU has them); returns the previous setting.
    For tests and benchmarks comparing them with the generic ones."""
    global _x4
    prev = _x4
    _x4 = on and fcw4x_available() != 0
    return prev


ctypedef struct XSeg:
    int n, ti, tj, m, lane


cdef inline int _xrun(const WG* g, int* n, int* ti, int* tj, int left, XSeg* sg, int* nl,
                      unsigned* keep, int gap=1) noexcept nogil:
    """Cut the next run of at most `left` tiles from tile (n, ti, tj) on into segments (sg),
    `gap` idle lanes apart, advancing the position; returns the segment count, sets the lane
    count and kept lanes."""
    cdef int L = 0, ns = 0, m
    keep[0] = 0
    while left > 0 and L < XL:
        m = min(g.tw - tj[0], min(left, XL - L))
        sg[ns].n = n[0]
        sg[ns].ti = ti[0]
        sg[ns].tj = tj[0]
        sg[ns].m = m
        sg[ns].lane = L
        keep[0] |= ((1u << m) - 1u) << L
        ns += 1
        left -= m
        nl[0] = L + m
        L += m + gap
        _next(g, m, n, ti, tj)
    return ns


cdef void _inputs_x(const float* x, float* V, const WG* g, Py_ssize_t t0, int nb, int c0, int c1,
                    int tile) noexcept nogil:
    """_inputs for float32 on AVX-512 (tile 4 or 2): V[xi][c][i] = (B^T d B)[xi], c0 <= c < c1."""
    cdef int i, c, n, ti, tj, ns, s, nl = 0, h0, w0, cnt, e = tile + 2
    cdef unsigned keep
    cdef Py_ssize_t hw = <Py_ssize_t>g.H * g.W, cs = <Py_ssize_t>g.C * nb + SKEW, wst
    cdef const float* xp
    cdef XSeg sg[XL]
    cdef float strip[6 * XS]
    cdef int pn0 = <int>(t0 // (g.th * g.tw)), pn1 = <int>((t0 + nb - 1) // (g.th * g.tw)), pn
    cdef int pr0 = tile * <int>((t0 % (g.th * g.tw)) // g.tw) - g.ph
    cdef int pr1 = tile * <int>(((t0 + nb - 1) % (g.th * g.tw)) // g.tw) - g.ph + e
    memset(strip, 0, sizeof(strip))
    for c in range(c0, c1):
        if c + 1 < c1:  # the next channel's rows of this block (misses on x cost 16 % on CIFAR)
            for pn in range(pn0, pn1 + 1):
                fcw4x_prefetch_rows(x + (<Py_ssize_t>pn * g.C + c + 1) * hw, g.H, g.W,
                                    pr0 if pn == pn0 else 0, pr1 if pn == pn1 else g.H)
        n = <int>(t0 // (g.th * g.tw))
        ti = <int>((t0 % (g.th * g.tw)) // g.tw)
        tj = <int>(t0 % g.tw)
        i = 0
        while i < nb:
            ns = _xrun(g, &n, &ti, &tj, nb - i, sg, &nl, &keep)
            cnt = 0
            for s in range(ns):
                cnt += sg[s].m
            h0 = tile * sg[0].ti - g.ph
            w0 = tile * sg[0].tj - g.pw
            xp = x + (<Py_ssize_t>sg[0].n * g.C + c) * hw
            if ns == 1 and h0 >= 0 and h0 + e <= g.H and w0 >= 0 and w0 + tile * nl + 2 <= g.W:
                xp = xp + h0 * g.W + w0
                wst = g.W
            else:
                for s in range(ns):
                    fcw4x_seg_in(x + (<Py_ssize_t>sg[s].n * g.C + c) * hw, g.H, g.W, tile * sg[s].ti - g.ph,
                                 tile * sg[s].tj - g.pw, tile * sg[s].m + 2, strip + tile * sg[s].lane, e)
                xp = strip
                wst = XS
            if tile == 4:
                fcw4x_in(xp, wst, V + c * nb + i, cs, nl, keep)
            else:
                fcw2x_in(xp, wst, V + c * nb + i, cs, nl, keep)
            i += cnt


cdef void _outputs_x(const float* M, const float* bias, float* y, const WG* g, Py_ssize_t t0, int nb,
                     int k0, int k1) noexcept nogil:
    """_outputs for float32 F(4x4) on AVX-512: y tiles = A^T M A (+ bias), k0 <= k < k1."""
    cdef int i, k, n, ti, tj, ns, s, nl = 0, p0, q0, cnt
    cdef unsigned keep
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q
    cdef float bv
    cdef XSeg sg[XL]
    cdef float buf[4 * XS]
    for k in range(k0, k1):
        bv = bias[k] if bias != NULL else 0
        n = <int>(t0 // (g.th * g.tw))
        ti = <int>((t0 % (g.th * g.tw)) // g.tw)
        tj = <int>(t0 % g.tw)
        i = 0
        while i < nb:
            ns = _xrun(g, &n, &ti, &tj, nb - i, sg, &nl, &keep)
            cnt = 0
            for s in range(ns):
                cnt += sg[s].m
            p0 = 4 * sg[0].ti
            q0 = 4 * sg[0].tj
            if ns == 1 and p0 + 4 <= g.P and q0 + 4 * nl <= g.Q:
                fcw4x_out(M + k * nb + i, ks, y + (<Py_ssize_t>sg[0].n * g.K + k) * pq + p0 * g.Q + q0, g.Q,
                          nl, keep, bv)
            else:
                fcw4x_out(M + k * nb + i, ks, buf, XS, nl, keep, bv)
                for s in range(ns):
                    fcw4x_seg_out(buf + 4 * sg[s].lane, y + (<Py_ssize_t>sg[s].n * g.K + k) * pq, g.P, g.Q,
                                  4 * sg[s].ti, 4 * sg[s].tj, 4 * sg[s].m)
            i += cnt


cdef void _dy_tiles_x(const float* dy, float* D, const WG* g, Py_ssize_t t0, int nb, int tile) noexcept nogil:
    """_dy_tiles for float32 on AVX-512 (tile 4 or 2): D[xi][k][i] = (A dY A^T)[xi] (dy tiles do
    not overlap, so segments need no idle lane between them)."""
    cdef int i, k, n, ti, tj, ns, s, nl = 0, p0, q0, cnt
    cdef unsigned keep
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q, qst
    cdef const float* yp
    cdef XSeg sg[XL]
    cdef float strip[4 * XS]
    memset(strip, 0, sizeof(strip))
    for k in range(g.K):
        n = <int>(t0 // (g.th * g.tw))
        ti = <int>((t0 % (g.th * g.tw)) // g.tw)
        tj = <int>(t0 % g.tw)
        i = 0
        while i < nb:
            ns = _xrun(g, &n, &ti, &tj, nb - i, sg, &nl, &keep, 0)
            cnt = 0
            for s in range(ns):
                cnt += sg[s].m
            p0 = tile * sg[0].ti
            q0 = tile * sg[0].tj
            if ns == 1 and p0 + tile <= g.P and q0 + tile * nl <= g.Q:
                yp = dy + (<Py_ssize_t>sg[0].n * g.K + k) * pq + p0 * g.Q + q0
                qst = g.Q
            else:
                for s in range(ns):
                    fcw4x_seg_in(dy + (<Py_ssize_t>sg[s].n * g.K + k) * pq, g.P, g.Q, tile * sg[s].ti,
                                 tile * sg[s].tj, tile * sg[s].m, strip + tile * sg[s].lane, tile)
                yp = strip
                qst = XS
            if tile == 4:
                fcw4x_dy(yp, qst, D + k * nb + i, ks, nl, keep)
            else:
                fcw2x_dy(yp, qst, D + k * nb + i, ks, nl, keep)
            i += cnt
