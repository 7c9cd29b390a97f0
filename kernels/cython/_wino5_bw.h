/* Winograd F(2x2, 5x5) backward-weight helpers for _conv_winograd5.pyx (transforms and the
 * accumulating component GEMM), on top of _wino5_impl.h (points 0, +-1, +-2, inf; B^T, G, A^T
 * in its header comment).  Forward per tile: Y = A^T [(G g G^T) . (B^T d B)] A, so
 *   dU_xi[k][c] = sum over tiles dM_xi[k, t] V_xi[t, c],  dM = A dY A^T (6x6 from the 2x2 dY),
 *   dw[k][c] = G^T dU[:, k, c] G (6x6 -> 5x5).
 * Layouts: dM_xi[k * nb + t] (tiles contiguous, like the forward's V), X_xi[t * C + c] (channels
 * contiguous: the input transform's tiles stored transposed), dU_xi[k * C + c].
 */
#include "_wino5_impl.h"

#define FC5B_DEFS(T, SFX, VT, VW)                                                                \
/* v[xi * cs + j * ld] = (B^T d B)[xi] for the first nc of FCW_NJ side-by-side tiles (fc5_in's    \
   input, stored tile-major: component rows of X are channel-contiguous). */                     \
FCW_CLONES static void fc5_in_t_##SFX(const T *restrict r0, ptrdiff_t W, T *restrict v,         \
                                      ptrdiff_t cs, ptrdiff_t ld, ptrdiff_t nc) {               \
    T buf[36 * FCW_NJ];                                                                          \
    fc5_in_##SFX(r0, W, buf, FCW_NJ, FCW_NJ);                                                    \
    for (ptrdiff_t xi = 0; xi < 36; xi++)                                                        \
        for (ptrdiff_t j = 0; j < nc; j++) v[xi * cs + j * ld] = buf[xi * FCW_NJ + j];           \
}                                                                                                \
                                                                                                 \
/* d[xi * ks + j] = (A dY A^T)[xi] for FCW_NJ 2x2 dy tiles at columns 2j of rows y0 and y1 (reads \
   2 FCW_NJ columns of each), columns >= rq taken as 0 (tiles past the edge; slots past the run   \
   are don't-cares); all FCW_NJ slots stored (the caller leaves room).  A rows (1,0) (1,1) (1,-1) \
   (1,2) (1,-2) (0,1).  Compile-time trip counts, so every loop is vectorised. */                \
