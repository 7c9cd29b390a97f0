/* Packed float32 GEMM for the Cython conv's GEMM paths (AVX-512, runtime-dispatched).
 *
 * C[M x N] (+)= A[M x kd] . B[kd x N], with both operands pre-packed by the caller
 * (BLIS style): A in panels of FC_MR rows, each panel [kd][FC_MR]; B in panels of
 * FC_NR columns, each panel [kd][FC_NR]; padding rows/columns are zero.  C is a
 * scratch matrix padded to whole tiles (ld >= npan * FC_NR, rows >= mpan * FC_MR).
 * The conv code packs im2col rows straight into B (so the copy lands in L2 and is
 * not made twice, once by im2col and again by BLAS's own packing).
 *
 * The 8 x 48 micro-kernel keeps 24 zmm accumulators; per k step 3 vector loads of B
 * and 8 broadcasts of A feed 24 FMAs.  It is compiled with target("avx512f") (no
 * -march=native needed) and used only when the CPU has AVX-512F (fc_cg_available);
 * elsewhere conv.pyx keeps the OpenBLAS path.  Rounding: plain FMA accumulation in
 * k order, like any GEMM: relative error ~1e-7 against float64. */
#ifndef FC_CONV_GEMM_H
#define FC_CONV_GEMM_H
#include <stddef.h>
#include <string.h>

#define FC_MR 8
#define FC_NR 48

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_AVX512_GEMM)
#include <immintrin.h>
#include "_tr16.h"
#define FC_CG_TARGET __attribute__((target("avx512f")))

static int fc_cg_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

#define FC_ROW(i)                                                   \
    { __m512 av = _mm512_set1_ps(a[i]);                             \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                   \
      c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                   \
      c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2); }
