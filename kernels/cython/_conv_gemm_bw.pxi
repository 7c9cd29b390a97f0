# Backward-weight pieces of the packed-GEMM conv (textually included by _conv_gemm.pxi).
#   panels (which 2): dW[K, crs] += dY[K, cols] . im2col[crs, cols]^T with the 8x48 kernel:
#                     dY rows packed as A panels, im2col rows transposed into B panels;
#   taps   (which 5): dW^T[crs, K] += im2col rows read straight from the padded input (blocks of
#                     8 taps, or a whole filter row for S = 6..8, are the kernel's rows, each its
#                     own offset into x) . dY^T panels 32 wide: no im2col, no transposes of it;
#                     the stem (147 = 3*48 + 3) keeps every multiply useful.
# Chunks of columns (the GEMM depth) are items; each thread accumulates a private dW.

cdef extern from "_conv_gemm_bw.h" nogil:
    void fc_bw_pack_a_rows(const float* src, Py_ssize_t ld, int m, int koff, int length, int kdt, float* ap)
    void fc_bw_pack_b_panel(const float* x, Py_ssize_t plane, int Wp, int R, int S, int dh, int dw, int crs,
                            int t, const fc_cg_segment* sg, int ns, int sw, int ncols, float* tmp, float* bp)
    int FC_BW_NR
    void fc_bw_prefetch_row(const float* base, const fc_cg_segment* sg, int ns, int sw, int extra)
    void fc_bw_taps(int mr, const float* x, const Py_ssize_t* off, int mrows, const fc_cg_segment* sg,
                    int ns, int sw, const float* b, float* c, Py_ssize_t ldc)
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


