/* Pointwise (1x1, stride 1, no padding) float32 backward-weight, AVX-512.
 *
 * dW[K x C] += sum over the column space l = (image n, pixel q) of dY[k][l] X[c][l]: a GEMM
 * whose long dimension (N * hw: 25088 for the ResNet bottleneck) is the reduction.  Written
 * as out[M x Nv] = A[M x L] . B[Nv x L]^T with A the operand with more rows (packing B then
 * costs 1/M of the FMAs): A = dY, B = X when K >= C (out = dW), else A = X, B = dY (out =
 * dW^T; the bottleneck: A = X, 256 rows, B = dY, 64).  A 6 x 64 register tile (24 zmm
 * accumulators) broadcasts A's values straight from its rows (6 streams, contiguous along l
 * within an image) and loads B from a panel of 64 of B's rows packed transposed (bp[l][64],
 * 16 x 16 blocks transposed in registers; gathers cost 20 % of the time on the bottleneck),
 * once per chunk of <= FC_PWB_KC columns, then re-used by every 6-row block of A.  The tile
 * keeps its accumulators over a whole chunk, whose columns may span images (the A row
 * pointers are re-based per image: 7x7 layers reduce over 5 images a chunk, not 49 columns).
 * Each work part accumulates into its own M x Nv buffer (rows padded to 6, columns to 64;
 * the first chunk starts from zero) and adds it into dW at its end (dW^T by 16 x 16
 * transposed blocks), so the tile needs no masks: B's padding lanes are zero, A's padding
 * rows repeat row 0 into padding rows of the buffer.  Prefetches (hint T2; T0 overflowed
 * L1): each tile, the next row block's A lines; spread over the row blocks, the next panel's
 * B rows (the pack otherwise stalls on DRAM).  ~97 GF/s a core on the bottleneck (FMA peak
 * ~115): the tile runs at ~91 % of peak, the pack takes ~7 %.
 *
 * Work split: `nparts` parts (conv.pyx's items of one group) = S reduction segments x T
 * ranges of A's row blocks, S the largest divisor of nparts leaving >= FC_PWB_MINSEG columns a
 * segment (bottleneck: 8 x 1; 7x7 layers: 1 x 8, each part re-packing all of B, the small
 * operand; S = 1 everywhere cost the bottleneck 25 %, MINSEG 256..2048 and KC 128..512
 * are within 2 %).  Parts of one segment write disjoint rows; segments are summed by conv.pyx
 * through its per-thread dW copies.  Rounding: FMA accumulation in column order. */
#ifndef FC_CONV_1X1_BW_H
#define FC_CONV_1X1_BW_H
#include "_conv_1x1.h"
#include "_tr16.h"

#define FC_PWB_MR 6
#define FC_PWB_NR 64
#define FC_PWB_KC fc_pwb_kc
static int fc_pwb_kc = 256;
#define FC_PWB_MINSEG fc_pwb_minseg
static int fc_pwb_minseg = 1024;
static int fc_pwb_pfa = 1, fc_pwb_pfb = 1;

/* the columns [g0, g1) of the column space as per-image runs: piece i is image pn[i], pixels
 * [pq[i], pq[i] + pl[i]) */
static int fc_pwb_pieces(ptrdiff_t g0, ptrdiff_t g1, ptrdiff_t hw, ptrdiff_t *pn, ptrdiff_t *pq, int *pl) {
    int np = 0;
    while (g0 < g1) {
        ptrdiff_t n = g0 / hw, q = g0 - n * hw, len = hw - q < g1 - g0 ? hw - q : g1 - g0;
        pn[np] = n; pq[np] = q; pl[np] = (int)len; np++;
        g0 += len;
    }
    return np;
}

