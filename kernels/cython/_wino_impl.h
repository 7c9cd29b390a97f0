/* Winograd transforms for _conv_winograd.pyx, vectorised over runs of filters or side-by-side tiles.
 *
 * Each loop runs over a contiguous index (filters, or tiles j of a run) with restrict pointers and
 * local buffers, so gcc vectorises it; FCW_CLONES compiles every function for AVX-512, AVX2 and
 * baseline x86-64 and picks one at load time (portable build, no -march=native).  The clones
 * compute the same sums in the same order (no FMA contraction is assumed by the tests' tolerances).
 *
 * Layouts (as in the .pyx): component xi of tile/filter i lives at base[xi * stride + i].
 */
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FCW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FCW_CLONES
#endif

#define FCW_NJ 16  /* tiles per run (the .pyx's NJ) */
#define FCW_CH 64  /* filters per chunk */

#define FCW_DEFS(T, SFX)                                                                         \
/* U[xi * KC + kc] = (G g G^T)[xi], F(2x2, 3x3): 4x4 components of filters kc = s0 .. s0+n_all-1  \
   (U points at filter s0's); g = w[kc], or with fk != 0 the filters of the transposed conv     \
   (backward-input): g = w[kc % fk, kc / fk] reversed in both taps (w of fk x fc filters). */  \