FCW_CLONES static void fc5_dy_##SFX(const T *restrict y0, const T *restrict y1, int rq,         \
                                    T *restrict d, ptrdiff_t ks) {                               \
    T e[2][FCW_NJ], o[2][FCW_NJ];                                                                \
    const ptrdiff_t nj = FCW_NJ;                                                                 \
    for (ptrdiff_t j = 0; j < nj; j++) {  /* even / odd columns (a stride-2 load pair) */        \
        e[0][j] = y0[2 * j]; o[0][j] = y0[2 * j + 1];                                            \
        e[1][j] = y1[2 * j]; o[1][j] = y1[2 * j + 1];                                            \
    }                                                                                            \
    if (rq < 2 * FCW_NJ) {  /* selects, not products: a NaN past the edge must not leak */       \
        const T r = (T)rq;                                                                       \
        for (ptrdiff_t j = 0; j < nj; j++) {                                                     \
            T c = (T)(2 * j);                                                                    \
            e[0][j] = c < r ? e[0][j] : 0; e[1][j] = c < r ? e[1][j] : 0;                        \
            o[0][j] = c + 1 < r ? o[0][j] : 0; o[1][j] = c + 1 < r ? o[1][j] : 0;                \
        }                                                                                        \
    }                                                                                            \
    T S[6][2][FCW_NJ];                                                                           \
    for (ptrdiff_t c = 0; c < 2; c++) {  /* S = A dY (6 x 2), column c */                        \
        const T *p0 = c ? o[0] : e[0], *p1 = c ? o[1] : e[1];                                    \
        for (ptrdiff_t j = 0; j < nj; j++) {                                                     \
            T a = p0[j], b = p1[j];                                                              \
            S[0][c][j] = a;                                                                      \
            S[1][c][j] = a + b;                                                                  \
            S[2][c][j] = a - b;                                                                  \
            S[3][c][j] = a + 2 * b;                                                              \
            S[4][c][j] = a - 2 * b;                                                              \
            S[5][c][j] = b;                                                                      \
        }                                                                                        \
    }                                                                                            \
    for (ptrdiff_t r = 0; r < 6; r++) {  /* dM = S A^T (6 x 6), row r */                         \
        T *restrict dr = d + (6 * r) * ks;                                                       \
        T h[6][FCW_NJ];                                                                          \
        for (ptrdiff_t j = 0; j < nj; j++) {                                                     \
            T a = S[r][0][j], b = S[r][1][j];                                                    \
            h[0][j] = a;                                                                         \
            h[1][j] = a + b;                                                                     \
            h[2][j] = a - b;                                                                     \
            h[3][j] = a + 2 * b;                                                                 \
            h[4][j] = a - 2 * b;                                                                 \
            h[5][j] = b;                                                                         \
        }                                                                                        \
        for (ptrdiff_t b = 0; b < 6; b++) __builtin_memcpy(dr + b * ks, h[b], sizeof(h[0]));     \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* dw[kc] = G^T dU[:, kc] G for n_all filters (36 components KC apart -> 25 taps). */            \
FCW_CLONES static void fc5_fgrad_##SFX(const T *restrict dU, T *restrict dw, ptrdiff_t n_all,   \
                                       ptrdiff_t KC) {                                           \
    T r[30][FCW_CH], o[25][FCW_CH];                                                              \
    const T c3 = (T)1 / 3, c4 = (T)0.25, c6 = (T)1 / 6, c12 = (T)1 / 12, c24 = (T)1 / 24;       \
    const T c23 = (T)2 / 3;                                                                      \
    for (ptrdiff_t k0 = 0; k0 < n_all; k0 += FCW_CH) {                                           \
        int m = n_all - k0 < FCW_CH ? (int)(n_all - k0) : FCW_CH;                                \
        const T *u = dU + k0;                                                                    \
        for (int b = 0; b < 6; b++)  /* R = G^T dU (5 x 6), column b */                          \
            for (int i = 0; i < m; i++) {                                                        \
                T u0 = u[b * KC + i], u1 = u[(6 + b) * KC + i], u2 = u[(12 + b) * KC + i];       \
                T u3 = u[(18 + b) * KC + i], u4 = u[(24 + b) * KC + i];                          \
                T u5 = u[(30 + b) * KC + i];                                                     \
                T s = u1 + u2, dd = u2 - u1, s2 = u3 + u4, d2 = u3 - u4;                         \
                r[b][i] = u0 * c4 - s * c6 + s2 * c24;                                           \
                r[6 + b][i] = dd * c6 + d2 * c12;                                                \
                r[12 + b][i] = (s2 - s) * c6;                                                    \
                r[18 + b][i] = dd * c6 + d2 * c3;                                                \
                r[24 + b][i] = s2 * c23 - s * c6 + u5;                                           \
            }                                                                                    \
        for (int a = 0; a < 5; a++)  /* dw = R G (5 x 5), row a */                               \
            for (int i = 0; i < m; i++) {                                                        \
                T u0 = r[6 * a][i], u1 = r[6 * a + 1][i], u2 = r[6 * a + 2][i];                  \
                T u3 = r[6 * a + 3][i], u4 = r[6 * a + 4][i], u5 = r[6 * a + 5][i];              \
                T s = u1 + u2, dd = u2 - u1, s2 = u3 + u4, d2 = u3 - u4;                         \
                o[5 * a][i] = u0 * c4 - s * c6 + s2 * c24;                                       \
                o[5 * a + 1][i] = dd * c6 + d2 * c12;                                            \
                o[5 * a + 2][i] = (s2 - s) * c6;                                                 \
                o[5 * a + 3][i] = dd * c6 + d2 * c3;                                             \
                o[5 * a + 4][i] = s2 * c23 - s * c6 + u5;                                        \
            }                                                                                    \
        for (int i = 0; i < m; i++)                                                              \
            for (int j = 0; j < 25; j++) dw[(k0 + i) * 25 + j] = o[j][i];                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* For xi < na: dU_xi (K x C) += D_xi (K x nb) . X_xi (nb x C), all row-major (D_xi at           \
   D + xi * ds, X_xi at X + xi * xs, dU_xi at U + xi * us).  fcw_bgemm's register block (4 rows  \
   x 2 vectors, D broadcast, X rows streamed, tiles innermost); acc 0: dU = instead of +=. */    \
FCW_CLONES static void fc5_bwgemm_##SFX(int na, int K, int C, int nb, const T *restrict D,      \
                                        ptrdiff_t ds, const T *restrict X, ptrdiff_t xs,        \
                                        T *restrict U, ptrdiff_t us, int acc) {                 \
    int cv = C - C % (2 * VW), cv1 = C - C % VW;                                                 \
    int K4 = K - K % 4;                                                                          \
    for (int xi = 0; xi < na; xi++) {                                                            \
        const T *d = D + xi * ds, *x = X + xi * xs;                                              \
        T *u = U + xi * us;                                                                      \
        for (int k = 0; k < K4; k += 4) {                                                        \
            const T *d0 = d + (ptrdiff_t)k * nb, *d1 = d0 + nb, *d2 = d1 + nb, *d3 = d2 + nb;    \
            T *m0 = u + (ptrdiff_t)k * C, *m1 = m0 + C, *m2 = m1 + C, *m3 = m2 + C;              \
            for (int i = 0; i < cv; i += 2 * VW) {                                               \
                VT a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0};                                   \
                VT a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};                                   \
                if (acc) {                                                                       \
                    a00 = *(VT *)(m0 + i); a01 = *(VT *)(m0 + i + VW);                           \
                    a10 = *(VT *)(m1 + i); a11 = *(VT *)(m1 + i + VW);                           \
                    a20 = *(VT *)(m2 + i); a21 = *(VT *)(m2 + i + VW);                           \
                    a30 = *(VT *)(m3 + i); a31 = *(VT *)(m3 + i + VW);                           \
                }                                                                                \
                const T *vp = x + i;                                                             \
                for (int t = 0; t < nb; t++, vp += C) {                                          \
                    VT v0 = *(const VT *)vp, v1 = *(const VT *)(vp + VW);                        \
                    VT b;                                                                        \
                    b = (VT){0} + d0[t]; a00 += b * v0; a01 += b * v1;                           \
                    b = (VT){0} + d1[t]; a10 += b * v0; a11 += b * v1;                           \
                    b = (VT){0} + d2[t]; a20 += b * v0; a21 += b * v1;                           \
                    b = (VT){0} + d3[t]; a30 += b * v0; a31 += b * v1;                           \
                }                                                                                \
                *(VT *)(m0 + i) = a00; *(VT *)(m0 + i + VW) = a01;                               \
                *(VT *)(m1 + i) = a10; *(VT *)(m1 + i + VW) = a11;                               \
                *(VT *)(m2 + i) = a20; *(VT *)(m2 + i + VW) = a21;                               \
                *(VT *)(m3 + i) = a30; *(VT *)(m3 + i + VW) = a31;                               \
            }                                                                                    \
            if (cv1 > cv) {  /* one more vector of channels */                                   \
                VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                       \
                if (acc) {                                                                       \
                    a0 = *(VT *)(m0 + cv); a1 = *(VT *)(m1 + cv);                                \
                    a2 = *(VT *)(m2 + cv); a3 = *(VT *)(m3 + cv);                                \
                }                                                                                \
                const T *vp = x + cv;                                                            \
                for (int t = 0; t < nb; t++, vp += C) {                                          \
                    VT v0 = *(const VT *)vp;                                                     \
                    a0 += ((VT){0} + d0[t]) * v0;                                                \
                    a1 += ((VT){0} + d1[t]) * v0;                                                \
                    a2 += ((VT){0} + d2[t]) * v0;                                                \
                    a3 += ((VT){0} + d3[t]) * v0;                                                \
                }                                                                                \
                *(VT *)(m0 + cv) = a0; *(VT *)(m1 + cv) = a1;                                    \
                *(VT *)(m2 + cv) = a2; *(VT *)(m3 + cv) = a3;                                    \
            }                                                                                    \
        }                                                                                        \
        for (int k = 0; k < K; k++) {  /* tails: channels past cv1, rows past K4 */              \
            int i0 = k < K4 ? cv1 : 0;                                                           \
            if (i0 >= C) continue;                                                               \
            T *mr = u + (ptrdiff_t)k * C;                                                        \
            const T *dr = d + (ptrdiff_t)k * nb;                                                 \
            if (!acc)                                                                            \
                for (int i = i0; i < C; i++) mr[i] = 0;                                          \
            for (int t = 0; t < nb; t++) {                                                       \
                T dt = dr[t];                                                                    \
                const T *xr = x + (ptrdiff_t)t * C;                                              \
                for (int i = i0; i < C; i++) mr[i] += dt * xr[i];                                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}

FC5B_DEFS(float, f32, fcw_v16f, 16)
FC5B_DEFS(double, f64, fcw_v8d, 8)
