# Packed-GEMM conv paths (float32, groups 1, AVX-512): textually included by conv.pyx.
#
# The output columns of a convolution, flattened over (image, p, q), form one column
# space of N*P*Q columns; each piece of work is a range of it ("chunk", a multiple of
# FC_NR columns except at the end), so small images share one wide GEMM (LeNet: 100
# columns per image) and big ones are cut where the cache wants, not at row ends.
#   forward:         Y[K, cols]   = W[K, crs] . im2col[crs, cols]
#   backward-input:  dcol[crs, cols] = W^T[crs, K] . dY[K, cols], then col2im
#   backward-weight: dW[K, crs]  += dY[K, cols] . im2col[crs, cols]^T  (two variants, and
#                    chunks of columns as the GEMM depth: see _conv_gemm_bw.pxi)
# im2col rows are written straight into the packed B panels of _conv_gemm.h, so the
# copy lands in L2 once (OpenBLAS would re-pack a separate im2col matrix).  Workspaces
# (and the zero-padded input copies) are reused across calls (_pk_scratch).

cdef extern from "_conv_gemm.h" nogil:
    ctypedef struct fc_cg_segment:
        Py_ssize_t src, dst, len
    int fc_cg_segments(Py_ssize_t c0, Py_ssize_t c1, int P, int Q, int Wp, Py_ssize_t imgstride, int sh, int sw,
                       Py_ssize_t pstride, fc_cg_segment* out)
    void fc_cg_im2col_tab(const float* base, const fc_cg_segment* sg, int ns, int sw, float* dst)
    void fc_cg_col2im_tab(float* base, const fc_cg_segment* sg, int ns, int sw, const float* row)
    int FC_MR, FC_NR
    int fc_cg_available()
    void fc_cg_gemm(int m, int n, int kd, int kc, const float* ap, const float* bp, float* c,
                    Py_ssize_t ldc, int acc, const float* bias)
    void fc_cg_pack_a_rows(const float* src, Py_ssize_t ld, int m, int koff, int length, int kdt, float* ap)
    void fc_cg_pack_a_cols(const float* src, Py_ssize_t ld, int m, int kd, float* ap)
    void fc_cg_pack_b_seg(const float* src, int col0, int length, int k, int kd, float* bp)
    void fc_cg_zero_b_pad(int ncols, int kd, float* bp)
    void fc_cg_pack_shift(const float* xn, Py_ssize_t plane, int Wp, int C, int R, int S, int dh, int dw,
                          Py_ssize_t j0, float* bp)
    void fc_cg_unshift(const float* cs, Py_ssize_t ldc, int K, const float* bias, Py_ssize_t a, Py_ssize_t b,
                       int Wp, int Q, float* y, Py_ssize_t pq)
    void fc_cg_pack_rows48(const float* src, Py_ssize_t ld, int K, float* bp)
    void fc_cg_col2im_shift(const float* cs, Py_ssize_t ldc, int C, int R, int S, int dh, int dw, int Wp,
                            Py_ssize_t cstride, Py_ssize_t j0, float* dxn)
    void fc_cg_im2col(const float* xc, int H, int W, int Q, int sh, int sw, int ih0, int iw0,
                      int a, int b, float* dst, int col0, Py_ssize_t pstride)


cdef void _pk_im2col(const float* x, const Geo* g, int t, Py_ssize_t c0, Py_ssize_t c1, float* dst,
                     Py_ssize_t pstride) noexcept nogil:
    """Row t = (c, r, s) of im2col over global columns [c0, c1) (several images) into packed
    B panels (pstride = depth * FC_NR, dst offset to row t) or a plain row (pstride 0)."""
    cdef int rs = g.R * g.S, c = t // rs, r = (t % rs) // g.S, s = t % g.S
    cdef Py_ssize_t pq = <Py_ssize_t>g.P * g.Q, n, a, b, off = 0
    cdef Py_ssize_t hw = <Py_ssize_t>g.H * g.W
    while c0 < c1:
        n = c0 // pq
        a = c0 - n * pq
        b = min(pq, a + c1 - c0)
        fc_cg_im2col(x + (n * g.C + c) * hw, g.H, g.W, g.Q, g.sh, g.sw, r * g.dh - g.ph, s * g.dw - g.pw,
                     <int>a, <int>b, dst, <int>off, pstride)
        off += b - a
        c0 += b - a


