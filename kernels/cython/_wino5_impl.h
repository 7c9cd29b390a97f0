/* Winograd F(2x2, 5x5) transforms for _conv_winograd5.pyx, vectorised over runs of side-by-side
 * tiles (or filters) like _wino_impl.h (whose FCW_CLONES, FCW_NJ, FCW_CH and batched GEMM
 * fcw_bgemm_* this file reuses).  Points 0, 1, -1, 2, -2, inf:
 *   B^T (6x6, the data transform) is the one of F(4x4, 3x3) (rows below), tiles 2 apart;
 *   G (6x5): rows g(0)/4, -g(1)/6, -g(-1)/6, g(2)/24, g(-2)/24, g4, where g(z) = sum_r g_r z^r;
 *   A^T (2x6): rows (1, 1, 1, 1, 1, 0) and (0, 1, -1, 2, -2, 1).
 * Layouts: component xi of tile/filter i lives at base[xi * stride + i].
 */
#pragma GCC diagnostic ignored "-Wunused-function"  /* _wino_impl.h's 3x3 transforms */
#include "_wino_impl.h"

#define FC5_DEFS(T, SFX)                                                                         \
/* d[0 .. n) = s[0 .. n), n <= 48, for short rows: fixed-size copies, the last one overlapping,   \
   and no loop (gcc turns copy loops into libc memcpy calls, which were 4-6 % of the runtime). */ \
