# Backward-weight pieces of the packed-GEMM conv (textually included by _conv_gemm.pxi).
#   panels (which 2): dW[K, crs] += dY[K, cols] . im2col[crs, cols]^T with the 8x48 kernel:
#                     dY rows packed as A panels, im2col rows transposed into B panels;
#   rows   (which 5): dW^T[(c, r, s), K] += taps s of filter row (c, r) read straight from the
#                     padded input (the kernel's S rows) . dY^T panels 32 wide (no im2col):
#                     for filters whose C*R*S fills 48-wide panels badly (the stem's 147).
# Chunks of columns (the GEMM depth) are items; each thread accumulates a private dW.

cdef extern from "_conv_gemm_bw.h" nogil:
    void fc_bw_pack_a_rows(const float* src, Py_ssize_t ld, int m, int koff, int length, int kdt, float* ap)
    void fc_bw_pack_b_panel(const float* x, Py_ssize_t plane, int Wp, int R, int S, int dh, int dw, int crs,
                            int t, const fc_cg_segment* sg, int ns, int sw, int ncols, float* tmp, float* bp)
    int FC_BW_NR
    void fc_bw_rows(int S, const float* x, const fc_cg_segment* sg, int ns, int sw, int dw,
                    const float* b, float* c, Py_ssize_t ldc)
    void fc_bw_pack_dyt(const float* src, Py_ssize_t ld, int m, int koff, int length, int kdt, float* bp)


cdef void _pk_bww_chunk(const float* dy, const float* x, float* dws, float* ws, fc_cg_segment* sg,
                        const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1, int kc) noexcept nogil:
    """x: the zero-padded input; im2col rows (via a segment table) are transposed into B panels."""
    cdef int crs = g.Cg * g.R * g.S, ncols = <int>(c1 - c0), t, nr, k, ns, rs = g.R * g.S, tk
    cdef Py_ssize_t plane = <Py_ssize_t>Hp * Wp
    cdef int npan = (crs + FC_NR - 1) // FC_NR, mpan = (g.K + FC_MR - 1) // FC_MR
    cdef Py_ssize_t ldc = <Py_ssize_t>npan * FC_NR, pq = <Py_ssize_t>g.P * g.Q, n, a, b, off, cc
    cdef float* ap = ws
    cdef float* bp = ap + <Py_ssize_t>mpan * FC_MR * ncols
    cdef float* tmp = bp + ldc * ncols
    cc = c0
    off = 0
    while cc < c1:
        n = cc // pq
        a = cc - n * pq
        b = min(pq, a + c1 - cc)
        fc_bw_pack_a_rows(dy + n * g.K * pq + a, pq, g.K, <int>off, <int>(b - a), ncols, ap)
        off += b - a
        cc += b - a
    ns = fc_cg_segments(c0, c1, g.P, g.Q, Wp, g.C * plane, g.sh, g.sw, 0, sg)
    for t in range(npan):  # FC_NR im2col rows at a time, transposed into one B panel
        fc_bw_pack_b_panel(x, plane, Wp, g.R, g.S, g.dh, g.dw, crs, t * FC_NR, sg, ns, g.sw, ncols, tmp,
                           bp + <Py_ssize_t>t * ncols * FC_NR)
    fc_cg_gemm(mpan * FC_MR, npan * FC_NR, ncols, kc, ap, bp, dws, ldc, 1, NULL)


cdef void _pk_bwr_chunk(const float* dy, const float* x, float* dwt, float* ws, fc_cg_segment* sg,
                        const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """Rows variant: x the zero-padded input; dwt (C*R*S x ldc) is dW^T."""
    cdef int ncols = <int>(c1 - c0), kp = (g.K + FC_BW_NR - 1) // FC_BW_NR, c, r, p, ns
    cdef Py_ssize_t plane = <Py_ssize_t>Hp * Wp, pq = <Py_ssize_t>g.P * g.Q, ldc = <Py_ssize_t>kp * FC_BW_NR
    cdef Py_ssize_t n, a, b, off = 0, cc = c0
    cdef float* bp = ws
    while cc < c1:
        n = cc // pq
        a = cc - n * pq
        b = min(pq, a + c1 - cc)
        fc_bw_pack_dyt(dy + n * g.K * pq + a, pq, g.K, <int>off, <int>(b - a), ncols, bp)
        off += b - a
        cc += b - a
    ns = fc_cg_segments(c0, c1, g.P, g.Q, Wp, g.C * plane, g.sh, g.sw, 0, sg)
    for c in range(g.C):
        for r in range(g.R):
            for p in range(kp):
                fc_bw_rows(g.S, x + c * plane + <Py_ssize_t>r * g.dh * Wp, sg, ns, g.sw, g.dw,
                           bp + <Py_ssize_t>p * ncols * FC_BW_NR, dwt + <Py_ssize_t>(c * g.R + r) * g.S * ldc + p * FC_BW_NR, ldc)


PK_BW_ROWS = "auto"  # backward-weight rows variant: "auto" (_bw_rows_pays), "always" (S <= 8), "never"


def _bw_rows_pays(int K, int crs, int S):
    """Rows variant where the 8x48 panels would waste more: its S x 32 tiles use K rounded up to
    32 and need S >= 4 (fewer taps leave too few accumulators per dY^T load); the panels use
    C*R*S rounded up to 48."""
    kfill = K / ((K + 31) // 32 * 32)
    cfill = crs / ((crs + 47) // 48 * 48)
    return 4 <= S <= 8 and kfill > cfill


def _bw_rows_pick(Geo g):
    if PK_BW_ROWS == "never" or g.S > 8:
        return False
    return PK_BW_ROWS == "always" or _bw_rows_pays(g.K, g.Cg * g.R * g.S, g.S)


def _bw_chunk(total, int nt):
    """Backward-weight chunk: ~PK_BW_COLS columns (a multiple of 16), the count of chunks a
    multiple of the threads.  Depth 144 (the 1 MiB-panel rule) ran the 8x48 kernel at 94
    GF/s against 112-115 at depth 256-512: each chunk reloads and stores the whole dW tile."""
    m = max(1, (total + nt * PK_BW_COLS // 2) // (nt * PK_BW_COLS)) * nt
    return max(16, (total + m - 1) // m + 15) // 16 * 16