cdef void _pk_fill_tab(const float* xp, const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1,
                       fc_cg_segment* sg, float* dst, Py_ssize_t pstride) noexcept nogil:
    """All C*R*S im2col rows of columns [c0, c1) from the zero-padded input (Hp x Wp planes),
    through one segment table: into packed panels (pstride > 0) or plain rows (c1 - c0 apart)."""
    cdef Py_ssize_t plane = <Py_ssize_t>Hp * Wp, step = FC_NR if pstride else c1 - c0
    cdef int ns = fc_cg_segments(c0, c1, g.P, g.Q, Wp, g.C * plane, g.sh, g.sw, pstride, sg), c, r, s
    for c in range(g.C):
        for r in range(g.R):
            if c + 2 < g.C:  # the rows two channels ahead (their first touch missed the caches: 10 % of fwd)
                fc_bw_prefetch_row(xp + (c + 2) * plane + <Py_ssize_t>r * g.dh * Wp, sg, ns, g.sw, (g.S - 1) * g.dw + 1)
            for s in range(g.S):
                fc_cg_im2col_tab(xp + c * plane + <Py_ssize_t>r * g.dh * Wp + s * g.dw, sg, ns, g.sw, dst)
                dst += step


cdef void _pk_fwd_chunk(const float* x, const float* ap, const float* bias, float* y, float* ws,
                        fc_cg_segment* sg, const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1,
                        int kc) noexcept nogil:
    """x: the zero-padded input (Hp x Wp planes), or with Hp = 0 x itself (im2col checks the
    bounds row by row); im2col rows go straight into packed panels."""
    cdef int crs = g.Cg * g.R * g.S, ncols = <int>(c1 - c0), t, k
    cdef int npan = (ncols + FC_NR - 1) // FC_NR, mpan = (g.K + FC_MR - 1) // FC_MR
    cdef Py_ssize_t ldc = <Py_ssize_t>npan * FC_NR, pq = <Py_ssize_t>g.P * g.Q, n, a, b, off, i
    cdef float* bp = ws
    cdef float* cs = bp + ldc * crs
    cdef float* yr
    cdef float* cr
    cdef float bv
    fc_cg_zero_b_pad(ncols, crs, bp)
    if Hp == 0:
        for t in range(crs):
            _pk_im2col(x, g, t, c0, c1, bp + t * FC_NR, <Py_ssize_t>crs * FC_NR)
    else:
        _pk_fill_tab(x, g, Hp, Wp, c0, c1, sg, bp, <Py_ssize_t>crs * FC_NR)
    n = c0 // pq
    if (c1 - 1) // pq == n:  # one image: the kernel writes y (+ bias) itself
        fc_cg_gemm(g.K, ncols, crs, kc, ap, bp, y + n * g.K * pq + (c0 - n * pq), pq, 0, bias)
        return
    fc_cg_gemm(mpan * FC_MR, npan * FC_NR, crs, kc, ap, bp, cs, ldc, 0, NULL)
    off = 0
    while c0 < c1:  # copy out image by image (+ bias)
        n = c0 // pq
        a = c0 - n * pq
        b = min(pq, a + c1 - c0)
        for k in range(g.K):
            yr = y + (n * g.K + k) * pq + a
            cr = cs + k * ldc + off
            if bias != NULL:
                bv = bias[k]
                for i in range(b - a):
                    yr[i] = cr[i] + bv
            else:
                memcpy(yr, cr, (b - a) * sizeof(float))
        off += b - a
        c0 += b - a


