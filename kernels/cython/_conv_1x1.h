/* Pointwise (1x1, stride 1, no padding) float32 forward, AVX-512.
 *
 * y[K x N*HW] = W[K x C] . X[C x N*HW] (+ bias per row), the columns of all images side by
 * side (small images share panels).  An 8 x 48 register tile (24 zmm accumulators, like
 * _conv_gemm.h's micro-kernel) broadcasts its A values straight from W's rows (8 rows x C:
 * 8 KiB at C = 256, in L1; W is never packed) and loads B from a 48-column panel of x that
 * the thread copies once into a contiguous C x 48 buffer and then re-uses for all K/8 row
 * blocks.  That copy is cheap because it reads from cache: while the row blocks of one
 * panel run, each prefetches its share of the next panel's C rows, so x's 25 MB (ResNet
 * bottleneck) stream in under the FMAs instead of costing a pass of their own (an earlier
 * packed attempt packed all of x first).  The copy also keeps the inner loop on one TLB
 * page per 21 rows: read in place, x's rows are a page or more apart and each k step missed
 * the L1 DTLB whenever x had no huge pages (45-57 instead of ~100 GF/s).  Each tile also
 * prefetches its 24 output lines for writing before its k loop, and adds the bias in the
 * epilogue.  Column tails and panels spanning two images use masked loads (in the copy)
 * and masked stores; the row tail (K % 8) computes duplicate rows it does not store.
 * Rounding: FMA accumulation in channel order, ~1e-7 relative to float64.
 *
 * Compiled with target("avx512f") (portable build, no -march=native); fc_pw_available()
 * says whether the CPU runs it, elsewhere conv.pyx keeps the OpenBLAS path. */
#ifndef FC_CONV_1X1_H
#define FC_CONV_1X1_H
#include <stddef.h>
#include <stdlib.h>

#define FC_PW_MR 8
#define FC_PW_NR 48

/* test hooks: act as if the panel buffer's allocation failed; force the panel shift (-1: auto) */
static int fc_pw_no_buffer = 0, fc_pw_shift = -1;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_AVX512_1X1)
#include <immintrin.h>
#define FC_PW_TARGET __attribute__((target("avx512f")))

static int fc_pw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

/* A 48-column panel of the column space j = n * hw + q (all images side by side): its three
 * 16-lane vectors each take lanes from at most two images (hw >= 16).  Vector v, row k: lanes
 * in ma[v] from b + k*ldb + ob[v], lanes in mb[v] from there + dx (the next image; the
 * lane index is the same, so the address is the vector's start + dx); y likewise with oc, dy. */
typedef struct {
    ptrdiff_t ob[3], oc[3], dx, dy;
    __mmask16 ma[3], mb[3];
    int simple;  /* all 48 lanes in one image: ob = oc = {0, 16, 32}, ma full, mb empty */
} fc_pw_pan;

#define FC_PW_ZERO(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define FC_PW_ROW(i)                                                \
    { __m512 av = _mm512_set1_ps(a##i[ko]);                         \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                   \
      c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                   \
      c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2); }
