/* Pointwise (1x1, stride 1, no padding) float32 backward-weight, AVX-512.
 *
 * dW[K x C] += sum over the column space l = (image n, pixel q) of dY[k][l] X[c][l]: a GEMM
 * whose long dimension (N * hw: 25088 for the ResNet bottleneck) is the reduction.  Written
 * as out[M x Nv] = A[M x L] . B[Nv x L]^T with A the operand with more rows (the cost of
 * packing B is then 1/M of the FMAs): A = dY, B = X when K >= C (out = dW), else A = X,
 * B = dY (out = dW^T).  A 6 x 64 register tile (24 zmm accumulators) broadcasts A's values
 * straight from its rows (6 streams, contiguous along l within an image) and loads B from a
 * panel of 64 of B's rows packed transposed (l-major, 64 floats a line) by gathers, once per
 * chunk of <= FC_BW_KC columns, then re-used by every 6-row block of A.  The tile keeps its
 * accumulators over a whole chunk, whose columns may span images (the A row pointers are
 * re-based per image: 7x7 layers reduce over 8 images per chunk, not 49 columns).  Each work
 * part accumulates into its own zeroed M x Nv buffer (rows padded to 6, columns to 64) and adds
 * it into dW (transposed when A = X) at its end, so tails need no masks in the tile: B's
 * padding lanes are zero, A's padding rows repeat row 0 into padding rows of the buffer.
 *
 * Work split: `nparts` parts (conv.pyx's items of one group) = S reduction segments x T
 * ranges of A's row blocks, S the largest divisor of nparts leaving >= FC_BW_MINSEG columns a
 * segment (bottleneck: 8 x 1; 7x7 layers: 1 x 8, each part re-packing all of B, the small
 * operand).  Parts of one segment write disjoint rows; segments are summed by conv.pyx
 * through its per-thread dW copies.  Rounding: FMA accumulation in column order. */
#ifndef FC_CONV_1X1_BW_H
#define FC_CONV_1X1_BW_H
#include <string.h>
#include "_conv_1x1.h"

#define FC_BW_MR 6
#define FC_BW_NR 64
#define FC_BW_KC 256
#define FC_BW_MINSEG 1024

/* the columns [g0, g1) of the column space as per-image runs: piece i is image pn[i], pixels
 * [pq[i], pq[i] + pl[i]) */
static int fc_bw_pieces(ptrdiff_t g0, ptrdiff_t g1, ptrdiff_t hw, ptrdiff_t *pn, ptrdiff_t *pq, int *pl) {
    int np = 0;
    while (g0 < g1) {
        ptrdiff_t n = g0 / hw, q = g0 - n * hw, len = hw - q < g1 - g0 ? hw - q : g1 - g0;
        pn[np] = n; pq[np] = q; pl[np] = (int)len; np++;
        g0 += len;
    }
    return np;
}

/* plain loops for part (segment [g0, g1), A rows [m0, m1)): right, slow (no buffer memory) */
static void fc_bw_plain(int Nv, const float *a, ptrdiff_t as, const float *b, ptrdiff_t bs, ptrdiff_t hw,
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

/* B rows [j0, j0 + nrows) (nrows <= 64; row j at b + j*hw, image n at + n*bs) over the pieces,
 * transposed into bp[l][64] (l over the pieces' columns in order), lanes >= nrows zero */
FC_PW_TARGET static void fc_bw_pack(int np, const ptrdiff_t *pn, const ptrdiff_t *pq, const int *pl,
                                    const float *b, ptrdiff_t bs, ptrdiff_t hw, int nrows, float *bp) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32((int)hw));
    __mmask16 m[4];
    for (int v = 0; v < 4; v++) {
        int r = nrows - 16 * v;
        m[v] = r >= 16 ? (__mmask16)0xFFFF : r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1u);
    }
    const __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < np; i++) {
        const float *s = b + pn[i] * bs + pq[i];
        for (int q = 0; q < pl[i]; q++, s++, bp += FC_BW_NR)
            for (int v = 0; v < 4; v++)
                _mm512_store_ps(bp + 16 * v, m[v] ? _mm512_mask_i32gather_ps(z, m[v], idx, s + 16 * v * hw, 4) : z);
    }
}

