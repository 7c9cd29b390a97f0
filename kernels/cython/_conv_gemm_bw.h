/* Backward-weight helpers for the packed-GEMM conv (see _conv_gemm.h): faster packing of
 * dY rows into A panels (8 x 8 transposes instead of stride-8 scalar stores). */
#ifndef FC_CONV_GEMM_BW_H
#define FC_CONV_GEMM_BW_H
#include "_conv_gemm.h"

#if defined(FC_CG_TARGET)
/* 8 x 8 transpose of r[0..7] (rows in, columns out) */
FC_CG_TARGET static inline void fc_bw_tr8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

/* fc_cg_pack_a_rows (same layout: ap[p][koff + k][i] = src[(p*FC_MR + i) * ld + k]) with whole
 * 8-row panels moved as 8 x 8 blocks. */
#if defined(FC_CG_TARGET)
FC_CG_TARGET
#endif
static void fc_bw_pack_a_rows(const float *src, ptrdiff_t ld, int m, int koff, int len, int kdt, float *ap) {
#if defined(FC_CG_TARGET)
    int full = m / FC_MR;
    for (int p = 0; p < full; p++) {
        const float *s = src + (ptrdiff_t)p * FC_MR * ld;
        float *dst = ap + ((ptrdiff_t)p * kdt + koff) * FC_MR;
        int k = 0;
        for (; k + 8 <= len; k += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * ld + k);
            fc_bw_tr8(r);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (ptrdiff_t)(k + i) * FC_MR, r[i]);
        }
        for (; k < len; k++)
            for (int i = 0; i < FC_MR; i++) dst[(ptrdiff_t)k * FC_MR + i] = s[i * ld + k];
    }
    if (full * FC_MR < m)
        fc_cg_pack_a_rows(src + (ptrdiff_t)full * FC_MR * ld, ld, m - full * FC_MR, koff, len, kdt,
                          ap + (ptrdiff_t)full * kdt * FC_MR);
#else
    fc_cg_pack_a_rows(src, ld, m, koff, len, kdt, ap);
#endif
}

/* prefetch the source of one im2col row: base[seg.src .. seg.src + len*sw + extra) for each segment */
static inline void fc_bw_prefetch_row(const float *base, const fc_cg_segment *sg, int ns, int sw, int extra) {
    for (int i = 0; i < ns; i++) {
        const char *p = (const char *)(base + sg[i].src), *e = (const char *)(base + sg[i].src + sg[i].len * sw + extra);
        for (; p < e; p += 64) __builtin_prefetch(p, 0, 3);
        __builtin_prefetch(e - 1, 0, 3);
    }
}

#if defined(FC_CG_TARGET)
/* 16 rows of tmp (ld floats apart, ncols long) -> columns [g16, g16 + 16) of a B panel (bp[k][j]) */
FC_CG_TARGET static void fc_bw_tr16_panel(const float *tmp, ptrdiff_t ld, int ncols, float *bp) {
    int k0 = 0;
    for (; k0 + 16 <= ncols; k0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(tmp + (ptrdiff_t)i * ld + k0);
        fc_tr16(r);
        for (int i = 0; i < 16; i++) _mm512_storeu_ps(bp + (ptrdiff_t)(k0 + i) * FC_NR, r[i]);
    }
    for (int k = k0; k < ncols; k++)
        for (int j = 0; j < 16; j++) bp[(ptrdiff_t)k * FC_NR + j] = tmp[(ptrdiff_t)j * ld + k];
}
#endif

/* One B panel of backward-weight: im2col rows t .. t+47 (row (c, r, s) of the zero-padded
 * input x, Hp x Wp planes `plane` floats apart, through the segment table sg) transposed into
 * bp[k][j] (depth ncols); rows >= crs are zero.  Works 16 rows at a time through tmp (16 x
 * ncols floats, stays in L1/L2), prefetching the input rows two channels ahead. */