cdef void _pk_bwt_chunk(const float* dy, const float* x, float* dwt, float* ws, fc_cg_segment* sg,
                        const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """Taps variant: x the zero-padded input; dwt (C*R*S x ldc) is dW^T."""
    cdef int ncols = <int>(c1 - c0), kp = (g.K + FC_BW_NR - 1) // FC_BW_NR, p, ns, i, t, t0
    cdef int crs = g.Cg * g.R * g.S, rs = g.R * g.S, mr = _bw_mr(g.S)
    cdef Py_ssize_t offs[8]
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
    t0 = 0
    while t0 < crs:  # blocks of mr im2col rows (taps): their sources in the padded x
        for i in range(mr):
            t = min(t0 + i, crs - 1)
            offs[i] = (t // rs) * plane + <Py_ssize_t>((t % rs) // g.S) * g.dh * Wp + (t % g.S) * g.dw
        for p in range(kp):
            fc_bw_taps(mr, x, offs, crs - t0, sg, ns, g.sw, bp + <Py_ssize_t>p * ncols * FC_BW_NR,
                       dwt + <Py_ssize_t>t0 * ldc + p * FC_BW_NR, ldc)
        t0 += mr


cdef inline int _bw_mr(int S) noexcept nogil:
    """taps per kernel block: a whole filter row for 6 <= S <= 8 (stem, S = 7: 1.11x torch
    against 1.07x with blocks of 8), else 8 (alexnet's S = 5: 1.00-1.04x against 0.93x)"""
    return S if 6 <= S <= 8 else 8


PK_BW_TAPS = "auto"  # backward-weight taps variant: "auto" (_bw_taps_pays), "always", "never"


def _bw_taps_pays(int K, int crs):
    """Taps variant where K fills its 32-wide tiles at least as well as C*R*S fills the panels'
    48-wide ones (and K >= 32).  1-thread CPU-time ratios vs torch, dW alone: stem (147 ->
    192 panel columns) 0.63 (OpenBLAS) -> 1.11-1.15; strided_3x3 1.00 -> 1.02-1.06;
    alexnet_5x5 0.89 -> 1.00-1.04."""
    return K >= 32 and K / ((K + 31) // 32 * 32) >= crs / ((crs + 47) // 48 * 48)


def _bw_taps_pick(Geo g):
    return PK_BW_TAPS == "always" or (PK_BW_TAPS == "auto" and _bw_taps_pays(g.K, g.Cg * g.R * g.S))


def _bw_chunk(total, int nt):
    """Backward-weight chunk: ~PK_BW_COLS columns (a multiple of 16), the count of chunks a
    multiple of the threads.  Depth 144 (the 1 MiB-panel rule) ran the 8x48 kernel at 94
    GF/s against 112-115 at depth 256-512: each chunk reloads and stores the whole dW tile."""
    m = max(1, (total + nt * PK_BW_COLS // 2) // (nt * PK_BW_COLS)) * nt
    return max(16, (total + m - 1) // m + 15) // 16 * 16


def _bw_ldc(int K):
    return (K + FC_BW_NR - 1) // FC_BW_NR * FC_BW_NR


cdef void _bw_sum_block(const float* t, float* out, int which, int nt, const int* used, int K, int crs,
                        Py_ssize_t copy, int blk) noexcept nogil:
    """dW (K x crs) block ``blk`` = the sum of the used copies: panels (which 2): row k = blk of
    copies Kp x ldc; taps: 16 taps from dW^T copies crs x ldc (rows of 16 taps stay in cache
    while k runs; out rows are written 16 floats at a time)."""
    cdef int k, i, j, je, first = 1
    cdef Py_ssize_t ldc
    cdef float* o
    cdef const float* src
    if which == 2:
        ldc = (crs + FC_NR - 1) // FC_NR * FC_NR
        o = out + <Py_ssize_t>blk * crs
        for i in range(nt):
            if not used[i]:
                continue
            src = t + i * copy + blk * ldc
            if first:
                memcpy(o, src, crs * sizeof(float))
                first = 0
            else:
                for j in range(crs):
                    o[j] = o[j] + src[j]
        if first:  # (no thread ran: no columns)
            memset(o, 0, crs * sizeof(float))
        return
    ldc = (K + FC_BW_NR - 1) // FC_BW_NR * FC_BW_NR
    je = min(crs, blk * 16 + 16)
    for k in range(K):
        for j in range(blk * 16, je):
            out[<Py_ssize_t>k * crs + j] = 0
    for i in range(nt):
        if not used[i]:
            continue
        src = t + i * copy
        for k in range(K):
            for j in range(blk * 16, je):
                out[<Py_ssize_t>k * crs + j] += src[j * ldc + k]


import threading
_pk_local = threading.local()
PK_SCRATCH_KEEP = 32 << 20  # workspaces up to this many bytes are kept (per slot, per Python thread)


def _pk_scratch(int slot, Py_ssize_t n):
    """An uninitialised float32 workspace of n elements, reused across calls (per Python thread):
    fresh multi-MB arrays cost page faults (strided_3x3's padded input: 14 MB per call)."""
    bufs = getattr(_pk_local, "bufs", None)
    if bufs is None:
        bufs = _pk_local.bufs = {}
    a = bufs.get(slot)
    if a is None or a.shape[0] < n:
        a = np.empty(n, np.float32)
        if n * 4 <= PK_SCRATCH_KEEP:
            bufs[slot] = a
    return a[:n]


cdef void _zero_blocks(float* p, Py_ssize_t n, int nt) noexcept nogil:
    cdef Py_ssize_t i, nb = (n + 16383) // 16384
    for i in prange(nb, num_threads=nt, schedule="static"):
        memset(p + i * 16384, 0, min(<Py_ssize_t>16384, n - i * 16384) * sizeof(float))


def _pk_zero(a, int nt):
    """a (1-d float32) = 0, OpenMP over 64 KB blocks; returns a."""
    cdef float* p = <float*>_ptr(a)
    cdef Py_ssize_t n = a.shape[0]
    with nogil:
        _zero_blocks(p, n, nt)
    return a