cdef void _pk_fwd_shift_chunk(const float* xp, const float* ap, const float* bias, float* y, float* ws,
                              const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1, int kc) noexcept nogil:
    """Stride-1 forward without im2col.  Columns run over the padded input's width (j = p*Wp
    + q, q < Wp; the Wp - Q extra ones are computed and dropped), each image's P*Wp of them
    rounded up to whole 48-column panels (``ipan`` = that count * 48), so B row (c, r, s) of
    a panel is 48 consecutive floats of the padded plane c shifted by r*dh*Wp + s*dw."""
    cdef int crs = g.Cg * g.R * g.S, ncols = <int>(c1 - c0), i
    cdef int npan = (ncols + FC_NR - 1) // FC_NR, mpan = (g.K + FC_MR - 1) // FC_MR
    cdef Py_ssize_t ldc = <Py_ssize_t>npan * FC_NR, pw = <Py_ssize_t>g.P * Wp, pq = <Py_ssize_t>g.P * g.Q
    cdef Py_ssize_t ipan = (pw + FC_NR - 1) // FC_NR * FC_NR
    cdef Py_ssize_t plane = <Py_ssize_t>Hp * Wp, n, a, b, off, col
    cdef float* bp = ws
    cdef float* cs = bp + ldc * crs
    for i in range(npan):
        col = c0 + <Py_ssize_t>i * FC_NR
        n = col // ipan
        fc_cg_pack_shift(xp + n * g.C * plane, plane, Wp, g.C, g.R, g.S, g.dh, g.dw, col - n * ipan,
                         bp + <Py_ssize_t>i * crs * FC_NR)
    fc_cg_gemm(mpan * FC_MR, npan * FC_NR, crs, kc, ap, bp, cs, ldc, 0, NULL)
    off = 0
    while c0 < c1:  # keep columns j < P*Wp with q < Q, image by image (+ bias)
        n = c0 // ipan
        a = c0 - n * ipan
        b = min(ipan, a + c1 - c0)
        if a < pw:
            fc_cg_unshift(cs + off, ldc, g.K, bias, a, min(b, pw), Wp, g.Q, y + n * g.K * pq, pq)
        off += b - a
        c0 += b - a


cdef void _pk_bwi_chunk(const float* dy, const float* ap, float* dx, float* ws, fc_cg_segment* sg,
                        const Geo* g, int Hp, int Wp, Py_ssize_t c0, Py_ssize_t c1, int kc, int ca, int cb) noexcept nogil:
    """dx: zero-padded (Hp x Wp planes); dcol = W^T dY, then col2im through a segment table;
    input channels [ca, cb) only (ca*R*S a multiple of FC_MR: whole A panels)."""
    cdef int crs = (cb - ca) * g.R * g.S, ncols = <int>(c1 - c0), k, c, r, s, ns
    cdef int npan = (ncols + FC_NR - 1) // FC_NR, mpan = (crs + FC_MR - 1) // FC_MR
    cdef Py_ssize_t ldc = <Py_ssize_t>npan * FC_NR, pq = <Py_ssize_t>g.P * g.Q, plane = <Py_ssize_t>Hp * Wp
    cdef Py_ssize_t n, a, b, off, cc
    cdef float* bp = ws
    cdef float* cs = bp + ldc * g.K
    fc_cg_zero_b_pad(ncols, g.K, bp)
    cc = c0
    off = 0
    while cc < c1:
        n = cc // pq
        a = cc - n * pq
        b = min(pq, a + c1 - cc)
        for k in range(g.K):
            fc_cg_pack_b_seg(dy + (n * g.K + k) * pq + a, <int>off, <int>(b - a), k, g.K, bp)
        off += b - a
        cc += b - a
    fc_cg_gemm(mpan * FC_MR, npan * FC_NR, g.K, kc, ap + <Py_ssize_t>ca * g.R * g.S * g.K, bp, cs, ldc, 0, NULL)
    ns = fc_cg_segments(c0, c1, g.P, g.Q, Wp, g.C * plane, g.sh, g.sw, 0, sg)
    for c in range(ca, cb):
        for r in range(g.R):
            if c + 2 < cb:  # dx rows two channels ahead (as the im2col gathers)
                fc_bw_prefetch_row(dx + (c + 2) * plane + <Py_ssize_t>r * g.dh * Wp, sg, ns, g.sw, (g.S - 1) * g.dw + 1)
            for s in range(g.S):
                fc_cg_col2im_tab(dx + c * plane + <Py_ssize_t>r * g.dh * Wp + s * g.dw, sg, ns, g.sw, cs)
                cs += ldc