static inline void fc5_copy_##SFX(T *restrict d, const T *restrict s, ptrdiff_t n) {            \
    if (n >= 16) {                                                                               \
        __builtin_memcpy(d, s, 16 * sizeof(T));                                                  \
        if (n >= 32) __builtin_memcpy(d + 16, s + 16, 16 * sizeof(T));                           \
        __builtin_memcpy(d + n - 16, s + n - 16, 16 * sizeof(T));                                \
    } else if (n >= 8) {                                                                         \
        __builtin_memcpy(d, s, 8 * sizeof(T));                                                   \
        __builtin_memcpy(d + n - 8, s + n - 8, 8 * sizeof(T));                                   \
    } else if (n >= 4) {                                                                         \
        __builtin_memcpy(d, s, 4 * sizeof(T));                                                   \
        __builtin_memcpy(d + n - 4, s + n - 4, 4 * sizeof(T));                                   \
    } else {                                                                                     \
        if (n > 0) d[0] = s[0];                                                                  \
        if (n > 1) d[1] = s[1];                                                                  \
        if (n > 2) d[2] = s[2];                                                                  \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* U[xi * KC + i] = (G g G^T)[xi] for filters s0 .. s0+n_all-1 (U points at filter s0's); g = w[q] \
   (25 taps), or with fk != 0 the filters of the transposed conv (backward-input):               \
   g = w[q % fk, q / fk] reversed in both taps (w of fk x fc filters). */                        \
FCW_CLONES static void fc5_filters_##SFX(const T *restrict w, T *restrict U, ptrdiff_t s0,      \
                                         ptrdiff_t n_all, ptrdiff_t KC, ptrdiff_t fk,           \
                                         ptrdiff_t fc) {                                        \
    T g[25][FCW_CH], t[30][FCW_CH];                                                             \
    const T c4 = (T)0.25, c6 = (T)1 / 6, c24 = (T)1 / 24;                                       \
    for (ptrdiff_t k0 = 0; k0 < n_all; k0 += FCW_CH) {                                           \
        int n = n_all - k0 < FCW_CH ? (int)(n_all - k0) : FCW_CH;                                \
        for (int i = 0; i < n; i++) {                                                            \
            ptrdiff_t q = s0 + k0 + i;                                                           \
            if (fk) {                                                                            \
                ptrdiff_t src = ((q % fk) * fc + q / fk) * 25;                                   \
                for (int j = 0; j < 25; j++) g[j][i] = w[src + 24 - j];                          \
            } else {                                                                             \
                for (int j = 0; j < 25; j++) g[j][i] = w[q * 25 + j];                            \
            }                                                                                    \
        }                                                                                        \
        for (int j = 0; j < 5; j++) /* t = G g (6 x 5), column j */                              \
            for (int i = 0; i < n; i++) {                                                        \
                T a0 = g[j][i], a1 = g[5 + j][i], a2 = g[10 + j][i], a3 = g[15 + j][i];          \
                T a4 = g[20 + j][i];                                                             \
                T e = a0 + a2 + a4, o = a1 + a3, e2 = a0 + 4 * a2 + 16 * a4, o2 = 2 * a1 + 8 * a3; \
                t[j][i] = a0 * c4;                                                               \
                t[5 + j][i] = -(e + o) * c6;                                                     \
                t[10 + j][i] = -(e - o) * c6;                                                    \
                t[15 + j][i] = (e2 + o2) * c24;                                                  \
                t[20 + j][i] = (e2 - o2) * c24;                                                  \
                t[25 + j][i] = a4;                                                               \
            }                                                                                    \
        for (int r = 0; r < 6; r++) { /* U = t G^T, row r */                                     \
            T *restrict u = U + (ptrdiff_t)(6 * r) * KC + k0;                                    \
            for (int i = 0; i < n; i++) {                                                        \
                T a0 = t[5 * r][i], a1 = t[5 * r + 1][i], a2 = t[5 * r + 2][i];                  \
                T a3 = t[5 * r + 3][i], a4 = t[5 * r + 4][i];                                    \
                T e = a0 + a2 + a4, o = a1 + a3, e2 = a0 + 4 * a2 + 16 * a4, o2 = 2 * a1 + 8 * a3; \
                u[i] = a0 * c4;                                                                  \
                u[KC + i] = -(e + o) * c6;                                                       \
                u[2 * KC + i] = -(e - o) * c6;                                                   \
                u[3 * KC + i] = (e2 + o2) * c24;                                                 \
                u[4 * KC + i] = (e2 - o2) * c24;                                                 \
                u[5 * KC + i] = a4;                                                              \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* Input transform of FCW_NJ side-by-side 6x6 tiles with origins r0 + 2j (rows W apart; reads    \
   2 FCW_NJ + 4 columns): v[xi * cs + j] = (B^T d B)[xi].  Always the full width (a compile-time \
   trip count, so every loop is vectorised: runs are often < 16 tiles, whose tails went scalar);  \
   stores the first nc tiles' components (all 16 where the slots past a run are free). */        \
FCW_CLONES static void fc5_in_##SFX(const T *restrict r0, ptrdiff_t W, T *restrict v,           \
                                    ptrdiff_t cs, ptrdiff_t nc) {                                \
    /* vertical pass into even / odd columns (a stride-2 load pair, which gcc vectorises), so the \
       horizontal pass reads contiguous runs (its stride-2 six-tap form compiled to scalar code) */ \
    T Ee[6][FCW_NJ + 2], Eo[6][FCW_NJ + 2];                                                      \
    const ptrdiff_t nh = FCW_NJ + 2, nj = FCW_NJ;  /* 64-bit indices: -fwrapv blocks vectorising int ones */                                                      \
    const T *r1 = r0 + W, *r2 = r1 + W, *r3 = r2 + W, *r4 = r3 + W, *r5 = r4 + W;                \
    for (ptrdiff_t h = 0; h < nh; h++) {                                                               \
        T d0 = r0[2 * h], d1 = r1[2 * h], d2 = r2[2 * h], d3 = r3[2 * h], d4 = r4[2 * h];        \
        T d5 = r5[2 * h];                                                                        \
        Ee[0][h] = 4 * d0 - 5 * d2 + d4;                                                         \
        Ee[1][h] = -4 * (d1 + d2) + d3 + d4;                                                     \
        Ee[2][h] = 4 * (d1 - d2) - d3 + d4;                                                      \
        Ee[3][h] = 2 * (d3 - d1) - d2 + d4;                                                      \
        Ee[4][h] = 2 * (d1 - d3) - d2 + d4;                                                      \
        Ee[5][h] = 4 * d1 - 5 * d3 + d5;                                                         \
        d0 = r0[2 * h + 1]; d1 = r1[2 * h + 1]; d2 = r2[2 * h + 1]; d3 = r3[2 * h + 1];          \
        d4 = r4[2 * h + 1]; d5 = r5[2 * h + 1];                                                  \
        Eo[0][h] = 4 * d0 - 5 * d2 + d4;                                                         \
        Eo[1][h] = -4 * (d1 + d2) + d3 + d4;                                                     \
        Eo[2][h] = 4 * (d1 - d2) - d3 + d4;                                                      \
        Eo[3][h] = 2 * (d3 - d1) - d2 + d4;                                                      \
        Eo[4][h] = 2 * (d1 - d3) - d2 + d4;                                                      \
        Eo[5][h] = 4 * d1 - 5 * d3 + d5;                                                         \
    }                                                                                            \
    T Hh[36][FCW_NJ];  /* horizontal pass into a local buffer (stores straight to v stayed scalar: \
                          gcc versions the loop on an overlap test of the six rows) */          \
    for (ptrdiff_t a = 0; a < 6; a++) {                                                          \
        const T *ee = Ee[a], *eo = Eo[a];                                                        \
        T *h0 = Hh[6 * a], *h1 = Hh[6 * a + 1], *h2 = Hh[6 * a + 2], *h3 = Hh[6 * a + 3];        \
        T *h4 = Hh[6 * a + 4], *h5 = Hh[6 * a + 5];                                              \
        for (ptrdiff_t j = 0; j < nj; j++) {                                                     \
            T d0 = ee[j], d1 = eo[j], d2 = ee[j + 1], d3 = eo[j + 1], d4 = ee[j + 2];            \
            T d5 = eo[j + 2];                                                                    \
            h0[j] = 4 * d0 - 5 * d2 + d4;                                                        \
            h1[j] = -4 * (d1 + d2) + d3 + d4;                                                    \
            h2[j] = 4 * (d1 - d2) - d3 + d4;                                                     \
            h3[j] = 2 * (d3 - d1) - d2 + d4;                                                     \
            h4[j] = 2 * (d1 - d3) - d2 + d4;                                                     \
            h5[j] = 4 * d1 - 5 * d3 + d5;                                                        \
        }                                                                                        \
    }                                                                                            \
    if (nc == FCW_NJ)                                                                            \
        for (ptrdiff_t xi = 0; xi < 36; xi++)                                                    \
            __builtin_memcpy(v + xi * cs, Hh[xi], sizeof(Hh[0]));                               \
    else /* the first nc only (gcc made the plain loop a libc memcpy call per component) */     \
        for (ptrdiff_t xi = 0; xi < 36; xi++) fc5_copy_##SFX(v + xi * cs, Hh[xi], nc);          \
}                                                                                                \
                                                                                                 \
/* Output transform of FCW_NJ 2x2 tiles side by side (M read for all of them, full width as in   \
   fc5_in): y = A^T M A + bv, of which rows a < ra, columns q < rq are stored (rows Q apart). */ \
FCW_CLONES static void fc5_out_##SFX(const T *restrict mp, ptrdiff_t ks, T *restrict y,         \
                                     ptrdiff_t Q, int ra, int rq, T bv) {                        \
    T S[2][6][FCW_NJ], o[2][2 * FCW_NJ];                                                         \
    const ptrdiff_t nj = FCW_NJ;                                                                     \
    for (ptrdiff_t b = 0; b < 6; b++) {                                                                \
        const T *m = mp + (ptrdiff_t)b * ks;                                                     \
        for (ptrdiff_t j = 0; j < nj; j++) {                                                           \
            T m0 = m[j], m1 = m[6 * ks + j], m2 = m[12 * ks + j], m3 = m[18 * ks + j];           \
            T m4 = m[24 * ks + j], m5 = m[30 * ks + j];                                          \
            S[0][b][j] = m0 + m1 + m2 + m3 + m4;                                                 \
            S[1][b][j] = m1 - m2 + 2 * (m3 - m4) + m5;                                           \
        }                                                                                        \
    }                                                                                            \
    for (ptrdiff_t a = 0; a < 2; a++) {                                                                \
        T *yr = o[a];                                                                            \
        for (ptrdiff_t j = 0; j < nj; j++) {                                                           \
            T m0 = S[a][0][j], m1 = S[a][1][j], m2 = S[a][2][j], m3 = S[a][3][j];                \
            T m4 = S[a][4][j], m5 = S[a][5][j];                                                  \
            yr[2 * j] = m0 + m1 + m2 + m3 + m4 + bv;                                             \
            yr[2 * j + 1] = m1 - m2 + 2 * (m3 - m4) + m5 + bv;                                   \
        }                                                                                        \
    }                                                                                            \
    for (ptrdiff_t a = 0; a < ra; a++)                                                                 \
        for (ptrdiff_t q = 0; q < rq; q++) y[a * Q + q] = o[a][q];                                     \
}

FC5_DEFS(float, f32)
FC5_DEFS(double, f64)