FCW_CLONES static void fcw_filters2_##SFX(const T *restrict w, T *restrict U, ptrdiff_t s0,     \
                                          ptrdiff_t n_all, ptrdiff_t KC, ptrdiff_t fk,          \
                                          ptrdiff_t fc) {                                       \
    T g[9][FCW_CH], t[12][FCW_CH];                                                              \
    for (ptrdiff_t k0 = 0; k0 < n_all; k0 += FCW_CH) {                                           \
        int n = n_all - k0 < FCW_CH ? (int)(n_all - k0) : FCW_CH;                                \
        for (int i = 0; i < n; i++) {                                                            \
            if (fk) {  /* filter s0 + k0 + i of the flipped, transposed set: (q % fk, q / fk) */  \
                ptrdiff_t q = s0 + k0 + i, src = ((q % fk) * fc + q / fk) * 9;                   \
                for (int j = 0; j < 9; j++) g[j][i] = w[src + 8 - j];                            \
            } else {                                                                             \
                for (int j = 0; j < 9; j++) g[j][i] = w[(s0 + k0 + i) * 9 + j];                  \
            }                                                                                    \
        }                                                                                        \
        for (int j = 0; j < 3; j++)                                                              \
            for (int i = 0; i < n; i++) {                                                        \
                T a0 = g[j][i], a1 = g[3 + j][i], a2 = g[6 + j][i];                              \
                t[j][i] = a0;                                                                    \
                t[3 + j][i] = (a0 + a1 + a2) * (T)0.5;                                           \
                t[6 + j][i] = (a0 - a1 + a2) * (T)0.5;                                           \
                t[9 + j][i] = a2;                                                                \
            }                                                                                    \
        for (int r = 0; r < 4; r++) {                                                            \
            T *restrict u = U + (ptrdiff_t)(4 * r) * KC + k0;                                    \
            for (int i = 0; i < n; i++) {                                                        \
                T a0 = t[3 * r][i], a1 = t[3 * r + 1][i], a2 = t[3 * r + 2][i];                  \
                u[i] = a0;                                                                       \
                u[KC + i] = (a0 + a1 + a2) * (T)0.5;                                             \
                u[2 * KC + i] = (a0 - a1 + a2) * (T)0.5;                                         \
                u[3 * KC + i] = a2;                                                              \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* One row of G t G^T's second pass: u_b[i] = (row of 3 taps a0, a1, a2 at i) . G[b], i < n. */    \
FCW_CLONES static inline void fcw_f4row_##SFX(const T *restrict a0p, const T *restrict a1p,    \
        const T *restrict a2p, T *restrict u0, T *restrict u1, T *restrict u2, T *restrict u3,    \
        T *restrict u4, T *restrict u5, int n) {                                                  \
    const T c4 = (T)0.25, c6 = (T)1 / 6, c12 = (T)1 / 12, c24 = (T)1 / 24;                      \
    for (int i = 0; i < n; i++) {                                                                \
        T a0 = a0p[i], a1 = a1p[i], a2 = a2p[i];                                                 \
        u0[i] = a0 * c4;                                                                         \
        u1[i] = -(a0 + a1 + a2) * c6;                                                            \
        u2[i] = -(a0 - a1 + a2) * c6;                                                            \
        u3[i] = a0 * c24 + a1 * c12 + a2 * c6;                                                   \
        u4[i] = a0 * c24 - a1 * c12 + a2 * c6;                                                   \
        u5[i] = a2;                                                                              \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(4x4, 3x3): 6x6 components, G rows (1/4,0,0) (-1/6,-1/6,-1/6) (-1/6,1/6,-1/6)              \
   (1/24,1/12,1/6) (1/24,-1/12,1/6) (0,0,1). */                                                  \
FCW_CLONES static void fcw_filters4_##SFX(const T *restrict w, T *restrict U, ptrdiff_t s0,     \
                                          ptrdiff_t n_all, ptrdiff_t KC, ptrdiff_t fk,          \
                                          ptrdiff_t fc) {                                       \
    /* Stages on local arrays with constant strides, the last through fcw_f4row's separate   \
       restrict pointers: gcc vectorises every loop (stores to U at runtime offsets from one   \
       pointer kept the old version scalar). */                                               \
    T g[9][FCW_CH], t[18][FCW_CH];                                                \
    const T c4 = (T)0.25, c6 = (T)1 / 6, c12 = (T)1 / 12, c24 = (T)1 / 24;                      \
    for (ptrdiff_t k0 = 0; k0 < n_all; k0 += FCW_CH) {                                           \
        int n = n_all - k0 < FCW_CH ? (int)(n_all - k0) : FCW_CH;                                \
        if (fk) {  /* filter q = s0 + k0 + i of the flipped, transposed set: (q % fk, q / fk) */  \
            for (int i = 0; i < n; i++) {                                                        \
                ptrdiff_t q = s0 + k0 + i, src = ((q % fk) * fc + q / fk) * 9;                   \
                for (int j = 0; j < 9; j++) g[j][i] = w[src + 8 - j];                            \
            }                                                                                    \
        } else {                                                                                 \
            const T *ws = w + (s0 + k0) * 9;                                                     \
            for (int j = 0; j < 9; j++)                                                          \
                for (int i = 0; i < n; i++) g[j][i] = ws[9 * i + j];                             \
        }                                                                                        \
        for (int j = 0; j < 3; j++)                                                              \
            for (int i = 0; i < FCW_CH; i++) {                                                   \
                T a0 = g[j][i], a1 = g[3 + j][i], a2 = g[6 + j][i];                              \
                t[j][i] = a0 * c4;                                                               \
                t[3 + j][i] = -(a0 + a1 + a2) * c6;                                              \
                t[6 + j][i] = -(a0 - a1 + a2) * c6;                                              \
                t[9 + j][i] = a0 * c24 + a1 * c12 + a2 * c6;                                     \
                t[12 + j][i] = a0 * c24 - a1 * c12 + a2 * c6;                                    \
                t[15 + j][i] = a2;                                                               \
            }                                                                                    \
        for (int r = 0; r < 6; r++) {                                                            \
            T *u = U + (ptrdiff_t)(6 * r) * KC + k0;                                             \
            fcw_f4row_##SFX(t[3 * r], t[3 * r + 1], t[3 * r + 2], u, u + KC, u + 2 * KC,         \
                            u + 3 * KC, u + 4 * KC, u + 5 * KC, n);                              \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(4x4) input transform of nj (<= FCW_NJ) side-by-side interior 6x6 tiles with origins         \
   r0 + 4j (rows W apart): v[xi * cs + j] = (B^T d B)[xi].  Vertical pass over the 4nj+2          \
   contiguous columns first, then the horizontal pass per tile. */                               \
FCW_CLONES static void fcw_in4_##SFX(const T *restrict r0, ptrdiff_t W, T *restrict v,          \
                                     ptrdiff_t cs, int nj) {                                     \
    T E[6][4 * FCW_NJ + 4];                                                                      \
    int ncol = 4 * nj + 2;                                                                       \
    const T *r1 = r0 + W, *r2 = r1 + W, *r3 = r2 + W, *r4 = r3 + W, *r5 = r4 + W;                \
    for (int q = 0; q < ncol; q++) {                                                             \
        T d0 = r0[q], d1 = r1[q], d2 = r2[q], d3 = r3[q], d4 = r4[q], d5 = r5[q];                \
        E[0][q] = 4 * d0 - 5 * d2 + d4;                                                          \
        E[1][q] = -4 * (d1 + d2) + d3 + d4;                                                      \
        E[2][q] = 4 * (d1 - d2) - d3 + d4;                                                       \
        E[3][q] = 2 * (d3 - d1) - d2 + d4;                                                       \
        E[4][q] = 2 * (d1 - d3) - d2 + d4;                                                       \
        E[5][q] = 4 * d1 - 5 * d3 + d5;                                                          \
    }                                                                                            \
    for (int a = 0; a < 6; a++) {                                                                \
        const T *e = E[a];                                                                       \
        T *restrict va = v + (ptrdiff_t)(6 * a) * cs;                                            \
        for (int j = 0; j < nj; j++) {                                                           \
            T d0 = e[4 * j], d1 = e[4 * j + 1], d2 = e[4 * j + 2], d3 = e[4 * j + 3];            \
            T d4 = e[4 * j + 4], d5 = e[4 * j + 5];                                              \
            va[j] = 4 * d0 - 5 * d2 + d4;                                                        \
            va[cs + j] = -4 * (d1 + d2) + d3 + d4;                                               \
            va[2 * cs + j] = 4 * (d1 - d2) - d3 + d4;                                            \
            va[3 * cs + j] = 2 * (d3 - d1) - d2 + d4;                                            \
            va[4 * cs + j] = 2 * (d1 - d3) - d2 + d4;                                            \
            va[5 * cs + j] = 4 * d1 - 5 * d3 + d5;                                               \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(4x4) output transform of nj whole 4x4 tiles side by side: y rows Q apart, + bv. */          \
FCW_CLONES static void fcw_out4_##SFX(const T *restrict mp, ptrdiff_t ks, T *restrict y0,       \
                                      ptrdiff_t Q, int nj, T bv) {                               \
    T S[4][6][FCW_NJ];                                                                           \
    for (int b = 0; b < 6; b++) {                                                                \
        const T *m = mp + (ptrdiff_t)b * ks;                                                     \
        for (int j = 0; j < nj; j++) {                                                           \
            T m0 = m[j], m1 = m[6 * ks + j], m2 = m[12 * ks + j], m3 = m[18 * ks + j];           \
            T m4 = m[24 * ks + j], m5 = m[30 * ks + j];                                          \
            S[0][b][j] = m0 + m1 + m2 + m3 + m4;                                                 \
            S[1][b][j] = m1 - m2 + 2 * (m3 - m4);                                                \
            S[2][b][j] = m1 + m2 + 4 * (m3 + m4);                                                \
            S[3][b][j] = m1 - m2 + 8 * (m3 - m4) + m5;                                           \
        }                                                                                        \
    }                                                                                            \
    for (int a = 0; a < 4; a++) {                                                                \
        T *restrict yr = y0 + a * Q;                                                             \
        for (int j = 0; j < nj; j++) {                                                           \
            T m0 = S[a][0][j], m1 = S[a][1][j], m2 = S[a][2][j], m3 = S[a][3][j];                \
            T m4 = S[a][4][j], m5 = S[a][5][j];                                                  \
            yr[4 * j] = m0 + m1 + m2 + m3 + m4 + bv;                                             \
            yr[4 * j + 1] = m1 - m2 + 2 * (m3 - m4) + bv;                                        \
            yr[4 * j + 2] = m1 + m2 + 4 * (m3 + m4) + bv;                                        \
            yr[4 * j + 3] = m1 - m2 + 8 * (m3 - m4) + m5 + bv;                                   \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(2x2) input transform of nj interior 4x4 tiles with origins r0 + 2j. */                      \
FCW_CLONES static void fcw_in2_##SFX(const T *restrict r0, ptrdiff_t W, T *restrict v,          \
                                     ptrdiff_t cs, int nj) {                                     \
    T E[4][2 * FCW_NJ + 4];                                                                      \
    int ncol = 2 * nj + 2;                                                                       \
    const T *r1 = r0 + W, *r2 = r1 + W, *r3 = r2 + W;                                            \
    for (int q = 0; q < ncol; q++) {                                                             \
        T d0 = r0[q], d1 = r1[q], d2 = r2[q], d3 = r3[q];                                        \
        E[0][q] = d0 - d2;                                                                       \
        E[1][q] = d1 + d2;                                                                       \
        E[2][q] = d2 - d1;                                                                       \
        E[3][q] = d1 - d3;                                                                       \
    }                                                                                            \
    for (int a = 0; a < 4; a++) {                                                                \
        const T *e = E[a];                                                                       \
        T *restrict va = v + (ptrdiff_t)(4 * a) * cs;                                            \
        for (int j = 0; j < nj; j++) {                                                           \
            T d0 = e[2 * j], d1 = e[2 * j + 1], d2 = e[2 * j + 2], d3 = e[2 * j + 3];            \
            va[j] = d0 - d2;                                                                     \
            va[cs + j] = d1 + d2;                                                                \
            va[2 * cs + j] = d2 - d1;                                                            \
            va[3 * cs + j] = d1 - d3;                                                            \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(2x2) output transform of nj whole 2x2 tiles side by side. */                                \
FCW_CLONES static void fcw_out2_##SFX(const T *restrict mp, ptrdiff_t ks, T *restrict y0,       \
                                      ptrdiff_t Q, int nj, T bv) {                               \
    T *restrict y1 = y0 + Q;                                                                     \
    for (int j = 0; j < nj; j++) {                                                               \
        T s0 = mp[j] + mp[4 * ks + j] + mp[8 * ks + j];                                          \
        T s1 = mp[ks + j] + mp[5 * ks + j] + mp[9 * ks + j];                                     \
        T s2 = mp[2 * ks + j] + mp[6 * ks + j] + mp[10 * ks + j];                                \
        T s3 = mp[3 * ks + j] + mp[7 * ks + j] + mp[11 * ks + j];                                \
        T t0 = mp[4 * ks + j] - mp[8 * ks + j] - mp[12 * ks + j];                                \
        T t1 = mp[5 * ks + j] - mp[9 * ks + j] - mp[13 * ks + j];                                \
        T t2 = mp[6 * ks + j] - mp[10 * ks + j] - mp[14 * ks + j];                               \
        T t3 = mp[7 * ks + j] - mp[11 * ks + j] - mp[15 * ks + j];                               \
        y0[2 * j] = s0 + s1 + s2 + bv;                                                           \
        y0[2 * j + 1] = s1 - s2 - s3 + bv;                                                       \
        y1[2 * j] = t0 + t1 + t2 + bv;                                                           \
        y1[2 * j + 1] = t1 - t2 - t3 + bv;                                                       \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(4x4) backward-weight: d[xi * ks + j] = (A dY A^T)[xi] for nj whole 4x4 dy tiles at y0 + 4j;     \
   A rows (1,0,0,0) (1,1,1,1) (1,-1,1,-1) (1,2,4,8) (1,-2,4,-8) (0,0,0,1). */                     \
FCW_CLONES static void fcw_dy4_##SFX(const T *restrict y0, ptrdiff_t Q, T *restrict d,          \
                                     ptrdiff_t ks, int nj) {                                     \
    T S[6][4][FCW_NJ];                                                                           \
    for (int c = 0; c < 4; c++)                                                                  \
        for (int j = 0; j < nj; j++) {  /* S = A dY (6 x 4), column c */                         \
            T a = y0[4 * j + c], b = y0[Q + 4 * j + c], e = y0[2 * Q + 4 * j + c];               \
            T f = y0[3 * Q + 4 * j + c];                                                         \
            S[0][c][j] = a;                                                                      \
            S[1][c][j] = a + b + e + f;                                                          \
            S[2][c][j] = a - b + e - f;                                                          \
            S[3][c][j] = a + 2 * b + 4 * e + 8 * f;                                              \
            S[4][c][j] = a - 2 * b + 4 * e - 8 * f;                                              \
            S[5][c][j] = f;                                                                      \
        }                                                                                        \
    for (int r = 0; r < 6; r++) {  /* dM = S A^T (6 x 6), row r */                               \
        T *restrict dr = d + (ptrdiff_t)(6 * r) * ks;                                            \
        for (int j = 0; j < nj; j++) {                                                           \
            T a = S[r][0][j], b = S[r][1][j], e = S[r][2][j], f = S[r][3][j];                    \
            dr[j] = a;                                                                           \
            dr[ks + j] = a + b + e + f;                                                          \
            dr[2 * ks + j] = a - b + e - f;                                                      \
            dr[3 * ks + j] = a + 2 * b + 4 * e + 8 * f;                                          \
            dr[4 * ks + j] = a - 2 * b + 4 * e - 8 * f;                                          \
            dr[5 * ks + j] = f;                                                                  \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* Filter gradients dw[kc] = G^T dU[:, kc] G (n x n components KC apart -> 3x3), n = 4 or 6. */  \
FCW_CLONES static void fcw_fgrad_##SFX(const T *restrict dU, T *restrict dw, ptrdiff_t n_all,   \
                                       ptrdiff_t KC, int n) {                                   \
    T r[18][FCW_CH], o[9][FCW_CH];                                                              \
    const T h = (T)0.5, c4 = (T)0.25, c6 = (T)1 / 6, c12 = (T)1 / 12, c24 = (T)1 / 24;          \
    for (ptrdiff_t k0 = 0; k0 < n_all; k0 += FCW_CH) {                                           \
        int m = n_all - k0 < FCW_CH ? (int)(n_all - k0) : FCW_CH;                                \
        const T *u = dU + k0;                                                                    \
        for (int b = 0; b < n; b++)  /* R = G^T dU (3 x n), column b */                          \
            for (int i = 0; i < m; i++) {                                                        \
                if (n == 4) {                                                                    \
                    T u0 = u[b * KC + i], u1 = u[(4 + b) * KC + i], u2 = u[(8 + b) * KC + i];    \
                    T u3 = u[(12 + b) * KC + i];                                                 \
                    r[b][i] = u0 + h * (u1 + u2);                                                \
                    r[n + b][i] = h * (u1 - u2);                                                 \
                    r[2 * n + b][i] = h * (u1 + u2) + u3;                                        \
                } else {                                                                         \
                    T u0 = u[b * KC + i], u1 = u[(6 + b) * KC + i], u2 = u[(12 + b) * KC + i];   \
                    T u3 = u[(18 + b) * KC + i], u4 = u[(24 + b) * KC + i];                      \
                    T u5 = u[(30 + b) * KC + i];                                                 \
                    r[b][i] = u0 * c4 - (u1 + u2) * c6 + (u3 + u4) * c24;                        \
                    r[n + b][i] = (u2 - u1) * c6 + (u3 - u4) * c12;                              \
                    r[2 * n + b][i] = (u3 + u4 - u1 - u2) * c6 + u5;                             \
                }                                                                                \
            }                                                                                    \
        for (int a = 0; a < 3; a++)  /* dw = R G (3 x 3), row a */                               \
            for (int i = 0; i < m; i++) {                                                        \
                const int o0 = a * n;                                                            \
                if (n == 4) {                                                                    \
                    T u0 = r[o0][i], u1 = r[o0 + 1][i], u2 = r[o0 + 2][i], u3 = r[o0 + 3][i];    \
                    o[3 * a][i] = u0 + h * (u1 + u2);                                            \
                    o[3 * a + 1][i] = h * (u1 - u2);                                             \
                    o[3 * a + 2][i] = h * (u1 + u2) + u3;                                        \
                } else {                                                                         \
                    T u0 = r[o0][i], u1 = r[o0 + 1][i], u2 = r[o0 + 2][i], u3 = r[o0 + 3][i];    \
                    T u4 = r[o0 + 4][i], u5 = r[o0 + 5][i];                                      \
                    o[3 * a][i] = u0 * c4 - (u1 + u2) * c6 + (u3 + u4) * c24;                    \
                    o[3 * a + 1][i] = (u2 - u1) * c6 + (u3 - u4) * c12;                          \
                    o[3 * a + 2][i] = (u3 + u4 - u1 - u2) * c6 + u5;                             \
                }                                                                                \
            }                                                                                    \
        for (int i = 0; i < m; i++)                                                              \
            for (int j = 0; j < 9; j++) dw[(k0 + i) * 9 + j] = o[j][i];                          \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* F(2x2) backward-weight: d[xi * ks + j] = (A dY A^T)[xi] for nj whole 2x2 dy tiles at y0 + 2j. */ \
FCW_CLONES static void fcw_dy2_##SFX(const T *restrict y0, ptrdiff_t Q, T *restrict d,           \
                                     ptrdiff_t ks, int nj) {                                     \
    T S[4][2][FCW_NJ];                                                                           \
    const T *y1 = y0 + Q;                                                                        \
    for (int c = 0; c < 2; c++)                                                                  \
        for (int j = 0; j < nj; j++) {  /* S = A dY (4 x 2), column c */                         \
            T a = y0[2 * j + c], b = y1[2 * j + c];                                              \
            S[0][c][j] = a;                                                                      \
            S[1][c][j] = a + b;                                                                  \
            S[2][c][j] = a - b;                                                                  \
            S[3][c][j] = -b;                                                                     \
        }                                                                                        \
    for (int r = 0; r < 4; r++) {  /* dM = S A^T (4 x 4), row r */                               \
        T *restrict dr = d + (ptrdiff_t)(4 * r) * ks;                                            \
        for (int j = 0; j < nj; j++) {                                                           \
            T a = S[r][0][j], b = S[r][1][j];                                                    \
            dr[j] = a;                                                                           \
            dr[ks + j] = a + b;                                                                  \
            dr[2 * ks + j] = a - b;                                                              \
            dr[3 * ks + j] = -b;                                                                 \
        }                                                                                        \
    }                                                                                            \
}

/* The component products for small channel counts, where OpenBLAS's per-call packing and
 * dispatch cost more than the arithmetic: for xi < na, M_xi (K x nb) = U_xi (K x C) . V_xi (C x nb),
 * all row-major with nb contiguous (M_xi at M + xi * ms, rows nb apart, likewise V; U_xi at
 * U + xi * us, rows C apart).  Register block: 4 rows of M x 2 vectors of 64 bytes (8
 * accumulators; one vector = 16 floats or 8 doubles), c innermost; then 4 rows x 1 vector;
 * tails in plain loops. */
#define FCW_GEMM(T, SFX, VT, VW)                                                                 \
typedef T VT __attribute__((vector_size(64), aligned(sizeof(T)), __may_alias__));               \
FCW_CLONES static void fcw_bgemm_##SFX(int na, int K, int C, int nb, const T *restrict U,       \
                                       ptrdiff_t us, const T *restrict V, ptrdiff_t vs,         \
                                       T *restrict M, ptrdiff_t ms) {                           \
    int nbv = nb - nb % (2 * VW), nbv1 = nb - nb % VW;                                           \
    int K4 = K - K % 4;                                                                          \
    for (int xi = 0; xi < na; xi++) {                                                            \
        const T *u = U + xi * us, *v = V + xi * vs;                                              \
        T *m = M + xi * ms;                                                                      \
        for (int k = 0; k < K4; k += 4) {                                                        \
            const T *u0 = u + (ptrdiff_t)k * C, *u1 = u0 + C, *u2 = u1 + C, *u3 = u2 + C;        \
            for (int i = 0; i < nbv; i += 2 * VW) {                                              \
                VT a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0};                                   \
                VT a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};                                   \
                const T *vp = v + i;                                                             \
                for (int c = 0; c < C; c++, vp += nb) {                                          \
                    VT v0 = *(const VT *)vp, v1 = *(const VT *)(vp + VW);                        \
                    VT b;                                                                        \
                    b = (VT){0} + u0[c]; a00 += b * v0; a01 += b * v1;                           \
                    b = (VT){0} + u1[c]; a10 += b * v0; a11 += b * v1;                           \
                    b = (VT){0} + u2[c]; a20 += b * v0; a21 += b * v1;                           \
                    b = (VT){0} + u3[c]; a30 += b * v0; a31 += b * v1;                           \
                }                                                                                \
                T *mp = m + (ptrdiff_t)k * nb + i;                                               \
                *(VT *)mp = a00; *(VT *)(mp + VW) = a01; mp += nb;                               \
                *(VT *)mp = a10; *(VT *)(mp + VW) = a11; mp += nb;                               \
                *(VT *)mp = a20; *(VT *)(mp + VW) = a21; mp += nb;                               \
                *(VT *)mp = a30; *(VT *)(mp + VW) = a31;                                         \
            }                                                                                    \
            if (nbv1 > nbv) {  /* one more vector of columns */                                  \
                VT a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                       \
                const T *vp = v + nbv;                                                           \
                for (int c = 0; c < C; c++, vp += nb) {                                          \
                    VT v0 = *(const VT *)vp;                                                     \
                    a0 += ((VT){0} + u0[c]) * v0;                                                \
                    a1 += ((VT){0} + u1[c]) * v0;                                                \
                    a2 += ((VT){0} + u2[c]) * v0;                                                \
                    a3 += ((VT){0} + u3[c]) * v0;                                                \
                }                                                                                \
                T *mp = m + (ptrdiff_t)k * nb + nbv;                                             \
                *(VT *)mp = a0; *(VT *)(mp + nb) = a1;                                           \
                *(VT *)(mp + 2 * nb) = a2; *(VT *)(mp + 3 * nb) = a3;                            \
            }                                                                                    \
        }                                                                                        \
        for (int k = 0; k < K; k++) {  /* tails: columns past nbv, rows past K4 */               \
            int i0 = k < K4 ? nbv1 : 0;                                                          \
            if (i0 >= nb) continue;                                                              \
            T *mr = m + (ptrdiff_t)k * nb;                                                       \
            const T *ur = u + (ptrdiff_t)k * C;                                                  \
            for (int i = i0; i < nb; i++) mr[i] = 0;                                             \
            for (int c = 0; c < C; c++) {                                                        \
                T uc = ur[c];                                                                    \
                const T *vr = v + (ptrdiff_t)c * nb;                                             \
                for (int i = i0; i < nb; i++) mr[i] += uc * vr[i];                               \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}

FCW_DEFS(float, f32)
FCW_DEFS(double, f64)
FCW_GEMM(float, f32, fcw_v16f, 16)
FCW_GEMM(double, f64, fcw_v8d, 8)