#define FC_BW_LD(i) __m512 c##i##0 = _mm512_load_ps(t + (i) * ldt), c##i##1 = _mm512_load_ps(t + (i) * ldt + 16), \
                           c##i##2 = _mm512_load_ps(t + (i) * ldt + 32), c##i##3 = _mm512_load_ps(t + (i) * ldt + 48);
#define FC_BW_ST(i) _mm512_store_ps(t + (i) * ldt, c##i##0); _mm512_store_ps(t + (i) * ldt + 16, c##i##1); \
                    _mm512_store_ps(t + (i) * ldt + 32, c##i##2); _mm512_store_ps(t + (i) * ldt + 48, c##i##3);
#define FC_BW_ROW(i)                                                                                  \
    { __m512 av = _mm512_set1_ps(a##i[q]);                                                            \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);         \
      c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2); c##i##3 = _mm512_fmadd_ps(av, b3, c##i##3); }

/* t[i][0:64] += sum over the pieces' columns l of A[i][l] * bp[l][0:64], i < 6 (rows of A at
 * a + i*hw (+ image n * as); rows >= mrows repeat row 0; t has 6 rows, ldt apart, 64-aligned) */
FC_PW_TARGET static void fc_bw_tile(int np, const ptrdiff_t *pn, const ptrdiff_t *pq, const int *pl,
                                    const float *a, ptrdiff_t as, ptrdiff_t hw, int mrows, const float *bp,
                                    float *t, ptrdiff_t ldt) {
    FC_BW_LD(0) FC_BW_LD(1) FC_BW_LD(2) FC_BW_LD(3) FC_BW_LD(4) FC_BW_LD(5)
    for (int i = 0; i < np; i++) {
        const float *a0 = a + pn[i] * as + pq[i];
        const float *a1 = mrows > 1 ? a0 + hw : a0, *a2 = mrows > 2 ? a0 + 2 * hw : a0;
        const float *a3 = mrows > 3 ? a0 + 3 * hw : a0, *a4 = mrows > 4 ? a0 + 4 * hw : a0;
        const float *a5 = mrows > 5 ? a0 + 5 * hw : a0;
        const int len = pl[i];
        for (int q = 0; q < len; q++, bp += FC_BW_NR) {
            __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
            __m512 b2 = _mm512_load_ps(bp + 32), b3 = _mm512_load_ps(bp + 48);
            FC_BW_ROW(0) FC_BW_ROW(1) FC_BW_ROW(2) FC_BW_ROW(3) FC_BW_ROW(4) FC_BW_ROW(5)
        }
    }
    FC_BW_ST(0) FC_BW_ST(1) FC_BW_ST(2) FC_BW_ST(3) FC_BW_ST(4) FC_BW_ST(5)
}

/* Part `part` of `nparts` of dW += dY . X^T for one group: dY K x (N images, hw columns; images
 * dys apart, rows hw apart), X C x (same; images xs apart), dW row k at dw + k*ldw.
 * Returns 0, or -1 where buffer memory was missing and plain loops ran instead. */
FC_PW_TARGET static int fc_bw_weight(int K, int C, const float *dy, ptrdiff_t dys, const float *x, ptrdiff_t xs,
                                     ptrdiff_t hw, int N, float *dw, ptrdiff_t ldw, int part, int nparts) {
    const int tr = K < C;  /* A = X, out = dW^T */
    const int M = tr ? C : K, Nv = tr ? K : C;
    const float *a = tr ? x : dy, *b = tr ? dy : x;
    const ptrdiff_t as = tr ? xs : dys, bs = tr ? dys : xs, osm = tr ? 1 : ldw, osj = tr ? ldw : 1;
    const ptrdiff_t L = (ptrdiff_t)N * hw;
    int S = 1;
    for (int s = nparts; s > 1; s--)
        if (nparts % s == 0 && L / s >= FC_BW_MINSEG) { S = s; break; }
    const int T = nparts / S, si = part / T, ti = part % T, nb = (M + FC_BW_MR - 1) / FC_BW_MR;
    const ptrdiff_t g0 = L * si / S, g1 = L * (si + 1) / S;
    const int b0 = (int)((ptrdiff_t)nb * ti / T), b1 = (int)((ptrdiff_t)nb * (ti + 1) / T);
    const int m0 = b0 * FC_BW_MR, m1 = b1 * FC_BW_MR < M ? b1 * FC_BW_MR : M;
    if (g1 <= g0 || m1 <= m0) return 0;
    const int npan = (Nv + FC_BW_NR - 1) / FC_BW_NR, rows = (b1 - b0) * FC_BW_MR;
    const ptrdiff_t ldt = (ptrdiff_t)npan * FC_BW_NR;
    float *t = NULL, *bp = NULL;
    ptrdiff_t *pn = NULL, *pq = NULL;
    int *pl = NULL;
    if (!fc_pw_no_buffer) {
        t = (float *)aligned_alloc(64, (size_t)rows * ldt * sizeof(float));
        bp = (float *)aligned_alloc(64, (size_t)FC_BW_KC * FC_BW_NR * sizeof(float));
        pn = (ptrdiff_t *)malloc((FC_BW_KC + 1) * 2 * sizeof(ptrdiff_t));
        pl = (int *)malloc((FC_BW_KC + 1) * sizeof(int));
    }
    if (!t || !bp || !pn || !pl) {
        free(t); free(bp); free(pn); free(pl);
        fc_bw_plain(Nv, a, as, b, bs, hw, g0, g1, m0, m1, dw, osm, osj);
        return -1;
    }
    pq = pn + FC_BW_KC + 1;
    memset(t, 0, (size_t)rows * ldt * sizeof(float));
    for (ptrdiff_t c0 = g0; c0 < g1; c0 += FC_BW_KC) {
        int np = fc_bw_pieces(c0, c0 + FC_BW_KC < g1 ? c0 + FC_BW_KC : g1, hw, pn, pq, pl);
        for (int p = 0; p < npan; p++) {
            int nr = Nv - p * FC_BW_NR < FC_BW_NR ? Nv - p * FC_BW_NR : FC_BW_NR;
            fc_bw_pack(np, pn, pq, pl, b + (ptrdiff_t)p * FC_BW_NR * hw, bs, hw, nr, bp);
            for (int m = m0; m < m1; m += FC_BW_MR)
                fc_bw_tile(np, pn, pq, pl, a + (ptrdiff_t)m * hw, as, hw, m1 - m < FC_BW_MR ? m1 - m : FC_BW_MR, bp,
                           t + (ptrdiff_t)(m - m0) * ldt + p * FC_BW_NR, ldt);
        }
    }
    if (tr)
        for (int j = 0; j < Nv; j++)
            for (int m = m0; m < m1; m++) dw[j * osj + m] += t[(ptrdiff_t)(m - m0) * ldt + j];
    else
        for (int m = m0; m < m1; m++)
            for (int j = 0; j < Nv; j++) dw[m * osm + j] += t[(ptrdiff_t)(m - m0) * ldt + j];
    free(t); free(bp); free(pn); free(pl);
    return 0;
}
#else
static int fc_bw_weight(int K, int C, const float *dy, ptrdiff_t dys, const float *x, ptrdiff_t xs,
                        ptrdiff_t hw, int N, float *dw, ptrdiff_t ldw, int part, int nparts) {
    (void)K; (void)C; (void)dy; (void)dys; (void)x; (void)xs; (void)hw; (void)N; (void)dw; (void)ldw;
    (void)part; (void)nparts; (void)fc_bw_pieces; (void)fc_bw_plain;
    return -2;
}
#endif
#endif /* FC_CONV_1X1_BW_H */