cdef void _pk_bwi_shift_chunk(const float* dyp, const float* ap, float* dxp, float* ws, const Geo* g,
                              int Wp, Py_ssize_t ipan, Py_ssize_t cstride, Py_ssize_t c0, Py_ssize_t c1,
                              int kc) noexcept nogil:
    """Stride-1 backward-input over the padded width (the forward shift path in reverse): dY
    laid out (N, K, ipan) with zeros past each row's Q columns, dcol = W^T dY, and col2im adds
    48-float runs into padded dx planes (``cstride`` apart, margins take the overshoot)."""
    cdef int crs = g.Cg * g.R * g.S, ncols = <int>(c1 - c0), i
    cdef int npan = (ncols + FC_NR - 1) // FC_NR, mpan = (crs + FC_MR - 1) // FC_MR
    cdef Py_ssize_t ldc = <Py_ssize_t>npan * FC_NR, n, col
    cdef float* bp = ws
    cdef float* cs = bp + ldc * g.K
    for i in range(npan):
        col = c0 + <Py_ssize_t>i * FC_NR
        n = col // ipan
        fc_cg_pack_rows48(dyp + n * g.K * ipan + (col - n * ipan), ipan, g.K, bp + <Py_ssize_t>i * g.K * FC_NR)
    fc_cg_gemm(mpan * FC_MR, npan * FC_NR, g.K, kc, ap, bp, cs, ldc, 0, NULL)
    for i in range(npan):
        col = c0 + <Py_ssize_t>i * FC_NR
        n = col // ipan
        fc_cg_col2im_shift(cs + <Py_ssize_t>i * FC_NR, ldc, g.C, g.R, g.S, g.dh, g.dw, Wp, cstride,
                           col - n * ipan, dxp + n * g.C * cstride)


include "_conv_gemm_bw.pxi"