/* plain loops for part (segment [g0, g1), A rows [m0, m1)): right, slow (no buffer memory) */
static void fc_pwb_plain(int Nv, const float *a, ptrdiff_t as, const float *b, ptrdiff_t bs, ptrdiff_t hw,
                        ptrdiff_t g0, ptrdiff_t g1, int m0, int m1, float *dw, ptrdiff_t osm, ptrdiff_t osj) {
    for (int m = m0; m < m1; m++)
        for (int j = 0; j < Nv; j++) {
            float acc = 0.0f;
            for (ptrdiff_t g = g0; g < g1; g++) {
                ptrdiff_t n = g / hw, q = g - n * hw;
                acc += a[n * as + m * hw + q] * b[n * bs + j * hw + q];
            }
            dw[m * osm + j * osj] += acc;
        }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_AVX512_1X1)

static inline __mmask16 fc_pwb_mask(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u); }

/* B rows [0, nrows) (nrows <= 64; row j at b + j*hw, image n at + n*bs) over the pieces,
 * transposed into bp[l][64] (l over the pieces' columns in order), lanes >= nrows zero:
 * 16 x 16 blocks loaded row-wise (masked at the piece's end) and transposed in registers */
FC_PW_TARGET __attribute__((noinline)) static void fc_pwb_pack(int np, const ptrdiff_t *pn, const ptrdiff_t *pq,
                                                              const int *pl, const float *b, ptrdiff_t bs,
                                                              ptrdiff_t hw, int nrows, float *bp) {
    const __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < np; i++) {
        const float *s = b + pn[i] * bs + pq[i];
        for (int q = 0; q < pl[i]; q += 16) {
            int w = pl[i] - q < 16 ? pl[i] - q : 16;
            __mmask16 lm = fc_pwb_mask(w);
            for (int v = 0; v < 4; v++) {
                __m512 r[16];
                int nr = nrows - 16 * v;
                if (nr <= 0) {
                    for (int c = 0; c < w; c++) _mm512_store_ps(bp + c * FC_PWB_NR + 16 * v, z);
                    continue;
                }
                for (int j = 0; j < 16; j++)
                    r[j] = j < nr ? _mm512_maskz_loadu_ps(lm, s + (ptrdiff_t)(16 * v + j) * hw + q) : z;
                fc_tr16(r);
                for (int c = 0; c < w; c++) _mm512_store_ps(bp + c * FC_PWB_NR + 16 * v, r[c]);
            }
            bp += w * FC_PWB_NR;
        }
    }
}

/* dw[j*ldw + m] += t[m - m0][j], m in [m0, m1), j < Nv, by 16 x 16 transposed blocks */
FC_PW_TARGET static void fc_pwb_add_tr(const float *t, ptrdiff_t ldt, int m0, int m1, int Nv, float *dw, ptrdiff_t ldw) {
    const __m512 z = _mm512_setzero_ps();
    for (int j = 0; j < Nv; j += 16)  /* dW's rows j.. j + 15 written front to back */
        for (int m = m0; m < m1; m += 16) {
            __mmask16 mm = fc_pwb_mask(m1 - m);
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = m + i < m1 ? _mm512_load_ps(t + (ptrdiff_t)(m - m0 + i) * ldt + j) : z;
            fc_tr16(r);
            for (int c = 0; c < 16 && j + c < Nv; c++) {
                float *d = dw + (ptrdiff_t)(j + c) * ldw + m;
                _mm512_mask_storeu_ps(d, mm, _mm512_add_ps(_mm512_maskz_loadu_ps(mm, d), r[c]));
            }
        }
}

/* dw[m*ldw + j] += t[m - m0][j] */
FC_PW_TARGET static void fc_pwb_add(const float *t, ptrdiff_t ldt, int m0, int m1, int Nv, float *dw, ptrdiff_t ldw) {
    for (int m = m0; m < m1; m++) {
        const float *s = t + (ptrdiff_t)(m - m0) * ldt;
        float *d = dw + (ptrdiff_t)m * ldw;
        for (int j = 0; j < Nv; j += 16) {
            __mmask16 jm = fc_pwb_mask(Nv - j);
            _mm512_mask_storeu_ps(d + j, jm, _mm512_add_ps(_mm512_maskz_loadu_ps(jm, d + j), _mm512_load_ps(s + j)));
        }
    }
}