#if defined(FC_CG_TARGET)
FC_CG_TARGET
static void fc_bw_pack_b_panel(const float *x, ptrdiff_t plane, int Wp, int R, int S, int dh, int dw, int crs,
                               int t, const fc_cg_segment *sg, int ns, int sw, int ncols, float *tmp, float *bp) {
    int rs = R * S, extra = (S - 1) * dw + 1;
    for (int g = 0; g < FC_NR / 16; g++) {
        for (int i = 0; i < 16; i++) {
            int tk = t + g * 16 + i;
            float *row = tmp + (ptrdiff_t)i * ncols;
            if (tk >= crs) { memset(row, 0, (size_t)ncols * sizeof(float)); continue; }
            int c = tk / rs, r = (tk % rs) / S, s = tk % S;
            if (s == 0 && (c + 2) * rs < crs)
                fc_bw_prefetch_row(x + (ptrdiff_t)(c + 2) * plane + (ptrdiff_t)r * dh * Wp, sg, ns, sw, extra);
            fc_cg_im2col_tab(x + (ptrdiff_t)c * plane + (ptrdiff_t)r * dh * Wp + (ptrdiff_t)s * dw, sg, ns, sw, row);
        }
        fc_bw_tr16_panel(tmp, ncols, ncols, bp + g * 16);
    }
}
#else
static void fc_bw_pack_b_panel(const float *x, ptrdiff_t plane, int Wp, int R, int S, int dh, int dw, int crs,
                               int t, const fc_cg_segment *sg, int ns, int sw, int ncols, float *tmp, float *bp) {
    (void)x; (void)plane; (void)Wp; (void)R; (void)S; (void)dh; (void)dw; (void)crs; (void)t; (void)sg;
    (void)ns; (void)sw; (void)ncols; (void)tmp; (void)bp;
}
#endif

/* ---- backward-weight, "taps" variant: dW^T[t, k] += sum_j x_t[j] . dY^T[j, k] ----
 * The kernel's rows are mr im2col rows t (taps (c, r, s)), each read straight from the
 * zero-padded input at its own offset (column j of the chunk at off[t] + seg.src + j*sw: no
 * im2col, no transposes); dY^T is packed once per chunk in panels of FC_BW_NR columns of K.
 * mr x 32 tiles accumulate a whole chunk in registers.  Against the 8 x 48 panels: no
 * im2col/transposes of the C*R*S rows (the packing left is K x cols) and C*R*S needs no
 * rounding to 48 (the stem: 147). */
#define FC_BW_NR 32

