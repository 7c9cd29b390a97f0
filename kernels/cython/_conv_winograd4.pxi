# Tile transforms of F(2x2, 3x3) and F(4x4, 3x3), textually included by _conv_winograd.pyx (shares its
# real, WG, SKEW).  The arithmetic lives in _wino_impl.h (vectorised over runs of tiles, AVX-512 /
# AVX2 / baseline clones); here runs of tiles along a tile row are cut out of the planes.  Tiles that
# cross the zero padding or the plane's edge are transformed from a zero-padded copy of their rows
# (a strip), so every tile takes the vectorised path (small planes are mostly edge tiles).
cdef extern from "_wino_impl.h" nogil:
    void fcw_filters2_f32(const float* w, float* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                          Py_ssize_t fc)
    void fcw_filters2_f64(const double* w, double* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                          Py_ssize_t fc)
    void fcw_filters4_f32(const float* w, float* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                          Py_ssize_t fc)
    void fcw_filters4_f64(const double* w, double* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                          Py_ssize_t fc)
    void fcw_in2_f32(const float* r0, Py_ssize_t W, float* v, Py_ssize_t cs, int nj)
    void fcw_in2_f64(const double* r0, Py_ssize_t W, double* v, Py_ssize_t cs, int nj)
    void fcw_in4_f32(const float* r0, Py_ssize_t W, float* v, Py_ssize_t cs, int nj)
    void fcw_in4_f64(const double* r0, Py_ssize_t W, double* v, Py_ssize_t cs, int nj)
    void fcw_out2_f32(const float* mp, Py_ssize_t ks, float* y0, Py_ssize_t Q, int nj, float bv)
    void fcw_out2_f64(const double* mp, Py_ssize_t ks, double* y0, Py_ssize_t Q, int nj, double bv)
    void fcw_out4_f32(const float* mp, Py_ssize_t ks, float* y0, Py_ssize_t Q, int nj, float bv)
    void fcw_out4_f64(const double* mp, Py_ssize_t ks, double* y0, Py_ssize_t Q, int nj, double bv)
    void fcw_bgemm_f32(int na, int K, int C, int nb, const float* U, Py_ssize_t us, const float* V, Py_ssize_t vs,
                       float* M, Py_ssize_t ms)
    void fcw_bgemm_f64(int na, int K, int C, int nb, const double* U, Py_ssize_t us, const double* V, Py_ssize_t vs,
                       double* M, Py_ssize_t ms)
    void fcw_dy2_f32(const float* y0, Py_ssize_t Q, float* d, Py_ssize_t ks, int nj)
    void fcw_dy2_f64(const double* y0, Py_ssize_t Q, double* d, Py_ssize_t ks, int nj)
    void fcw_dy4_f32(const float* y0, Py_ssize_t Q, float* d, Py_ssize_t ks, int nj)
    void fcw_dy4_f64(const double* y0, Py_ssize_t Q, double* d, Py_ssize_t ks, int nj)
    void fcw_fgrad_f32(const float* dU, float* dw, Py_ssize_t n, Py_ssize_t KC, int na)
    void fcw_fgrad_f64(const double* dU, double* dw, Py_ssize_t n, Py_ssize_t KC, int na)


from libc.string cimport memcpy, memset

DEF NJ = 16  # tiles per vectorised run (FCW_NJ in _wino_impl.h)
DEF SS = 4 * NJ + 4  # row stride of the strip buffers


DEF FCH = 2048  # filters per parallel chunk of the filter transforms