#define FC_PWB_ZERO(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define FC_PWB_LD(i) c##i##0 = _mm512_load_ps(t + (i) * ldt); c##i##1 = _mm512_load_ps(t + (i) * ldt + 16); \
                     c##i##2 = _mm512_load_ps(t + (i) * ldt + 32); c##i##3 = _mm512_load_ps(t + (i) * ldt + 48);
#define FC_PWB_ST(i) _mm512_store_ps(t + (i) * ldt, c##i##0); _mm512_store_ps(t + (i) * ldt + 16, c##i##1); \
                    _mm512_store_ps(t + (i) * ldt + 32, c##i##2); _mm512_store_ps(t + (i) * ldt + 48, c##i##3);
#define FC_PWB_ROW(i)                                                                                  \
    { __m512 av = _mm512_set1_ps(a##i[q]);                                                            \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);         \
      c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2); c##i##3 = _mm512_fmadd_ps(av, b3, c##i##3); }

/* t[i][0:64] += sum over the pieces' columns l of A[i][l] * bp[l][0:64], i < 6 (rows of A at
 * a + i*hw (+ image n * as); rows >= mrows repeat row 0; t has 6 rows, ldt apart, 64-aligned) */
FC_PW_TARGET __attribute__((noinline)) static void fc_pwb_tile(int np, const ptrdiff_t *pn, const ptrdiff_t *pq, const int *pl,
                                    const float *a, ptrdiff_t as, ptrdiff_t hw, int mrows, const float *bp,
                                    float *t, ptrdiff_t ldt, int zero, int pfa) {
    FC_PWB_ZERO(0) FC_PWB_ZERO(1) FC_PWB_ZERO(2) FC_PWB_ZERO(3) FC_PWB_ZERO(4) FC_PWB_ZERO(5)
    if (!zero) {  /* (the first chunk starts from zero: the workspace is not initialised) */
        FC_PWB_LD(0) FC_PWB_LD(1) FC_PWB_LD(2) FC_PWB_LD(3) FC_PWB_LD(4) FC_PWB_LD(5)
    }
    for (int i = 0; i < np; i++) {
        const float *a0 = a + pn[i] * as + pq[i];
        const float *a1 = mrows > 1 ? a0 + hw : a0, *a2 = mrows > 2 ? a0 + 2 * hw : a0;
        const float *a3 = mrows > 3 ? a0 + 3 * hw : a0, *a4 = mrows > 4 ? a0 + 4 * hw : a0;
        const float *a5 = mrows > 5 ? a0 + 5 * hw : a0;
        const int len = pl[i];
        const char *pf = (const char *)(a0 + FC_PWB_MR * hw);  /* the next row block's lines */
        for (int q0 = 0; q0 < len; q0 += 16) {
            if (pfa)
                for (int r = 0; r < FC_PWB_MR; r++) _mm_prefetch(pf + (r * hw + q0) * 4, _MM_HINT_T2);
            const int qe = q0 + 16 < len ? q0 + 16 : len;
            for (int q = q0; q < qe; q++, bp += FC_PWB_NR) {
                __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
                __m512 b2 = _mm512_load_ps(bp + 32), b3 = _mm512_load_ps(bp + 48);
                FC_PWB_ROW(0) FC_PWB_ROW(1) FC_PWB_ROW(2) FC_PWB_ROW(3) FC_PWB_ROW(4) FC_PWB_ROW(5)
            }
        }
    }
    FC_PWB_ST(0) FC_PWB_ST(1) FC_PWB_ST(2) FC_PWB_ST(3) FC_PWB_ST(4) FC_PWB_ST(5)
}

/* this thread's workspace of >= bytes (64-aligned), kept across calls: freshly mapped
 * buffers cost page faults on every call (r3: 9 % of the time in clear_page) */
static __thread char *fc_pwb_ws = NULL;
static __thread size_t fc_pwb_ws_cap = 0;
static char *fc_pwb_workspace(size_t bytes) {
    if (bytes > fc_pwb_ws_cap) {
        free(fc_pwb_ws);
        bytes = (bytes + 63) & ~(size_t)63;
        fc_pwb_ws = (char *)aligned_alloc(64, bytes);
        fc_pwb_ws_cap = fc_pwb_ws ? bytes : 0;
    }
    return fc_pwb_ws;
}

/* prefetch rows [j0, j1) of B (row j at b + j*hw) over the pieces' columns */
FC_PW_TARGET static void fc_pwb_prefetch_b(int np, const ptrdiff_t *pn, const ptrdiff_t *pq, const int *pl,
                                           const float *b, ptrdiff_t bs, ptrdiff_t hw, int j0, int j1) {
    for (int j = j0; j < j1; j++)
        for (int i = 0; i < np; i++) {
            const char *s = (const char *)(b + pn[i] * bs + (ptrdiff_t)j * hw + pq[i]);
            for (int q = 0; q < pl[i]; q += 16) _mm_prefetch(s + 4 * q, _MM_HINT_T2);
            _mm_prefetch(s + 4 * (pl[i] - 1), _MM_HINT_T2);
        }
}

/* Part `part` of `nparts` of dW += dY . X^T for one group: dY K x (N images, hw columns; images
 * dys apart, rows hw apart), X C x (same; images xs apart), dW row k at dw + k*ldw.
 * Returns 0, or -1 where buffer memory was missing and plain loops ran instead. */
FC_PW_TARGET static int fc_pwb_weight(int K, int C, const float *dy, ptrdiff_t dys, const float *x, ptrdiff_t xs,
                                     ptrdiff_t hw, int N, float *dw, ptrdiff_t ldw, int part, int nparts) {
    const int tr = K < C;  /* A = X, out = dW^T */
    const int M = tr ? C : K, Nv = tr ? K : C;
    const float *a = tr ? x : dy, *b = tr ? dy : x;
    const ptrdiff_t as = tr ? xs : dys, bs = tr ? dys : xs, osm = tr ? 1 : ldw, osj = tr ? ldw : 1;
    const ptrdiff_t L = (ptrdiff_t)N * hw;
    int S = 1;
    for (int s = nparts; s > 1; s--)
        if (nparts % s == 0 && L / s >= FC_PWB_MINSEG) { S = s; break; }
    const int T = nparts / S, si = part / T, ti = part % T, nb = (M + FC_PWB_MR - 1) / FC_PWB_MR;
    const ptrdiff_t g0 = L * si / S, g1 = L * (si + 1) / S;
    const int b0 = (int)((ptrdiff_t)nb * ti / T), b1 = (int)((ptrdiff_t)nb * (ti + 1) / T);
    const int m0 = b0 * FC_PWB_MR, m1 = b1 * FC_PWB_MR < M ? b1 * FC_PWB_MR : M;
    if (g1 <= g0 || m1 <= m0) return 0;
    const int npan = (Nv + FC_PWB_NR - 1) / FC_PWB_NR, rows = (b1 - b0) * FC_PWB_MR;
    const ptrdiff_t ldt = (ptrdiff_t)npan * FC_PWB_NR;
    /* one workspace: the part buffer, B's packed panel, two chunks' piece lists */
    const size_t tb = ((size_t)rows * ldt * sizeof(float) + 63) & ~(size_t)63;
    const size_t bb = ((size_t)FC_PWB_KC * FC_PWB_NR * sizeof(float) + 63) & ~(size_t)63;
    const size_t pb = (size_t)(FC_PWB_KC + 1) * (4 * sizeof(ptrdiff_t) + 2 * sizeof(int));
    char *ws = fc_pw_no_buffer ? NULL : fc_pwb_workspace(tb + bb + pb);
    if (!ws) {
        fc_pwb_plain(Nv, a, as, b, bs, hw, g0, g1, m0, m1, dw, osm, osj);
        return -1;
    }
    float *t = (float *)ws, *bp = (float *)(ws + tb);
    ptrdiff_t *pn = (ptrdiff_t *)(ws + tb + bb), *pq = pn + FC_PWB_KC + 1;
    int *pl = (int *)(pn + 4 * (FC_PWB_KC + 1));
    /* the next chunk's pieces (its B rows are prefetched while the last panel's tiles run) */
    ptrdiff_t *pn2 = pq + FC_PWB_KC + 1, *pq2 = pn2 + FC_PWB_KC + 1;
    int *pl2 = pl + FC_PWB_KC + 1, np2 = 0;
    const int nrb = (m1 - m0 + FC_PWB_MR - 1) / FC_PWB_MR;
    int np = fc_pwb_pieces(g0, g0 + FC_PWB_KC < g1 ? g0 + FC_PWB_KC : g1, hw, pn, pq, pl);
    for (ptrdiff_t c0 = g0; c0 < g1; c0 += FC_PWB_KC) {
        ptrdiff_t c1 = c0 + FC_PWB_KC < g1 ? c0 + FC_PWB_KC : g1;
        np2 = c1 < g1 ? fc_pwb_pieces(c1, c1 + FC_PWB_KC < g1 ? c1 + FC_PWB_KC : g1, hw, pn2, pq2, pl2) : 0;
        for (int p = 0; p < npan; p++) {
            int nr = Nv - p * FC_PWB_NR < FC_PWB_NR ? Nv - p * FC_PWB_NR : FC_PWB_NR;
            fc_pwb_pack(np, pn, pq, pl, b + (ptrdiff_t)p * FC_PWB_NR * hw, bs, hw, nr, bp);
            /* next B region: panel p + 1 of this chunk, or panel 0 of the next */
            int nx = p + 1 < npan, nnp = nx ? np : np2;
            int nrn = nx ? (Nv - (p + 1) * FC_PWB_NR < FC_PWB_NR ? Nv - (p + 1) * FC_PWB_NR : FC_PWB_NR) : (Nv < FC_PWB_NR ? Nv : FC_PWB_NR);
            const float *bn = b + (nx ? (ptrdiff_t)(p + 1) * FC_PWB_NR * hw : 0);
            for (int m = m0, rb = 0; m < m1; m += FC_PWB_MR, rb++) {
                if (fc_pwb_pfb && nnp > 0)
                    fc_pwb_prefetch_b(nnp, nx ? pn : pn2, nx ? pq : pq2, nx ? pl : pl2, bn, bs, hw,
                                      nrn * rb / nrb, nrn * (rb + 1) / nrb);
                fc_pwb_tile(np, pn, pq, pl, a + (ptrdiff_t)m * hw, as, hw, m1 - m < FC_PWB_MR ? m1 - m : FC_PWB_MR, bp,
                           t + (ptrdiff_t)(m - m0) * ldt + p * FC_PWB_NR, ldt, c0 == g0, fc_pwb_pfa);
            }
        }
        { ptrdiff_t *x1 = pn; pn = pn2; pn2 = x1; x1 = pq; pq = pq2; pq2 = x1; int *x2 = pl; pl = pl2; pl2 = x2; np = np2; }
    }
    if (tr) fc_pwb_add_tr(t, ldt, m0, m1, Nv, dw, ldw);
    else fc_pwb_add(t, ldt, m0, m1, Nv, dw, ldw);
    return 0;
}
#else
static int fc_pwb_weight(int K, int C, const float *dy, ptrdiff_t dys, const float *x, ptrdiff_t xs,
                        ptrdiff_t hw, int N, float *dw, ptrdiff_t ldw, int part, int nparts) {
    (void)K; (void)C; (void)dy; (void)dys; (void)x; (void)xs; (void)hw; (void)N; (void)dw; (void)ldw;
    (void)part; (void)nparts; (void)fc_pwb_pieces; (void)fc_pwb_plain;
    return -2;
}
#endif
#endif /* FC_CONV_1X1_BW_H */