#define FC_PW_ST1(i, v)                                                                         \
    if (simple) _mm512_storeu_ps(cr + 16 * (v), c##i##v);                                       \
    else {                                                                                      \
        _mm512_mask_storeu_ps(cr + d->oc[v], d->ma[v], c##i##v);                                \
        _mm512_mask_storeu_ps(cr + d->oc[v] + d->dy, d->mb[v], c##i##v);                        \
    }
#define FC_PW_STORE(i)                                                               \
    if ((i) < mrows) {                                                               \
      float *cr = c + (ptrdiff_t)(i) * ldc;                                          \
      if (bias) {                                                                    \
          __m512 bv = _mm512_set1_ps(bias[i]);                                       \
          c##i##0 = _mm512_add_ps(c##i##0, bv); c##i##1 = _mm512_add_ps(c##i##1, bv);  \
          c##i##2 = _mm512_add_ps(c##i##2, bv);                                      \
      }                                                                              \
      FC_PW_ST1(i, 0) FC_PW_ST1(i, 1) FC_PW_ST1(i, 2) }

/* One 8 x 48 tile: c[i][col] = bias[i] + sum_k w[i*ldw + k*ask] * B[k][col], i < mrows, columns as
 * described by d (b, c: the panel's first column in x's and y's rows; rows ldb / ldc apart).
 * Meanwhile prefetches pfrows rows (pfld apart, from pf; the next panel, described by pd)
 * spread over the kd steps; pf NULL: none. */
FC_PW_TARGET static inline __attribute__((always_inline)) void
fc_pw_tile(int kd, const float *w, ptrdiff_t ldw, ptrdiff_t ask, int mrows, const float *b, ptrdiff_t ldb, const fc_pw_pan *d,
           float *c, ptrdiff_t ldc, const float *bias, const float *pf, ptrdiff_t pfld, int pfrows,
           const fc_pw_pan *pd, const int simple, const int trans) {
    /* rows past mrows repeat row 0 (computed, never stored) */
    const float *a0 = w;
    const float *a1 = mrows > 1 ? w + ldw : w, *a2 = mrows > 2 ? w + 2 * ldw : w;
    const float *a3 = mrows > 3 ? w + 3 * ldw : w, *a4 = mrows > 4 ? w + 4 * ldw : w;
    const float *a5 = mrows > 5 ? w + 5 * ldw : w, *a6 = mrows > 6 ? w + 6 * ldw : w;
    const float *a7 = mrows > 7 ? w + 7 * ldw : w;
    FC_PW_ZERO(0) FC_PW_ZERO(1) FC_PW_ZERO(2) FC_PW_ZERO(3) FC_PW_ZERO(4) FC_PW_ZERO(5) FC_PW_ZERO(6) FC_PW_ZERO(7)
    /* the k steps in chunks of `per`; before each chunk, prefetch rows_per of the pfrows rows
     * (the inner loop stays free of that bookkeeping: 8 W row pointers already take 8 GPRs) */
    if (!pf) pfrows = 0;
    int per = pfrows > 0 ? (kd + pfrows - 1) / pfrows : kd, pr = 0;
    int rows_per = pfrows > kd ? (pfrows + kd - 1) / kd : 1;
    if (per < 1) per = 1;
    for (int k0 = 0; k0 < kd; k0 += per) {
        for (int t = 0; t < rows_per && pr < pfrows; t++, pr++) {
            const char *p = (const char *)(pf + (ptrdiff_t)pr * pfld);
            if (pd->simple) {
                _mm_prefetch(p, _MM_HINT_T0);
                _mm_prefetch(p + 64, _MM_HINT_T0);
                _mm_prefetch(p + 128, _MM_HINT_T0);
                _mm_prefetch(p + 191, _MM_HINT_T0);
            } else {
                for (int v = 0; v < 3; v++) {
                    const char *q = p + pd->ob[v] * 4;
                    _mm_prefetch(q, _MM_HINT_T0);
                    _mm_prefetch(q + 63, _MM_HINT_T0);
                    _mm_prefetch(q + pd->dx * 4, _MM_HINT_T0);
                    _mm_prefetch(q + pd->dx * 4 + 63, _MM_HINT_T0);
                }
            }
        }
        if (k0 == 0) {  /* the tile's output lines, for writing (saves the stall of 24 store misses) */
            for (int r = 0; r < mrows; r++) {
                const char *q = (const char *)(c + (ptrdiff_t)r * ldc + d->oc[0]);
                __builtin_prefetch(q, 1, 3); __builtin_prefetch(q + 64, 1, 3);
                __builtin_prefetch(q + 128, 1, 3); __builtin_prefetch(q + 191, 1, 3);
            }
        }
        int k1 = k0 + per < kd ? k0 + per : kd;
        ptrdiff_t ko = (ptrdiff_t)k0 * ask;
        for (int k = k0; k < k1; k++, ko += ask) {
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
            /* W^T: one line of W per k step, 4 B * ask apart, which the hardware does not
             * prefetch (r5's backward-input: 43 GF/s without this) */
            if (trans) _mm_prefetch((const char *)(a0 + ko + 32 * ask), _MM_HINT_T0);
            FC_PW_ROW(0) FC_PW_ROW(1) FC_PW_ROW(2) FC_PW_ROW(3) FC_PW_ROW(4) FC_PW_ROW(5) FC_PW_ROW(6) FC_PW_ROW(7)
            b += ldb;
        }
    }
    FC_PW_STORE(0) FC_PW_STORE(1) FC_PW_STORE(2) FC_PW_STORE(3) FC_PW_STORE(4) FC_PW_STORE(5) FC_PW_STORE(6)
    FC_PW_STORE(7)
}

/* Pack panel d (first column at x, rows ldx apart, kd rows) into bp[k][48]; lanes outside
 * the column space are zero. */
FC_PW_TARGET static void fc_pw_pack(int kd, const float *x, ptrdiff_t ldx, const fc_pw_pan *d, float *bp) {
    if (d->simple) {
        for (int k = 0; k < kd; k++, x += ldx, bp += FC_PW_NR) {
            __m512 b0 = _mm512_loadu_ps(x), b1 = _mm512_loadu_ps(x + 16), b2 = _mm512_loadu_ps(x + 32);
            _mm512_store_ps(bp, b0); _mm512_store_ps(bp + 16, b1); _mm512_store_ps(bp + 32, b2);
        }
        return;
    }
    for (int k = 0; k < kd; k++, x += ldx, bp += FC_PW_NR)
        for (int v = 0; v < 3; v++) {
            const float *s = x + d->ob[v];
            _mm512_store_ps(bp + 16 * v, _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(d->ma[v], s), d->mb[v], s + d->dx));
        }
}

FC_PW_TARGET static void fc_pw_tile_rows(int kd, const float *w, ptrdiff_t ldw, int mrows, const float *bp,
                                         const fc_pw_pan *d, float *c, ptrdiff_t ldc, const float *bias,
                                         const float *pf, ptrdiff_t pfld, int pfrows, const fc_pw_pan *pd) {
    fc_pw_tile(kd, w, ldw, 1, mrows, bp, FC_PW_NR, d, c, ldc, bias, pf, pfld, pfrows, pd, d->simple, 0);
}

FC_PW_TARGET static void fc_pw_tile_cols(int kd, const float *w, ptrdiff_t ldw, ptrdiff_t ask, int mrows,
                                         const float *bp, const fc_pw_pan *d, float *c, ptrdiff_t ldc,
                                         const float *bias, const float *pf, ptrdiff_t pfld, int pfrows,
                                         const fc_pw_pan *pd) {
    fc_pw_tile(kd, w, ldw, ask, mrows, bp, FC_PW_NR, d, c, ldc, bias, pf, pfld, pfrows, pd, d->simple, 1);
}

/* Panel p of the column space (ncols = N * hw columns), whose panels start sh columns early
 * (panel p: columns [48p - sh, 48p - sh + 48), those outside [0, ncols) masked off): the
 * descriptor and the offsets of its first column in x (images xs apart) and y (ys apart) */
static void fc_pw_panel(ptrdiff_t p, int sh, ptrdiff_t ncols, ptrdiff_t hw, ptrdiff_t xs, ptrdiff_t ys,
                        fc_pw_pan *d, ptrdiff_t *xoff, ptrdiff_t *yoff) {
    ptrdiff_t g0 = p * FC_PW_NR - sh, n0 = g0 < 0 ? 0 : g0 / hw, q0 = g0 - n0 * hw;
    *xoff = n0 * xs + q0;
    *yoff = n0 * ys + q0;
    d->dx = xs - hw;
    d->dy = ys - hw;
    d->simple = g0 >= 0 && g0 + FC_PW_NR <= ncols && q0 + FC_PW_NR <= hw;
    for (int v = 0; v < 3; v++) {
        /* valid lanes [lo, hi); those below la in image n, the rest in image n + 1 */
        ptrdiff_t gv = g0 + 16 * v, n = gv < 0 ? 0 : gv / hw, q = gv - n * hw;
        ptrdiff_t lo = gv < 0 ? -gv : 0, hi = ncols - gv < 16 ? ncols - gv : 16;
        if (lo > 16) lo = 16;
        if (hi < lo) hi = lo;
        ptrdiff_t la = hw - q < hi ? hw - q : hi;
        if (la < lo) la = lo;
        unsigned lom = (1u << lo) - 1u;
        d->ob[v] = (n - n0) * xs + q - q0;
        d->oc[v] = (n - n0) * ys + q - q0;
        d->ma[v] = (__mmask16)(((1u << la) - 1u) & ~lom);
        d->mb[v] = (__mmask16)(((1u << hi) - 1u) & ~((1u << la) - 1u));
    }
}

/* Part `part` of `nparts` of y = W . x (+ bias) over the column space of N images (hw >= 16
 * columns each; x images xs floats apart, y images ys apart, rows hw apart), W: K x C with
 * element (k, c) at w[k*ldw + c*ask] (forward: ldw = C, ask = 1; backward-input, W^T of a
 * (K' x C') filter: ldw = 1, ask = C'); bias NULL for none.  Work unit u = (48-column panel u / mpan, row block u % mpan);
 * parts take equal runs of units in panel-major order: a thread packs a panel (C x 48,
 * contiguous: one TLB page per 21 rows, where x's rows are one or more 4 KiB pages apart
 * unless the array got huge pages) and runs its row blocks on it; each unit prefetches its
 * share of the next panel's C rows, so the packing reads from L1/L2.  When hw % 16 == 0 the
 * panels start where y's rows have a 64-byte boundary (NumPy's buffers are 16-byte aligned;
 * a 48-float store row straddling 4 lines instead of 3 cost r2_up 13 %). */
FC_PW_TARGET static void fc_pw_forward(int K, int C, const float *w, ptrdiff_t ldw, ptrdiff_t ask, const float *x, ptrdiff_t xs,
                                       float *y, ptrdiff_t ys, ptrdiff_t hw, int N, int part, int nparts,
                                       const float *bias) {
    int mpan = (K + FC_PW_MR - 1) / FC_PW_MR, share = (C + mpan - 1) / mpan;
    int sh = fc_pw_shift >= 0 ? fc_pw_shift : (hw % 16 == 0 ? (int)(((size_t)y % 64) / 4) : 0);
    ptrdiff_t ncols = (ptrdiff_t)N * hw, npan = (ncols + sh + FC_PW_NR - 1) / FC_PW_NR, cur = -1;
    ptrdiff_t units = npan * mpan, u0 = units * part / nparts, u1 = units * (part + 1) / nparts;
    ptrdiff_t xo = 0, yo = 0, xn = 0, yn = 0;
    fc_pw_pan d, dn;
    if (u1 <= u0) return;
    float *bp = fc_pw_no_buffer ? NULL : (float *)aligned_alloc(64, (size_t)C * FC_PW_NR * sizeof(float));
    if (!bp) {  /* no memory for the panel: plain loops (right, slow; never seen in practice) */
        for (ptrdiff_t u = u0; u < u1; u++) {
            ptrdiff_t p = u / mpan, g = p * FC_PW_NR - sh, ge = g + FC_PW_NR;
            int i = (int)(u - p * mpan);
            for (g = g < 0 ? 0 : g; g < ncols && g < ge; g++)
                for (int r = i * FC_PW_MR; r < K && r < (i + 1) * FC_PW_MR; r++) {
                    ptrdiff_t n = g / hw, q = g - n * hw;
                    const float *xc = x + n * xs + q;
                    float acc = bias ? bias[r] : 0.0f;
                    for (int k = 0; k < C; k++) acc += w[(ptrdiff_t)r * ldw + k * ask] * xc[(ptrdiff_t)k * hw];
                    y[n * ys + (ptrdiff_t)r * hw + q] = acc;
                }
        }
        return;
    }
    for (ptrdiff_t u = u0; u < u1; u++) {
        ptrdiff_t p = u / mpan;
        int i = (int)(u - p * mpan);
        if (p != cur) {
            if (cur >= 0 && p == cur + 1) { d = dn; xo = xn; yo = yn; }
            else fc_pw_panel(p, sh, ncols, hw, xs, ys, &d, &xo, &yo);
            if (p + 1 < npan) fc_pw_panel(p + 1, sh, ncols, hw, xs, ys, &dn, &xn, &yn);
            fc_pw_pack(C, x + xo, hw, &d, bp);
            cur = p;
        }
        int mrows = K - i * FC_PW_MR < FC_PW_MR ? K - i * FC_PW_MR : FC_PW_MR;
        int r0 = i * share, nr = C - r0 < share ? C - r0 : share;
        const float *pf = p + 1 < npan && nr > 0 ? x + xn + (ptrdiff_t)r0 * hw : NULL;
        const float *wi = w + (ptrdiff_t)i * FC_PW_MR * ldw, *bi = bias ? bias + i * FC_PW_MR : NULL;
        float *yi = y + yo + (ptrdiff_t)i * FC_PW_MR * hw;
        if (ask == 1)
            fc_pw_tile_rows(C, wi, ldw, mrows, bp, &d, yi, hw, bi, pf, hw, nr, &dn);
        else
            fc_pw_tile_cols(C, wi, ldw, ask, mrows, bp, &d, yi, hw, bi, pf, hw, nr, &dn);
    }
    free(bp);
}
#else
static int fc_pw_available(void) { return 0; }
static void fc_pw_forward(int K, int C, const float *w, ptrdiff_t ldw, ptrdiff_t ask, const float *x, ptrdiff_t xs,
                          float *y, ptrdiff_t ys, ptrdiff_t hw, int N, int part, int nparts,
                          const float *bias) {
    (void)K; (void)C; (void)w; (void)ldw; (void)ask; (void)x; (void)xs; (void)y; (void)ys; (void)hw; (void)N;
    (void)part; (void)nparts; (void)bias; (void)fc_pw_no_buffer; (void)fc_pw_shift;
}
#endif
#endif /* FC_CONV_1X1_H */