#if defined(FC_CG_TARGET)
#define FC_BW_ROW(i)                                                              \
    if ((i) < mr_) { __m512 av = _mm512_set1_ps(a[o##i]);                          \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                \
      c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1); }
#define FC_BW_ST(i)                                                                \
    if ((i) < mr_ && (i) < mrows) { float *cr = c + (ptrdiff_t)(i) * ldc;           \
      _mm512_storeu_ps(cr, _mm512_add_ps(c##i##0, _mm512_loadu_ps(cr)));            \
      _mm512_storeu_ps(cr + 16, _mm512_add_ps(c##i##1, _mm512_loadu_ps(cr + 16))); }
#define FC_BW_DEF(MR)                                                                                  \
FC_CG_TARGET static void fc_bw_taps_k##MR(const float *x, const ptrdiff_t *off, int mrows,              \
                                          const fc_cg_segment *sg, int ns, int sw,                     \
                                          const float *b, float *c, ptrdiff_t ldc) {                       \
    enum { mr_ = MR };                                                                                 \
    const ptrdiff_t o0 = off[0], o1 = mr_ > 1 ? off[1] : 0, o2 = mr_ > 2 ? off[2] : 0,                 \
                    o3 = mr_ > 3 ? off[3] : 0, o4 = mr_ > 4 ? off[4] : 0, o5 = mr_ > 5 ? off[5] : 0,   \
                    o6 = mr_ > 6 ? off[6] : 0, o7 = mr_ > 7 ? off[7] : 0;                              \
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,    \
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00; \
    for (int i = 0; i < mr_ && i < mrows; i++) { /* the C tile is added to at the end: fetch it now */  \
        __builtin_prefetch(c + (ptrdiff_t)i * ldc, 1, 3); __builtin_prefetch(c + (ptrdiff_t)i * ldc + 16, 1, 3); } \
    for (int i = 0; i < ns; i++) {                                                                     \
        const float *a = x + sg[i].src;                                                                \
        for (ptrdiff_t j = 0; j < sg[i].len; j++, a += sw, b += FC_BW_NR) {                            \
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);                              \
            FC_BW_ROW(0) FC_BW_ROW(1) FC_BW_ROW(2) FC_BW_ROW(3) FC_BW_ROW(4) FC_BW_ROW(5) FC_BW_ROW(6)  \
            FC_BW_ROW(7)                                                                               \
        }                                                                                              \
    }                                                                                                  \
    FC_BW_ST(0) FC_BW_ST(1) FC_BW_ST(2) FC_BW_ST(3) FC_BW_ST(4) FC_BW_ST(5) FC_BW_ST(6) FC_BW_ST(7)   \
}
FC_BW_DEF(1) FC_BW_DEF(2) FC_BW_DEF(3) FC_BW_DEF(4) FC_BW_DEF(5) FC_BW_DEF(6) FC_BW_DEF(7) FC_BW_DEF(8)

/* mr (1..8) rows of C (ldc apart) += the im2col rows whose sources are x + off[i] (+ seg.src +
 * j*sw for column j of the chunk's segments) times one packed dY^T panel; rows >= mrows of the
 * tile are computed but not stored (off[i] must still be a valid offset there). */
FC_CG_TARGET static void fc_bw_taps(int mr, const float *x, const ptrdiff_t *off, int mrows, const fc_cg_segment *sg,
                                    int ns, int sw, const float *b, float *c, ptrdiff_t ldc) {
    switch (mr) {
    case 1: fc_bw_taps_k1(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    case 2: fc_bw_taps_k2(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    case 3: fc_bw_taps_k3(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    case 4: fc_bw_taps_k4(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    case 5: fc_bw_taps_k5(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    case 6: fc_bw_taps_k6(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    case 7: fc_bw_taps_k7(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    default: fc_bw_taps_k8(x, off, mrows, sg, ns, sw, b, c, ldc); break;
    }
}

/* dY^T panels: bp[p][koff + j][i] = src[(p*32 + i) * ld + j] for j < len; rows >= m zero
 * (kdt: the panels' full depth).  16 x 16 transposes, scalar column tail. */
FC_CG_TARGET static void fc_bw_pack_dyt(const float *src, ptrdiff_t ld, int m, int koff, int len, int kdt, float *bp) {
    int npan = (m + FC_BW_NR - 1) / FC_BW_NR;
    for (int p = 0; p < npan; p++)
        for (int g = 0; g < FC_BW_NR / 16; g++) {
            int r0 = p * FC_BW_NR + g * 16, nr = m - r0 < 16 ? (m - r0 < 0 ? 0 : m - r0) : 16;
            float *dst = bp + ((ptrdiff_t)p * kdt + koff) * FC_BW_NR + g * 16;
            const float *s = src + (ptrdiff_t)r0 * ld;
            int j = 0;
            for (; j + 16 <= len; j += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; i++) r[i] = i < nr ? _mm512_loadu_ps(s + (ptrdiff_t)i * ld + j) : _mm512_setzero_ps();
                fc_tr16(r);
                for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (ptrdiff_t)(j + i) * FC_BW_NR, r[i]);
            }
            for (; j < len; j++)
                for (int i = 0; i < 16; i++) dst[(ptrdiff_t)j * FC_BW_NR + i] = i < nr ? s[(ptrdiff_t)i * ld + j] : 0.0f;
        }
}
#else
static void fc_bw_taps(int mr, const float *x, const ptrdiff_t *off, int mrows, const fc_cg_segment *sg,
                       int ns, int sw, const float *b, float *c, ptrdiff_t ldc) {
    (void)mr; (void)x; (void)off; (void)mrows; (void)sg; (void)ns; (void)sw; (void)b; (void)c; (void)ldc;
}
static void fc_bw_pack_dyt(const float *src, ptrdiff_t ld, int m, int koff, int len, int kdt, float *bp) {
    (void)src; (void)ld; (void)m; (void)koff; (void)len; (void)kdt; (void)bp;
}
#endif
#endif /* FC_CONV_GEMM_BW_H */