cdef void _filters(const real* w, real* U, Py_ssize_t kc_total, int tile, int nt, Py_ssize_t fk,
                   Py_ssize_t fc) noexcept nogil:
    """U[xi][k][c] = (G g G^T)[xi] for every filter g = w[k, c] (components kc_total + SKEW apart),
    or with fk != 0 for the flipped, transposed filters of w (fk x fc x 3 x 3), chunks of filters
    over nt threads (serial, this was 5 ms of res5's forward on two threads)."""
    cdef Py_ssize_t ch, k0, n, KC = kc_total + SKEW
    for ch in prange((kc_total + FCH - 1) // FCH, num_threads=nt, schedule="static"):
        k0 = ch * FCH
        n = min(<Py_ssize_t>FCH, kc_total - k0)
        if real is float:
            if tile == 2:
                fcw_filters2_f32(w, U + k0, k0, n, KC, fk, fc)
            else:
                fcw_filters4_f32(w, U + k0, k0, n, KC, fk, fc)
        else:
            if tile == 2:
                fcw_filters2_f64(w, U + k0, k0, n, KC, fk, fc)
            else:
                fcw_filters4_f64(w, U + k0, k0, n, KC, fk, fc)


cdef inline void _filters_run(const real* w, real* U, Py_ssize_t s0, Py_ssize_t n, int tile, Py_ssize_t fk,
                              Py_ssize_t fc) noexcept nogil:
    """U[xi][i] = component xi of filter s0 + i (of w, or flipped/transposed with fk), i < n,
    components n + SKEW apart (one thread)."""
    if real is float:
        if tile == 2:
            fcw_filters2_f32(w, U, s0, n, n + SKEW, fk, fc)
        else:
            fcw_filters4_f32(w, U, s0, n, n + SKEW, fk, fc)
    else:
        if tile == 2:
            fcw_filters2_f64(w, U, s0, n, n + SKEW, fk, fc)
        else:
            fcw_filters4_f64(w, U, s0, n, n + SKEW, fk, fc)


cdef void _filter_grads(real* dU, Py_ssize_t ustride, int ncopy, real* dw, Py_ssize_t kc_total, int tile,
                        int nt) noexcept nogil:
    """dw[k, c] = G^T dU[:, k, c] G after summing the ncopy per-thread copies of dU (ustride
    apart) into the first, chunks of filters over nt threads."""
    cdef Py_ssize_t ch, k0, n, i, off, KC = kc_total + SKEW
    cdef int t, xi, na = (tile + 2) * (tile + 2)
    for ch in prange((kc_total + FCH - 1) // FCH, num_threads=nt, schedule="static"):
        k0 = ch * FCH
        n = min(<Py_ssize_t>FCH, kc_total - k0)
        for t in range(1, ncopy):
            for xi in range(na):
                off = xi * KC + k0
                for i in range(n):
                    dU[off + i] += dU[t * ustride + off + i]
        if real is float:
            fcw_fgrad_f32(dU + k0, dw + k0 * 9, n, KC, tile + 2)
        else:
            fcw_fgrad_f64(dU + k0, dw + k0 * 9, n, KC, tile + 2)


cdef inline void _bgemm(int na, int K, int C, int nb, const real* U, Py_ssize_t us, const real* V, Py_ssize_t vs,
                        real* M, Py_ssize_t ms) noexcept nogil:
    if real is float:
        if _x4:  # 8-row blocks and masked column tails (fcw_bgemm's tails are scalar)
            fcw4x_bgemm(na, K, C, nb, U, us, V, vs, M, ms)
        else:
            fcw_bgemm_f32(na, K, C, nb, U, us, V, vs, M, ms)
    else:
        fcw_bgemm_f64(na, K, C, nb, U, us, V, vs, M, ms)


cdef inline void _in_run(const real* r0, Py_ssize_t W, real* v, Py_ssize_t cs, int nj, int tile) noexcept nogil:
    if real is float:
        if tile == 2:
            fcw_in2_f32(r0, W, v, cs, nj)
        else:
            fcw_in4_f32(r0, W, v, cs, nj)
    else:
        if tile == 2:
            fcw_in2_f64(r0, W, v, cs, nj)
        else:
            fcw_in4_f64(r0, W, v, cs, nj)


cdef inline void _out_run(const real* mp, Py_ssize_t ks, real* y0, Py_ssize_t Q, int nj, real bv, int tile) noexcept nogil:
    if real is float:
        if tile == 2:
            fcw_out2_f32(mp, ks, y0, Q, nj, bv)
        else:
            fcw_out4_f32(mp, ks, y0, Q, nj, bv)
    else:
        if tile == 2:
            fcw_out2_f64(mp, ks, y0, Q, nj, bv)
        else:
            fcw_out4_f64(mp, ks, y0, Q, nj, bv)


cdef inline void _next(const WG* g, int run, int* n, int* ti, int* tj) noexcept nogil:
    tj[0] += run
    if tj[0] == g.tw:
        tj[0] = 0
        ti[0] += 1
        if ti[0] == g.th:
            ti[0] = 0
            n[0] += 1


cdef void _inputs(const real* x, real* V, const WG* g, Py_ssize_t t0, int nb, int tile, int c0, int c1) noexcept nogil:
    """V[xi][c][i] = (B^T d B)[xi] for the (tile+2)^2 input tile d of tile t0 + i, channel c0 <= c < c1."""
    cdef int i, c, n, ti, tj, h0, w0, a, ih, run, ncol, qa, qb, e = tile + 2
    cdef Py_ssize_t hw = <Py_ssize_t>g.H * g.W, cs = <Py_ssize_t>g.C * nb + SKEW
    cdef const real* xp
    cdef real* row
    cdef real strip[6 * SS]
    if real is float:
        if _x4:
            _inputs_x(x, V, g, t0, nb, c0, c1, tile)
            return
    for c in range(c0, c1):
        n = t0 // (g.th * g.tw)
        ti = (t0 % (g.th * g.tw)) // g.tw
        tj = t0 % g.tw
        i = 0
        while i < nb:
            run = min(NJ, min(g.tw - tj, nb - i))
            xp = x + (<Py_ssize_t>n * g.C + c) * hw
            h0 = tile * ti - g.ph
            w0 = tile * tj - g.pw
            ncol = tile * run + 2
            if h0 >= 0 and h0 + e <= g.H and w0 >= 0 and w0 + ncol <= g.W:
                _in_run(xp + h0 * g.W + w0, g.W, V + c * nb + i, cs, run, tile)
            else:  # zero-padded copy of the rows: zeros left of qa and from qb on
                qa = min(ncol, max(0, -w0))
                qb = max(qa, min(ncol, g.W - w0))
                for a in range(e):
                    ih = h0 + a
                    row = strip + a * SS
                    if ih < 0 or ih >= g.H:
                        memset(row, 0, ncol * sizeof(real))
                    else:
                        memset(row, 0, qa * sizeof(real))
                        memcpy(row + qa, xp + ih * g.W + w0 + qa, (qb - qa) * sizeof(real))
                        memset(row + qb, 0, (ncol - qb) * sizeof(real))
                _in_run(strip, SS, V + c * nb + i, cs, run, tile)
            i = i + run
            _next(g, run, &n, &ti, &tj)


cdef void _outputs(const real* M, const real* bias, real* y, const WG* g, Py_ssize_t t0, int nb, int tile,
                   int k0, int k1) noexcept nogil:
    """y tile = A^T M A (+ bias) for output channels k0 <= k < k1, clipped at the bottom/right edges."""
    cdef int i, k, n, ti, tj, p0, q0, a, q, run, ra, rq
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q
    cdef real bv
    cdef real* yp
    cdef real buf[4 * SS]
    if real is float:
        if tile == 4 and _x4:
            _outputs_x(M, bias, y, g, t0, nb, k0, k1)
            return
    for k in range(k0, k1):
        bv = bias[k] if bias != NULL else 0
        n = t0 // (g.th * g.tw)
        ti = (t0 % (g.th * g.tw)) // g.tw
        tj = t0 % g.tw
        i = 0
        while i < nb:
            run = min(NJ, min(g.tw - tj, nb - i))
            p0 = tile * ti
            q0 = tile * tj
            yp = y + (<Py_ssize_t>n * g.K + k) * pq + p0 * g.Q + q0
            if p0 + tile <= g.P and q0 + tile * run <= g.Q:
                _out_run(M + k * nb + i, ks, yp, g.Q, run, bv, tile)
            else:
                _out_run(M + k * nb + i, ks, buf, SS, run, bv, tile)
                ra = min(tile, g.P - p0)
                rq = min(tile * run, g.Q - q0)
                for a in range(ra):
                    for q in range(rq):
                        yp[a * g.Q + q] = buf[a * SS + q]
            i = i + run
            _next(g, run, &n, &ti, &tj)


cdef void _dy_tiles(const real* dy, real* D, const WG* g, Py_ssize_t t0, int nb, int tile) noexcept nogil:
    """D[xi][k][i] = (A dY A^T)[xi] for the tile x tile dy tile of tile t0 + i (zero past the edge)."""
    cdef int i, k, n, ti, tj, p0, q0, a, q, run, ra, rq
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q
    cdef const real* yp
    cdef real buf[4 * SS]
    if real is float:
        if _x4:
            _dy_tiles_x(dy, D, g, t0, nb, tile)
            return
    for k in range(g.K):
        n = t0 // (g.th * g.tw)
        ti = (t0 % (g.th * g.tw)) // g.tw
        tj = t0 % g.tw
        i = 0
        while i < nb:
            run = min(NJ, min(g.tw - tj, nb - i))
            p0 = tile * ti
            q0 = tile * tj
            yp = dy + (<Py_ssize_t>n * g.K + k) * pq + p0 * g.Q + q0
            if p0 + tile <= g.P and q0 + tile * run <= g.Q:
                _dy_run(yp, g.Q, D + k * nb + i, ks, run, tile)
            else:
                ra = min(tile, g.P - p0)
                rq = min(tile * run, g.Q - q0)
                for a in range(tile):
                    for q in range(tile * run):
                        buf[a * SS + q] = yp[a * g.Q + q] if a < ra and q < rq else 0
                _dy_run(buf, SS, D + k * nb + i, ks, run, tile)
            i = i + run
            _next(g, run, &n, &ti, &tj)


cdef inline void _dy_run(const real* y0, Py_ssize_t Q, real* d, Py_ssize_t ks, int nj, int tile) noexcept nogil:
    if real is float:
        if tile == 2:
            fcw_dy2_f32(y0, Q, d, ks, nj)
        else:
            fcw_dy4_f32(y0, Q, d, ks, nj)
    else:
        if tile == 2:
            fcw_dy2_f64(y0, Q, d, ks, nj)
        else:
            fcw_dy4_f64(y0, Q, d, ks, nj)