cdef void _pk_run(int which, const float* a, const float* b, const float* bias, float* out,
                  float* work, Py_ssize_t wstride, const Geo* g, Py_ssize_t chunk, int imgs,
                  int kc, int nt, int Hp, int Wp, fc_cg_segment* segs, float* dw, int* used, int nsplit) noexcept nogil:
    """Forward / backward-weight: items are chunks of the column space; backward-input:
    items are groups of ``imgs`` images (col2im of different items never overlap),
    cut into chunks inside (which 1: and into ``nsplit`` channel ranges).  which 2 / 5: ``out`` holds nt private dW copies (dW^T for 5),
    each zeroed by its thread when first used (``used``), then summed into dw in the same
    parallel region (one fork/join per call: under load every extra one cost a time slice)."""
    cdef Py_ssize_t total = <Py_ssize_t>g.N * g.P * g.Q, pq = <Py_ssize_t>g.P * g.Q, c0, c1, e
    cdef Py_ssize_t dwsize = <Py_ssize_t>((g.K + FC_MR - 1) // FC_MR * FC_MR) * ((g.Cg * g.R * g.S + FC_NR - 1) // FC_NR * FC_NR)
    if which == 5:
        dwsize = <Py_ssize_t>g.Cg * g.R * g.S * ((g.K + FC_BW_NR - 1) // FC_BW_NR * FC_BW_NR)
    cdef int it, tid = 0, nitems, nblk = 0, crs = g.Cg * g.R * g.S, ca = 0, cb = g.C, grp
    cdef int cunit = FC_MR // _gcd(g.R * g.S, FC_MR), cper = (g.C + nsplit - 1) // nsplit
    cper = (cper + cunit - 1) // cunit * cunit
    cdef Py_ssize_t ipan = (<Py_ssize_t>g.P * Wp + FC_NR - 1) // FC_NR * FC_NR
    cdef Py_ssize_t cstride = <Py_ssize_t>(g.H + 2 * g.ph) * Wp + FC_NR + (g.S - 1) * g.dw
    if which == 3 or which == 4:  # columns over the padded width, whole panels per image
        total = <Py_ssize_t>g.N * ipan
        pq = ipan
    if which == 1 or which == 4:
        nitems = (g.N + imgs - 1) // imgs * (nsplit if which == 1 else 1)
    else:
        nitems = <int>((total + chunk - 1) // chunk)
    if which == 2 or which == 5:
        nblk = g.K if which == 2 else (crs + 15) // 16
        memset(used, 0, nt * sizeof(int))
    with parallel(num_threads=nt):
        tid = threadid()
        for it in prange(nitems, schedule="dynamic"):
            if which == 0:
                _pk_fwd_chunk(a, b, bias, out, work + tid * wstride, segs + tid * (chunk + 4), g, Hp, Wp,
                              it * chunk, min(total, (it + 1) * chunk), kc)
            elif which == 3:
                _pk_fwd_shift_chunk(a, b, bias, out, work + tid * wstride, g, Hp, Wp, it * chunk, min(total, (it + 1) * chunk), kc)
            elif which == 2:
                if used[tid] == 0:
                    memset(out + tid * dwsize, 0, dwsize * sizeof(float))
                    used[tid] = 1
                _pk_bww_chunk(a, b, out + tid * dwsize, work + tid * wstride, segs + tid * (chunk + 4), g, Hp, Wp,
                              it * chunk, min(total, (it + 1) * chunk), kc)
            elif which == 5:
                if used[tid] == 0:
                    memset(out + tid * dwsize, 0, dwsize * sizeof(float))
                    used[tid] = 1
                _pk_bwt_chunk(a, b, out + tid * dwsize, work + tid * wstride, segs + tid * (chunk + 4), g, Hp, Wp,
                              it * chunk, min(total, (it + 1) * chunk))
            else:
                grp = it
                if which == 1:
                    grp = it // nsplit
                    ca = min(g.C, (it % nsplit) * cper)
                    cb = min(g.C, ca + cper)
                c0 = <Py_ssize_t>grp * imgs * pq
                e = min(total, c0 + <Py_ssize_t>imgs * pq)
                while c0 < e:
                    c1 = min(e, c0 + chunk)
                    if which == 4:
                        _pk_bwi_shift_chunk(a, b, out, work + tid * wstride, g, Wp, ipan, cstride, c0, c1, kc)
                    else:
                        if ca < cb:
                            _pk_bwi_chunk(a, b, out, work + tid * wstride, segs + tid * (chunk + 4), g, Hp, Wp, c0, c1,
                                          kc, ca, cb)
                    c0 = c1
        for it in prange(nblk, schedule="static"):  # (after the items' barrier)
            _bw_sum_block(out, dw, which, nt, used, g.K, crs, dwsize, it)


cdef void _pad_planes(const float* src, float* dst, Py_ssize_t planes, int H, int W, int Hp, int Wp,
                      int ph, int pw, bint unpad, int nt) noexcept nogil:
    """dst planes (Hp x Wp) = src planes (H x W) with a zero border, OpenMP over planes (the
    serial NumPy copy cost the stem ~7 % at 2 threads); unpad: the reverse (dst H x W)."""
    cdef Py_ssize_t i, h
    cdef const float* s
    cdef float* d
    for i in prange(planes, num_threads=nt, schedule="static"):
        if unpad:
            for h in range(H):
                memcpy(dst + (i * H + h) * W, src + (i * Hp + h + ph) * Wp + pw, W * sizeof(float))
            continue
        d = dst + i * Hp * Wp
        memset(d, 0, ph * Wp * sizeof(float))
        for h in range(H):
            s = src + (i * H + h) * W
            memset(d + (h + ph) * Wp, 0, pw * sizeof(float))
            memcpy(d + (h + ph) * Wp + pw, s, W * sizeof(float))
            memset(d + (h + ph) * Wp + pw + W, 0, (Wp - W - pw) * sizeof(float))
        memset(d + (H + ph) * Wp, 0, (Hp - H - ph) * Wp * sizeof(float))


def _pad(src, Geo g, int Hp, int Wp, int nt, out=None, buf=None):
    """(N, C, H, W) float32 -> zero-padded (N, C, Hp, Wp) (in buf when given); with out: the
    reverse into out."""
    dst = out
    if out is None:
        dst = (np.empty(g.N * g.C * Hp * Wp, np.float32) if buf is None else buf).reshape(g.N, g.C, Hp, Wp)
    cdef float* ps = <float*>_ptr(src)
    cdef float* pd = <float*>_ptr(dst)
    cdef Py_ssize_t planes = <Py_ssize_t>g.N * g.C
    cdef bint unpad = out is not None
    with nogil:
        _pad_planes(ps, pd, planes, g.H, g.W, Hp, Wp, g.ph, g.pw, unpad, nt)
    return dst


PK_BYTES = 1 << 20  # packed B block per thread (with kc blocking the hot part stays in L2)
PK_KC = 384         # depth of one GEMM pass (A panel slice 8 x kc, B slice kc x 48 stay in L1/L2)
PK_BWI_SPLIT = 4    # backward-input: at most this many channel ranges per image group
PK_BW_COLS = 384    # backward-weight: target columns (GEMM depth) per chunk
PK_BW_KC = 0        # backward-weight depth blocking inside a chunk (0: none, the chunk is the depth)
_PK_OK = bool(fc_cg_available())
PK_PADCOPY = "auto"  # forward im2col from a zero-padded copy: "auto" (R*S*P*Q >= 4*Hp*Wp or stride 2), "always", "never"
PK_SHIFT = "auto"    # stride-1 forward without im2col: "auto" (rows shorter than 16), "always", "never"
use_packed = True   # tests flip this to exercise the OpenBLAS path on AVX-512 machines


cdef inline int _gcd(int a, int b) noexcept nogil:
    while b:
        a, b = b, a % b
    return a


def _pk_eligible(x_dtype, int groups, w_shape=None, int which=-1, pq=0):
    """Packed path for float32, groups 1, where the GEMM has depth for the 8x48 kernel:
    forward C*R*S >= 32, backward-input K >= 16 (lenet_c1, C*R*S 25 / K 6: OpenBLAS was
    1.1x / 2.5x faster), backward-weight C*R*S filling its 48-wide B panels >= 90 %, small
    images (pq = P*Q < 1024: OpenBLAS then makes one thin GEMM per image; lenet_c3 0.83x
    against 0.68x) or the taps variant's shapes (_bw_taps_pays: the stem, OpenBLAS 0.63x
    of torch, taps 1.1x).
    which -1: dtype/groups only."""
    if not (use_packed and _PK_OK and groups == 1 and x_dtype == np.float32):
        return False
    if w_shape is None or which < 0:
        return True
    crs = int(w_shape[1]) * int(w_shape[2]) * int(w_shape[3])
    if which == 0:  # and not for 1x1 outputs (LeNet's C5: a dense layer, OpenBLAS 0.49 vs 0.74 ms)
        return crs >= 32 and pq != 1
    if which == 1:
        return int(w_shape[0]) >= 16
    return ((crs + 47) // 48 * 48 * 0.9 <= crs or 0 < pq < 1024
            or _bw_taps_pays(int(w_shape[0]), crs))


def _shift_pays(int P, int Q, int Wp, int NR):
    """Stride-1 without im2col computes P*Wp columns per image, rounded up to whole NR-wide
    panels, for P*Q useful ones: worth it for short rows (Q < 16) or nearly unpadded ones, as
    long as the waste stays under 1.5x (LeNet's C5, 5x5 -> 1x1, would compute 48 columns
    per useful one: 2.8 ms against im2col's 0.4)."""
    cols = (P * Wp + NR - 1) // NR * NR
    return (Q < 16 or Wp <= 1.07 * Q) and cols <= 1.5 * P * Q


def _pk_path(int which, a, b, bias, out, Geo g, int nt):
    """Packed-GEMM forward (a=x, b=w), backward-input (a=dy, b=w), backward-weight (a=dy, b=x)."""
    cdef int MR = FC_MR, NR = FC_NR
    cdef int crs = g.Cg * g.R * g.S
    # (C ints with cdivision: no -(-a // b) ceiling tricks here)
    crsp = (crs + NR - 1) // NR * NR
    Kp = (g.K + MR - 1) // MR * MR
    total = int(g.N) * g.P * g.Q
    cdef int Hp = g.H + 2 * g.ph, Wp = g.W + 2 * g.pw
    if which == 0 and g.sh == 1 and g.sw == 1 and (
            PK_SHIFT == "always" or (PK_SHIFT == "auto" and _shift_pays(g.P, g.Q, Wp, NR))):
        which = 3  # short rows: im2col's per-row cost beats the (Wp - Q) / Q extra columns
        total = int(g.N) * ((g.P * Wp + NR - 1) // NR * NR)
        xp = np.zeros(g.N * g.C * Hp * Wp + (g.S - 1) * g.dw + 2 * NR, np.float32)  # tail: last panel's reads
        xp[:g.N * g.C * Hp * Wp].reshape(g.N, g.C, Hp, Wp)[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = a
        a = xp
    dxp = None
    ipan = (g.P * Wp + NR - 1) // NR * NR
    if which == 1 and g.sh == 1 and g.sw == 1 and (
            PK_SHIFT == "always" or (PK_SHIFT == "auto" and _shift_pays(g.P, g.Q, Wp, NR))):
        which = 4  # the same for backward-input: col2im becomes 48-float adds
        dyp = np.zeros((g.N, g.K, ipan), np.float32)
        dyp[:, :, :g.P * Wp].reshape(g.N, g.K, g.P, Wp)[..., :g.Q] = a
        a = dyp
        cst = Hp * Wp + NR + (g.S - 1) * g.dw
        dxp = np.zeros(g.N * g.C * cst, np.float32)
    if which == 1 and (g.ph or g.pw):  # col2im adds into a zero-padded dx (no bounds logic)
        dxp = _pk_zero(_pk_scratch(3, <Py_ssize_t>g.N * g.C * Hp * Wp), nt).reshape(g.N, g.C, Hp, Wp)
    if which == 2 and _bw_taps_pick(g):
        which = 5  # im2col rows read straight from the padded input by the kernel
    cdef int Hq = Hp
    # (stride 2: the table path's vectorised gather; strided_3x3 forward 0.91 -> 0.99x torch at 1 thread)
    if which == 0 and (PK_PADCOPY == "never" or (PK_PADCOPY == "auto" and g.R * g.S * g.P * g.Q < 4 * Hp * Wp
                                                  and g.sw != 2)):
        Hq = 0  # forward: im2col checks bounds on x itself (a padded copy costs more than it saves)
    elif which in (0, 2, 5) and (g.ph or g.pw):  # im2col reads a zero-padded copy (no bounds logic)
        xq = _pad(a if which == 0 else b, g, Hp, Wp, nt, None, _pk_scratch(1, <Py_ssize_t>g.N * g.C * Hp * Wp))
        if which == 0:
            a = xq
        else:
            b = xq
    rowf = crs if which in (0, 3) else (g.K + crsp if which in (1, 4) else crsp + Kp)
    chunk = max(NR, (PK_BYTES // (4 * rowf)) // NR * NR)
    if which not in (1, 4):  # at least ~3 chunks per thread (load balance)
        chunk = max(NR, min(chunk, (total + 3 * nt * NR - 1) // (3 * nt * NR) * NR))
    if which in (2, 5):  # columns are the GEMM depth here: C tiles reloaded once per chunk
        chunk = _bw_chunk(total, nt)
    imgs = max(1, g.N // (3 * nt)) if which in (1, 4) else 1
    ngrp = (g.N + imgs - 1) // imgs
    cunit = MR // _gcd(g.R * g.S, MR)  # channels per whole A panels
    nsplit = 1  # backward-input: channel ranges too when images alone leave < 6 items a thread
    if which == 1 and ngrp < 6 * nt:
        nsplit = max(1, min(PK_BWI_SPLIT, (6 * nt + ngrp - 1) // ngrp, (g.C + cunit - 1) // cunit))
    if which in (0, 3):
        ap = np.empty(Kp * crs, np.float32)
        stride = chunk * crs + Kp * chunk
    elif which in (1, 4):
        ap = np.empty((crs + MR - 1) // MR * MR * g.K, np.float32)
        stride = chunk * g.K + crsp * chunk
    elif which == 2:
        ap = None
        stride = Kp * chunk + crsp * chunk + 16 * chunk
    else:
        ap = None
        stride = (g.K + FC_BW_NR - 1) // FC_BW_NR * FC_BW_NR * chunk
    work = _pk_scratch(0, nt * stride + 16)
    segs = np.empty((nt * (chunk + 4), 3), np.intp)  # fc_cg_segment tables
    cdef float* pw = <float*>_ptr(work)
    cdef float* pa = <float*>_ptr(a)
    cdef float* pb = <float*>_ptr(b)
    cdef float* pbias = NULL if bias is None else <float*>_ptr(bias)
    cdef float* pap = NULL if ap is None else <float*>_ptr(ap)
    cdef float* po
    cdef fc_cg_segment* psg = <fc_cg_segment*>_ptr(segs)
    cdef int nsp = nsplit
    cdef int K = g.K, kc = PK_BW_KC if which == 2 else PK_KC, nt_ = nt, im = imgs
    cdef Py_ssize_t ch = chunk, ws = stride
    if which in (0, 3):
        fc_cg_pack_a_rows(pb, crs, K, 0, crs, crs, pap)
        pb = pap
    elif which in (1, 4):
        fc_cg_pack_a_cols(pb, crs, crs, K, pap)
        pb = pap
    target = dxp if dxp is not None else out
    if which in (2, 5):  # private dW copies (taps variant: dW^T), zeroed by their threads
        target = _pk_scratch(2, nt * (Kp * crsp if which == 2 else crs * _bw_ldc(g.K)))
    used = np.empty(nt, np.intc)
    cdef int* pused = <int*>_ptr(used)
    cdef float* pdw = <float*>_ptr(out)
    po = <float*>_ptr(target)
    with nogil:
        _pk_run(which, pa, pb, pbias, po, pw, ws, &g, ch, im, kc, nt_, Hq if which == 0 else Hp, Wp, psg, pdw, pused, nsp)
    if which == 1 and dxp is not None:
        _pad(dxp, g, Hp, Wp, nt, out)
    elif which == 4:
        out[...] = dxp.reshape(g.N, g.C, -1)[:, :, :Hp * Wp].reshape(g.N, g.C, Hp, Wp)[
            :, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]
    return out