#define FC_ZERO(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define FC_STORE(i)                                                                  \
    if ((i) < mrows) {                                                               \
      float *cr = c + (ptrdiff_t)(i) * ldc;                                          \
      if (acc) {                                                                     \
          c##i##0 = _mm512_add_ps(c##i##0, _mm512_maskz_loadu_ps(m0, cr));           \
          c##i##1 = _mm512_add_ps(c##i##1, _mm512_maskz_loadu_ps(m1, cr + 16));      \
          c##i##2 = _mm512_add_ps(c##i##2, _mm512_maskz_loadu_ps(m2, cr + 32));      \
      } else if (bias) {                                                             \
          __m512 bv = _mm512_set1_ps(bias[i]);                                       \
          c##i##0 = _mm512_add_ps(c##i##0, bv); c##i##1 = _mm512_add_ps(c##i##1, bv);  \
          c##i##2 = _mm512_add_ps(c##i##2, bv);                                      \
      }                                                                              \
      if (full) {                                                                    \
          _mm512_storeu_ps(cr, c##i##0); _mm512_storeu_ps(cr + 16, c##i##1);        \
          _mm512_storeu_ps(cr + 32, c##i##2);                                        \
      } else {                                                                       \
          _mm512_mask_storeu_ps(cr, m0, c##i##0);                                    \
          _mm512_mask_storeu_ps(cr + 16, m1, c##i##1);                               \
          _mm512_mask_storeu_ps(cr + 32, m2, c##i##2);                               \
      } }

/* one FC_MR x FC_NR tile: c = (acc ? c : bias) + a . b over kd steps; only rows < mrows and
 * columns < ncol of c are read or written (so c may be the final output, not a padded scratch) */
FC_CG_TARGET static void fc_cg_kernel(int kd, const float *restrict a, const float *restrict b,
                                      float *restrict c, ptrdiff_t ldc, int acc, int mrows, int ncol,
                                      const float *bias) {
    FC_ZERO(0) FC_ZERO(1) FC_ZERO(2) FC_ZERO(3) FC_ZERO(4) FC_ZERO(5) FC_ZERO(6) FC_ZERO(7)
    if (acc)  /* C is read at the end: fetch it now (backward-weight's dW tiles are out of L2) */
        for (int i = 0; i < FC_MR && i < mrows; i++) {
            __builtin_prefetch(c + (ptrdiff_t)i * ldc, 1, 3);
            __builtin_prefetch(c + (ptrdiff_t)i * ldc + 16, 1, 3);
            __builtin_prefetch(c + (ptrdiff_t)i * ldc + 32, 1, 3);
        }
    for (int k = 0; k < kd; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
        FC_ROW(0) FC_ROW(1) FC_ROW(2) FC_ROW(3) FC_ROW(4) FC_ROW(5) FC_ROW(6) FC_ROW(7)
        a += FC_MR;
        b += FC_NR;
    }
    int full = ncol >= FC_NR;
    __mmask16 m0 = ncol >= 16 ? 0xffff : (__mmask16)((1u << (ncol < 0 ? 0 : ncol)) - 1u);
    __mmask16 m1 = ncol >= 32 ? 0xffff : (ncol <= 16 ? 0 : (__mmask16)((1u << (ncol - 16)) - 1u));
    __mmask16 m2 = ncol >= 48 ? 0xffff : (ncol <= 32 ? 0 : (__mmask16)((1u << (ncol - 32)) - 1u));
    FC_STORE(0) FC_STORE(1) FC_STORE(2) FC_STORE(3) FC_STORE(4) FC_STORE(5) FC_STORE(6) FC_STORE(7)
}

/* C[m x n] (+)= A . B (+ bias per row when not acc) over whole tiles, in passes of kc steps of
 * depth (the A slice, mpan x 8 x kc, and each B slice, kc x 48, stay in L2/L1); A panel outer,
 * B inner.  Rows >= m and columns >= n of C are not touched. */
FC_CG_TARGET static void fc_cg_gemm(int m, int n, int kd, int kc, const float *ap, const float *bp,
                                    float *c, ptrdiff_t ldc, int acc, const float *bias) {
    int mpan = (m + FC_MR - 1) / FC_MR, npan = (n + FC_NR - 1) / FC_NR;
    if (kc <= 0) kc = kd;
    for (int k0 = 0; k0 < kd; k0 += kc) {
        int kn = kd - k0 < kc ? kd - k0 : kc;
        for (int i = 0; i < mpan; i++)
            for (int j = 0; j < npan; j++)
                fc_cg_kernel(kn, ap + ((ptrdiff_t)i * kd + k0) * FC_MR, bp + ((ptrdiff_t)j * kd + k0) * FC_NR,
                             c + (ptrdiff_t)i * FC_MR * ldc + (ptrdiff_t)j * FC_NR, ldc, acc || k0 > 0,
                             m - i * FC_MR, n - j * FC_NR, (acc || k0 > 0 || !bias) ? NULL : bias + i * FC_MR);
    }
}
#else
static int fc_cg_available(void) { return 0; }
static void fc_cg_gemm(int m, int n, int kd, int kc, const float *ap, const float *bp,
                       float *c, ptrdiff_t ldc, int acc, const float *bias) {
    (void)m; (void)n; (void)kd; (void)kc; (void)ap; (void)bp; (void)c; (void)ldc; (void)acc; (void)bias;
}
#endif

/* ---- packing (plain C, any ISA) ---- */

/* A panels from rows: ap[p][koff + k][i] = src[(p*FC_MR + i) * ld + k], k < len, rows >= m zero.
 * kdt: the panels' full depth.  (forward: src = w; backward-weight: src = dy of one image) */
static void fc_cg_pack_a_rows(const float *src, ptrdiff_t ld, int m, int koff, int len, int kdt, float *ap) {
    int mpan = (m + FC_MR - 1) / FC_MR;
    for (int p = 0; p < mpan; p++) {
        float *dst = ap + ((ptrdiff_t)p * kdt + koff) * FC_MR;
        for (int i = 0; i < FC_MR; i++) {
            int r = p * FC_MR + i;
            if (r < m) {
                const float *s = src + (ptrdiff_t)r * ld;
                for (int k = 0; k < len; k++) dst[(ptrdiff_t)k * FC_MR + i] = s[k];
            } else {
                for (int k = 0; k < len; k++) dst[(ptrdiff_t)k * FC_MR + i] = 0.0f;
            }
        }
    }
}

/* A panels from columns (transposed A): ap[p][k][i] = src[k * ld + p*FC_MR + i], columns >= m zero.
 * (backward-input: src = w (Kg x crs), A = w^T) */
static void fc_cg_pack_a_cols(const float *src, ptrdiff_t ld, int m, int kd, float *ap) {
    int mpan = (m + FC_MR - 1) / FC_MR;
    for (int p = 0; p < mpan; p++) {
        int w = m - p * FC_MR < FC_MR ? m - p * FC_MR : FC_MR;
        for (int k = 0; k < kd; k++) {
            float *dst = ap + ((ptrdiff_t)p * kd + k) * FC_MR;
            const float *s = src + (ptrdiff_t)k * ld + p * FC_MR;
            for (int i = 0; i < w; i++) dst[i] = s[i];
            for (int i = w; i < FC_MR; i++) dst[i] = 0.0f;
        }
    }
}

/* B row k, columns [col0, col0 + len): bp[(col0+j)/FC_NR][k][(col0+j)%FC_NR] = src[j]. */
static void fc_cg_pack_b_seg(const float *src, int col0, int len, int k, int kd, float *bp) {
    int j = 0;
    while (j < len) {
        int col = col0 + j, pan = col / FC_NR, off = col % FC_NR;
        int n = FC_NR - off < len - j ? FC_NR - off : len - j;
        memcpy(bp + ((ptrdiff_t)pan * kd + k) * FC_NR + off, src + j, (size_t)n * sizeof(float));
        j += n;
    }
}

/* zero B's padding columns [ncols, npan*FC_NR) in every row of the last panel */
static void fc_cg_zero_b_pad(int ncols, int kd, float *bp) {
    int off = ncols % FC_NR;
    if (off == 0) return;
    float *dst = bp + (ptrdiff_t)(ncols / FC_NR) * kd * FC_NR;
    for (int k = 0; k < kd; k++) memset(dst + (ptrdiff_t)k * FC_NR + off, 0, (size_t)(FC_NR - off) * sizeof(float));
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_CG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_CG_CLONES
#endif

/* columns [q0, q1) of one output row into d[0 .. q1-q0): srow[q*sw + iw0] where
 * qa <= q < qb (inside the image), 0 elsewhere; srow NULL: the row is padding. */
static inline void fc_cg_seg(float *restrict d, const float *restrict srow, int q0, int q1, int qa, int qb,
                             int sw, int iw0) {
    int lo = qa < q0 ? q0 : (qa > q1 ? q1 : qa), hi = qb > q1 ? q1 : (qb < lo ? lo : qb);
    if (srow == NULL) { lo = hi = q1; }
    ptrdiff_t nz = lo - q0, nc = hi - lo, ne = q1 - hi;
    for (ptrdiff_t i = 0; i < nz; i++) d[i] = 0.0f;
    d += nz;
    if (sw == 1) {
        const float *s = srow + iw0 + lo;
        for (ptrdiff_t i = 0; i < nc; i++) d[i] = s[i];
    } else {
        const float *s = srow + iw0 + (ptrdiff_t)lo * sw;
        for (ptrdiff_t i = 0; i < nc; i++) d[i] = s[i * sw];
    }
    d += nc;
    for (ptrdiff_t i = 0; i < ne; i++) d[i] = 0.0f;
}

/* One im2col row (input channel plane xc, H x W; tap offsets ih0 = r*dh - ph, iw0 = s*dw - pw;
 * output width Q, strides sh, sw) for the pixels [a, b) of one image, written to columns
 * col0.. of dst: packed B panels (column j at dst + (j/FC_NR)*pstride + j%FC_NR, pstride =
 * kd*FC_NR, dst already offset to row k) or, with pstride 0, a plain row (dst + j). */
FC_CG_CLONES static void fc_cg_im2col(const float *xc, int H, int W, int Q, int sh, int sw, int ih0, int iw0,
                                      int a, int b, float *dst, int col0, ptrdiff_t pstride) {
    /* output columns q with 0 <= q*sw + iw0 < W */
    int qa = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
    int qb = W - 1 - iw0 < 0 ? 0 : (W - 1 - iw0) / sw + 1;
    if (qb > Q) qb = Q;
    if (qa > qb) qa = qb;
    int p = a / Q, qs = a - p * Q, col = col0;
    while (a < b) {
        int qe = Q < qs + (b - a) ? Q : qs + (b - a);
        int ih = p * sh + ih0;
        const float *srow = (ih >= 0 && ih < H) ? xc + (ptrdiff_t)ih * W : NULL;
        if (pstride == 0) {
            fc_cg_seg(dst + col, srow, qs, qe, qa, qb, sw, iw0);
            col += qe - qs;
        } else {
            int q = qs;
            while (q < qe) {  /* split where the panel changes */
                int off = col % FC_NR, n = FC_NR - off < qe - q ? FC_NR - off : qe - q;
                fc_cg_seg(dst + (ptrdiff_t)(col / FC_NR) * pstride + off, srow, q, q + n, qa, qb, sw, iw0);
                q += n;
                col += n;
            }
        }
        a += qe - qs;
        qs = 0;
        p++;
    }
}

/* ---- stride-1 forward over the padded width (no im2col) ---- */
#if defined(__GNUC__) && !defined(__clang__)
#define FC_CG_NOMEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FC_CG_NOMEMCPY
#endif

/* One packed B panel (depth crs = C*R*S) from one image: row (c, r, s) is the 48 floats at
 * xn + c*plane + r*dh*Wp + s*dw + j0 (padded planes of width Wp; reads may run up to
 * 47 + (S-1)*dw floats past the image's last valid column: the caller pads the buffer). */
FC_CG_CLONES FC_CG_NOMEMCPY static void fc_cg_pack_shift(const float *xn, ptrdiff_t plane, int Wp, int C, int R,
                                                         int S, int dh, int dw, ptrdiff_t j0, float *bp) {
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            const float *src = xn + c * plane + (ptrdiff_t)r * dh * Wp + j0;
            for (int s = 0; s < S; s++, bp += FC_NR) {
                const float *sp = src + (ptrdiff_t)s * dw;
                for (int i = 0; i < FC_NR; i++) bp[i] = sp[i];
            }
        }
}

/* y rows of one image from GEMM columns over the padded width: cs[k][j - a] for j in [a, b),
 * keeping q = j % Wp < Q, to y[k][p*Q + q] (+ bias[k]); y: K planes pq floats apart. */
FC_CG_CLONES FC_CG_NOMEMCPY static void fc_cg_unshift(const float *cs, ptrdiff_t ldc, int K, const float *bias,
                                                      ptrdiff_t a, ptrdiff_t b, int Wp, int Q, float *y, ptrdiff_t pq) {
    for (int k = 0; k < K; k++) {
        const float *cr = cs + k * ldc;
        float *yr = y + k * pq;
        float bv = bias ? bias[k] : 0.0f;
        ptrdiff_t j = a;
        while (j < b) {
            ptrdiff_t p = j / Wp, q = j - p * Wp, je = p * Wp + Wp < b ? p * Wp + Wp : b;
            ptrdiff_t n = (Q - q < je - j ? Q - q : je - j);
            const float *sp = cr + (j - a);
            float *d = yr + p * Q + q;
            for (ptrdiff_t i = 0; i < n; i++) d[i] = sp[i] + bv;
            j = je;
        }
    }
}

/* backward-input over the padded width: B panel rows k = 48 floats of dY row k (ld apart) */
FC_CG_CLONES FC_CG_NOMEMCPY static void fc_cg_pack_rows48(const float *src, ptrdiff_t ld, int K, float *bp) {
    for (int k = 0; k < K; k++, bp += FC_NR) {
        const float *s = src + k * ld;
        for (int i = 0; i < FC_NR; i++) bp[i] = s[i];
    }
}

/* col2im over the padded width: dx plane c (cstride floats apart) at r*dh*Wp + s*dw + j0
 * += 48 columns of dcol row (c, r, s) (cs rows ldc apart). */
FC_CG_CLONES static void fc_cg_col2im_shift(const float *cs, ptrdiff_t ldc, int C, int R, int S, int dh, int dw,
                                            int Wp, ptrdiff_t cstride, ptrdiff_t j0, float *dxn) {
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            float *dst = dxn + c * cstride + (ptrdiff_t)r * dh * Wp + j0;
            for (int s = 0; s < S; s++, cs += ldc) {
                float *d = dst + (ptrdiff_t)s * dw;
                for (int i = 0; i < FC_NR; i++) d[i] += cs[i];
            }
        }
}

/* ---- im2col from a zero-padded input through a per-chunk table of row segments ---- */
typedef struct { ptrdiff_t src; ptrdiff_t dst; ptrdiff_t len; } fc_cg_segment;

/* Segments of the global columns [c0, c1) (over N images of P x Q outputs): source offset in the
 * padded input (image n at n*imgstride, row p*sh of width Wp, column q*sw), destination (packed
 * column layout when pstride > 0: panel j/48 at pstride apart, else plain j), length.  Returns
 * the count (at most c1 - c0 + 2 * (c1 - c0) / 48 + 2). */
static int fc_cg_segments(ptrdiff_t c0, ptrdiff_t c1, int P, int Q, int Wp, ptrdiff_t imgstride, int sh, int sw,
                          ptrdiff_t pstride, fc_cg_segment *out) {
    ptrdiff_t pq = (ptrdiff_t)P * Q, col = 0;
    int ns = 0;
    while (c0 < c1) {
        ptrdiff_t n = c0 / pq, a = c0 - n * pq, p = a / Q, q = a - p * Q;
        ptrdiff_t len = Q - q < c1 - c0 ? Q - q : c1 - c0;
        ptrdiff_t src = n * imgstride + p * sh * (ptrdiff_t)Wp + q * sw;
        while (len > 0) {
            ptrdiff_t l = len, dst = col;
            if (pstride) {
                ptrdiff_t off = col % FC_NR;
                if (FC_NR - off < l) l = FC_NR - off;
                dst = (col / FC_NR) * pstride + off;
            }
            out[ns].src = src; out[ns].dst = dst; out[ns].len = l; ns++;
            src += l * sw; col += l; c0 += l; len -= l;
        }
    }
    return ns;
}

/* one im2col row: dst[seg.dst + i] = base[seg.src + i*sw] (base: padded plane c + r*dh*Wp + s*dw).
 * Stride 2 on AVX-512: two loads and one permute per 16 outputs (GCC's own loop for d[k] =
 * s[2k] left the stem's im2col at ~60 % of its GEMM time). */
#if defined(FC_CG_TARGET)
FC_CG_TARGET FC_CG_NOMEMCPY
#else
FC_CG_CLONES FC_CG_NOMEMCPY
#endif
static void fc_cg_im2col_tab(const float *base, const fc_cg_segment *sg, int ns, int sw, float *dst) {
    if (sw == 1) {
        for (int i = 0; i < ns; i++) {
            const float *s = base + sg[i].src;
            float *d = dst + sg[i].dst;
            for (ptrdiff_t k = 0; k < sg[i].len; k++) d[k] = s[k];
        }
        return;
    }
#if defined(FC_CG_TARGET)
    if (sw == 2) {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        for (int i = 0; i < ns; i++) {
            const float *s = base + sg[i].src;
            float *d = dst + sg[i].dst;
            ptrdiff_t k = 0, len = sg[i].len;
            for (; k + 16 <= len; k += 16) {  /* reads s[2k .. 2k+30] only (second load masked) */
                __m512 lo = _mm512_loadu_ps(s + 2 * k), hi = _mm512_maskz_loadu_ps(0x7fff, s + 2 * k + 16);
                _mm512_storeu_ps(d + k, _mm512_permutex2var_ps(lo, even, hi));
            }
            if (k < len) {  /* tail: masked loads of s[2k .. 2len-2], masked store */
                int r2 = 2 * (int)(len - k) - 1;
                __mmask16 ml = (__mmask16)(r2 >= 16 ? 0xffff : (1u << r2) - 1u);
                __mmask16 mh = (__mmask16)(r2 <= 16 ? 0 : (1u << (r2 - 16)) - 1u);
                __m512 lo = _mm512_maskz_loadu_ps(ml, s + 2 * k), hi = _mm512_maskz_loadu_ps(mh, s + 2 * k + 16);
                _mm512_mask_storeu_ps(d + k, (__mmask16)((1u << (len - k)) - 1u), _mm512_permutex2var_ps(lo, even, hi));
            }
        }
        return;
    }
#endif
    for (int i = 0; i < ns; i++) {
        const float *s = base + sg[i].src;
        float *d = dst + sg[i].dst;
        for (ptrdiff_t k = 0; k < sg[i].len; k++) d[k] = s[k * sw];
    }
}

/* col2im of one dcol row through a segment table: base[seg.src + i*sw] += row[seg.dst + i]
 * (base: padded dx plane c + r*dh*Wp + s*dw); stride 2 on AVX-512 spreads 16 values over the
 * even lanes of two vectors (the scalar d[2k] += s[k] cost strided_3x3's dx ~30 %). */
#if defined(FC_CG_TARGET)
FC_CG_TARGET
#else
FC_CG_CLONES
#endif
static void fc_cg_col2im_tab(float *base, const fc_cg_segment *sg, int ns, int sw, const float *row) {
    for (int i = 0; i < ns; i++) {
        float *d = base + sg[i].src;
        const float *s = row + sg[i].dst;
        ptrdiff_t k = 0, len = sg[i].len;
        if (sw == 1) {
            for (; k < len; k++) d[k] += s[k];
            continue;
        }
#if defined(FC_CG_TARGET)
        if (sw == 2) {
            const __m512i lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
            const __m512i hi = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
            for (; k + 16 <= len; k += 16) {  /* touches d[2k .. 2k+30] only */
                __m512 v = _mm512_loadu_ps(s + k);
                __m512 a = _mm512_maskz_permutexvar_ps(0x5555, lo, v), b = _mm512_maskz_permutexvar_ps(0x5555, hi, v);
                _mm512_storeu_ps(d + 2 * k, _mm512_add_ps(_mm512_loadu_ps(d + 2 * k), a));
                _mm512_mask_storeu_ps(d + 2 * k + 16, 0x7fff,
                                      _mm512_add_ps(_mm512_maskz_loadu_ps(0x7fff, d + 2 * k + 16), b));
            }
            if (k < len) {  /* tail: touches d[2k .. 2len-2] only */
                int r2 = 2 * (int)(len - k) - 1;
                __mmask16 ml = (__mmask16)(r2 >= 16 ? 0xffff : (1u << r2) - 1u);
                __mmask16 mh = (__mmask16)(r2 <= 16 ? 0 : (1u << (r2 - 16)) - 1u);
                __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << (len - k)) - 1u), s + k);
                __m512 a = _mm512_maskz_permutexvar_ps(0x5555, lo, v), b = _mm512_maskz_permutexvar_ps(0x5555, hi, v);
                _mm512_mask_storeu_ps(d + 2 * k, ml, _mm512_add_ps(_mm512_maskz_loadu_ps(ml, d + 2 * k), a));
                _mm512_mask_storeu_ps(d + 2 * k + 16, mh, _mm512_add_ps(_mm512_maskz_loadu_ps(mh, d + 2 * k + 16), b));
                k = len;
            }
        }
#endif
        for (; k < len; k++) d[k * sw] += s[k];
    }
}
#endif /* FC_CONV_GEMM_H */
