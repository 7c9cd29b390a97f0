/* Fused gate loops of the LSTM and GRU cells over one block of hidden units
 * [j0, j1) (all rows n, all gates of those units): rnn.pyx gives each OpenMP
 * thread one block, runs that block's GEMM rows with BLAS, then this loop,
 * with no barrier in between.  Single-threaded; simd over the hidden units.
 * The forward GEMMs write the gate pre-activations TRANSPOSED, (G*H, N), into
 * a scratch buffer; the backward's gate gradients are written (N, G*H). */
#include <math.h>
#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_RCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_RCLONES
#endif

/* glibc's libmvec has SIMD variants of expf/tanhf/exp/tanh, but math.h only
 * declares them under -ffinite-math-only; we build with -fno-finite-math-only
 * (NaN must propagate), so declare them here -- the vector variants still
 * propagate NaN (tested).  Linked through "# distutils: libraries = m" (glibc's
 * libm.so script adds libmvec AS_NEEDED). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__)
#define FC_VEC __attribute__((__simd__("notinbranch")))
FC_VEC float expf(float);
FC_VEC float tanhf(float);
FC_VEC double exp(double);
FC_VEC double tanh(double);
#endif

/* sigmoid without overflow: exp only ever sees -|a| */
#define FC_SIG(T, EXP, a) ({ T _e = EXP((a) < 0 ? (a) : -(a)); (a) >= 0 ? 1 / (1 + _e) : _e / (1 + _e); })

/* loc[k][q][j] = gT[(k*H + jt + j) * N + nt + q] for the 4 row groups k (a tile transpose):
 * full float32 tiles on AVX-512 CPUs in registers (fc_tr16, _tr16.h; the scalar copies were
 * a third of the LSTM forward's gate loop), the rest element by element. */
#define FC_TJ 16
#define FC_TN 16
static int fc_has_avx512(void);
#if defined(__GNUC__) && defined(__x86_64__)
#include "_tr16.h"
__attribute__((target("avx512f"), noinline)) static void fc_tile16_f32(const float *gT, ptrdiff_t N, ptrdiff_t H,
        ptrdiff_t jt, ptrdiff_t nt, float *loc) {
    for (int k = 0; k < 4; k++) {
        __m512 r[16];
        for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(gT + (k * H + jt + j) * N + nt);
        fc_tr16(r);
        for (int q = 0; q < 16; q++) _mm512_storeu_ps(loc + (k * FC_TN + q) * FC_TJ, r[q]);
    }
}
#define FC_TILE16_OK 1
#else
static void fc_tile16_f32(const float *gT, ptrdiff_t N, ptrdiff_t H, ptrdiff_t jt, ptrdiff_t nt, float *loc) {
    (void)gT; (void)N; (void)H; (void)jt; (void)nt; (void)loc;
}
#define FC_TILE16_OK 0
#endif
#define FC_TILE(T, gT, N, H, jt, jn, nt, nn, loc)                                                  \
    if (sizeof(T) == 4 && FC_TILE16_OK && av && (jn) == FC_TJ && (nn) == FC_TN)                    \
        fc_tile16_f32((const float *)(gT), N, H, jt, nt, (float *)(loc));                          \
    else                                                                                           \
        for (int k_ = 0; k_ < 4; k_++)                                                             \
            for (ptrdiff_t j_ = 0; j_ < (jn); j_++) {                                              \
                const T *restrict src_ = (gT) + (k_ * (H) + (jt) + j_) * (N) + (nt);               \
                for (ptrdiff_t q_ = 0; q_ < (nn); q_++) (loc)[k_][q_][j_] = src_[q_];              \
            }

#define FC_RNN(T, SFX, EXP, TANH)                                                                  \
/* gT (4H, N): x W_ih^T + h W_hh^T TRANSPOSED (that GEMM orientation is 15-20% faster in       \
 * OpenBLAS); out: g (N,4H) the activated gates i,f,g,o, c_new, h_new.  Tiles of FC_TN rows x       \
 * FC_TJ units are transposed into loc, then the math runs simd over the units. */                 \
FC_RCLONES static void fc_lstm_fwd_##SFX(const T *restrict gT, const T *restrict bi, const T *restrict bh, \
        const T *restrict c, T *restrict g, T *restrict c_new, T *restrict h_new, ptrdiff_t N,      \
        ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1) {                                                 \
    T loc[4][FC_TN][FC_TJ];                                                                        \
    int av = fc_has_avx512();                                                                      \
    for (ptrdiff_t jt = j0; jt < j1; jt += FC_TJ) {                                                \
        ptrdiff_t jn = j1 - jt < FC_TJ ? j1 - jt : FC_TJ;                                          \
        for (ptrdiff_t nt = 0; nt < N; nt += FC_TN) {                                              \
            ptrdiff_t nn = N - nt < FC_TN ? N - nt : FC_TN;                                        \
            FC_TILE(T, gT, N, H, jt, jn, nt, nn, loc);                                             \
            for (ptrdiff_t q = 0; q < nn; q++) {                                                   \
                ptrdiff_t n = nt + q;                                                              \
                T *restrict g4 = g + n * 4 * H + jt;                                               \
                const T *restrict cr = c + n * H + jt, *restrict b0 = bi + jt, *restrict b1 = bh + jt; \
                T *restrict cn = c_new + n * H + jt, *restrict hn = h_new + n * H + jt;            \
                _Pragma("omp simd")                                                                \
                for (ptrdiff_t j = 0; j < jn; j++) {                                               \
                    T ai = loc[0][q][j] + (b0[j] + b1[j]);                                         \
                    T af = loc[1][q][j] + (b0[H + j] + b1[H + j]);                                 \
                    T ag = loc[2][q][j] + (b0[2 * H + j] + b1[2 * H + j]);                         \
                    T ao = loc[3][q][j] + (b0[3 * H + j] + b1[3 * H + j]);                         \
                    T i = FC_SIG(T, EXP, ai), f = FC_SIG(T, EXP, af), gg = TANH(ag), o = FC_SIG(T, EXP, ao); \
                    T cc = f * cr[j] + i * gg;                                                     \
                    g4[j] = i; g4[H + j] = f; g4[2 * H + j] = gg; g4[3 * H + j] = o;              \
                    cn[j] = cc; hn[j] = o * TANH(cc);                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* d (N,4H): pre-activation gate gradients; dc (N,H) = dc_tot * f; db (4H) = sum over n of d. */   \
FC_RCLONES static void fc_lstm_bwd_##SFX(const T *restrict dh_new, const T *restrict dc_new,            \
        const T *restrict gates, const T *restrict c, const T *restrict c_new, T *restrict d,       \
        T *restrict dc, T *restrict db, ptrdiff_t N, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1) {    \
    for (ptrdiff_t k = 0; k < 4; k++)                                                              \
        for (ptrdiff_t j = j0; j < j1; j++) db[k * H + j] = 0;                                     \
    for (ptrdiff_t n = 0; n < N; n++) {                                                            \
        const T *restrict g4 = gates + n * 4 * H;                                                  \
        T *restrict d4 = d + n * 4 * H;                                                            \
        const T *restrict dhr = dh_new + n * H, *restrict dcr = dc_new + n * H;                    \
        const T *restrict cr = c + n * H, *restrict cnr = c_new + n * H;                           \
        T *restrict dco = dc + n * H;                                                              \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            T i = g4[j], f = g4[H + j], gg = g4[2 * H + j], o = g4[3 * H + j];                     \
            T tc = TANH(cnr[j]), dh = dhr[j];                                                      \
            T dct = dcr[j] + dh * o * (1 - tc * tc);                                               \
            T di = dct * gg * i * (1 - i), df = dct * cr[j] * f * (1 - f);                         \
            T dg = dct * i * (1 - gg * gg), dout = dh * tc * o * (1 - o);                          \
            d4[j] = di; d4[H + j] = df; d4[2 * H + j] = dg; d4[3 * H + j] = dout;                  \
            db[j] += di; db[H + j] += df; db[2 * H + j] += dg; db[3 * H + j] += dout;              \
            dco[j] = dct * f;                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* gT (4H, N): rows [x W_ir^T + h W_hr^T, x W_iz^T + h W_hz^T, x W_in^T, h W_hn^T] TRANSPOSED;       \
 * out: s (N,4H) = r, z, n, hn = h W_hn^T + b_hn (the saved state), h_new. */                      \
FC_RCLONES static void fc_gru_fwd_##SFX(const T *restrict gT, const T *restrict bi, const T *restrict bh, \
        const T *restrict h, T *restrict s, T *restrict h_new, ptrdiff_t N, ptrdiff_t H,           \
        ptrdiff_t j0, ptrdiff_t j1) {                                                              \
    T loc[4][FC_TN][FC_TJ];                                                                        \
    int av = fc_has_avx512();                                                                      \
    for (ptrdiff_t jt = j0; jt < j1; jt += FC_TJ) {                                                \
        ptrdiff_t jn = j1 - jt < FC_TJ ? j1 - jt : FC_TJ;                                          \
        for (ptrdiff_t nt = 0; nt < N; nt += FC_TN) {                                              \
            ptrdiff_t nn = N - nt < FC_TN ? N - nt : FC_TN;                                        \
            FC_TILE(T, gT, N, H, jt, jn, nt, nn, loc);                                             \
            for (ptrdiff_t q = 0; q < nn; q++) {                                                   \
                ptrdiff_t n = nt + q;                                                              \
                T *restrict s4 = s + n * 4 * H + jt, *restrict ho = h_new + n * H + jt;            \
                const T *restrict hr = h + n * H + jt, *restrict b0 = bi + jt, *restrict b1 = bh + jt; \
                _Pragma("omp simd")                                                                \
                for (ptrdiff_t j = 0; j < jn; j++) {                                               \
                    T ar = loc[0][q][j] + (b0[j] + b1[j]);                                         \
                    T az = loc[1][q][j] + (b0[H + j] + b1[H + j]);                                 \
                    T r = FC_SIG(T, EXP, ar), z = FC_SIG(T, EXP, az);                              \
                    T hn = loc[3][q][j] + b1[2 * H + j];                                           \
                    T nn_ = TANH(loc[2][q][j] + b0[2 * H + j] + r * hn);                           \
                    s4[j] = r; s4[H + j] = z; s4[2 * H + j] = nn_; s4[3 * H + j] = hn;             \
                    ho[j] = nn_ + z * (hr[j] - nn_);                                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* dgi, dgh (N,3H): pre-activation gradients of the input and hidden sides; dhz = dh_new * z       \
 * (the direct part of dh, which the dh GEMM then accumulates onto); dbi, dbh (3H): their sums. */ \
FC_RCLONES static void fc_gru_bwd_##SFX(const T *restrict dh_new, const T *restrict h,                  \
        const T *restrict saved, T *restrict dgi, T *restrict dgh, T *restrict dhz,                \
        T *restrict dbi, T *restrict dbh, ptrdiff_t N, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1) {  \
    for (ptrdiff_t k = 0; k < 3; k++)                                                              \
        for (ptrdiff_t j = j0; j < j1; j++) dbi[k * H + j] = dbh[k * H + j] = 0;                   \
    for (ptrdiff_t n = 0; n < N; n++) {                                                            \
        const T *restrict s4 = saved + n * 4 * H, *restrict dhr = dh_new + n * H, *restrict hr = h + n * H; \
        T *restrict di = dgi + n * 3 * H, *restrict dg = dgh + n * 3 * H, *restrict dz = dhz + n * H; \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            T r = s4[j], z = s4[H + j], nn = s4[2 * H + j], hn = s4[3 * H + j], g = dhr[j];        \
            T dn = g * (1 - z) * (1 - nn * nn);                                                    \
            T dr = dn * hn * r * (1 - r);                                                          \
            T dzz = g * (hr[j] - nn) * z * (1 - z);                                                \
            di[j] = dr; di[H + j] = dzz; di[2 * H + j] = dn;                                       \
            dg[j] = dr; dg[H + j] = dzz; dg[2 * H + j] = dn * r;                                   \
            dbi[j] += dr; dbi[H + j] += dzz; dbi[2 * H + j] += dn;                                 \
            dbh[j] += dr; dbh[H + j] += dzz; dbh[2 * H + j] += dn * r;                             \
            dz[j] = g * z;                                                                         \
        }                                                                                          \
    }                                                                                              \
}

FC_RNN(float, f32, expf, tanhf)
FC_RNN(double, f64, exp, tanh)

/* ---- GEMMs without packing (AVX-512, float32) --------------------------------------------
 * fc_mm_f32: C[r, n] (+)= sum_k A1[r*sr1 + k*sk1] B1[k*ldb1 + n] + sum_k A2[r*sr2 + k*sk2] B2[k*ldb2 + n]
 * for rows r in [r0, r1) and columns n < ncols (row stride ldc; acc: add to C).  A is read as
 * broadcast operands through strides (W as given, or d^T for dW = d^T x), B as vectors, the
 * two products summed in the same registers of 8-row x 32-column tiles.  OpenBLAS spends ~20%
 * of the LSTM 64x256x512 forward re-packing the 6 MB of weights on every call; here they
 * stream straight from memory.  Row tails clamp to the last row (computed, not stored),
 * column tails use masked loads and stores.  Used only where the CPU has AVX-512 (checked at
 * run time, fc_has_avx512); otherwise and for float64 the caller uses BLAS. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
static int fc_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

/* 16 named accumulators (an array of them was kept in memory by GCC: 2.5x slower) */
#define FC_MM_ROW(i)                                                                               \
    { __m512 av = _mm512_set1_ps(a##i[ko]);                                                        \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1); }
#define FC_MM_LOOP(P, B, LDB, K, SK, LOAD0, LOAD1)                                                 \
    {   const float *a0 = P[0], *a1 = P[1], *a2 = P[2], *a3 = P[3], *a4 = P[4], *a5 = P[5],       \
                    *a6 = P[6], *a7 = P[7];                                                        \
        for (ptrdiff_t k = 0; k < (K); k++) {                                                      \
            const float *b = (B) + k * (LDB) + n;                                                  \
            ptrdiff_t ko = k * (SK);                                                               \
            __m512 b0 = LOAD0, b1 = LOAD1;                                                         \
            FC_MM_ROW(0) FC_MM_ROW(1) FC_MM_ROW(2) FC_MM_ROW(3)                                    \
            FC_MM_ROW(4) FC_MM_ROW(5) FC_MM_ROW(6) FC_MM_ROW(7)                                    \
        }                                                                                          \
    }
#define FC_MM_TILE(LOAD0, LOAD1)                                                                   \
    {   __m512 o[16];                                                                              \
        for (int i = 0; i < 8; i++) {                                                              \
            int ld_ = acc && i < mr;                                                               \
            o[2 * i] = ld_ ? _mm512_maskz_loadu_ps(m0, C + (r + i) * ldc + n) : _mm512_setzero_ps(); \
            o[2 * i + 1] = ld_ ? _mm512_maskz_loadu_ps(m1, C + (r + i) * ldc + n + 16) : _mm512_setzero_ps(); \
        }                                                                                          \
        __m512 c00 = o[0], c01 = o[1], c10 = o[2], c11 = o[3], c20 = o[4], c21 = o[5], c30 = o[6], \
               c31 = o[7], c40 = o[8], c41 = o[9], c50 = o[10], c51 = o[11], c60 = o[12],          \
               c61 = o[13], c70 = o[14], c71 = o[15];                                              \
        FC_MM_LOOP(p1, B1, ldb1, K1, sk1, LOAD0, LOAD1)                                            \
        FC_MM_LOOP(p2, B2, ldb2, K2, sk2, LOAD0, LOAD1)                                            \
        o[0] = c00; o[1] = c01; o[2] = c10; o[3] = c11; o[4] = c20; o[5] = c21; o[6] = c30;        \
        o[7] = c31; o[8] = c40; o[9] = c41; o[10] = c50; o[11] = c51; o[12] = c60; o[13] = c61;    \
        o[14] = c70; o[15] = c71;                                                                  \
        for (int i = 0; i < mr; i++) {                                                             \
            _mm512_mask_storeu_ps(C + (r + i) * ldc + n, m0, o[2 * i]);                            \
            _mm512_mask_storeu_ps(C + (r + i) * ldc + n + 16, m1, o[2 * i + 1]);                   \
        }                                                                                          \
    }

__attribute__((target("avx512f"))) static void fc_mm_f32(
        const float *A1, ptrdiff_t sr1, ptrdiff_t sk1, const float *B1, ptrdiff_t ldb1, ptrdiff_t K1,
        const float *A2, ptrdiff_t sr2, ptrdiff_t sk2, const float *B2, ptrdiff_t ldb2, ptrdiff_t K2,
        float *C, ptrdiff_t ldc, ptrdiff_t ncols, ptrdiff_t r0, ptrdiff_t r1, int acc) {
    for (ptrdiff_t r = r0; r < r1; r += 8) {
        ptrdiff_t mr = r1 - r < 8 ? r1 - r : 8;
        const float *p1[8], *p2[8];
        for (int i = 0; i < 8; i++) {
            ptrdiff_t rr = r + (i < mr ? i : mr - 1);
            p1[i] = A1 + rr * sr1;
            p2[i] = A2 + rr * sr2;
        }
        for (ptrdiff_t n = 0; n < ncols; n += 32) {
            ptrdiff_t nr = ncols - n;
            __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
            __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1);
            if (nr >= 32)
                FC_MM_TILE(_mm512_loadu_ps(b), _mm512_loadu_ps(b + 16))
            else
                FC_MM_TILE(_mm512_maskz_loadu_ps(m0, b), _mm512_maskz_loadu_ps(m1, b + 16))
        }
    }
}
#else
static int fc_has_avx512(void) { return 0; }
static void fc_mm_f32(const float *A1, ptrdiff_t sr1, ptrdiff_t sk1, const float *B1, ptrdiff_t ldb1,
        ptrdiff_t K1, const float *A2, ptrdiff_t sr2, ptrdiff_t sk2, const float *B2, ptrdiff_t ldb2,
        ptrdiff_t K2, float *C, ptrdiff_t ldc, ptrdiff_t ncols, ptrdiff_t r0, ptrdiff_t r1, int acc) {
    (void)A1; (void)sr1; (void)sk1; (void)B1; (void)ldb1; (void)K1; (void)A2; (void)sr2; (void)sk2;
    (void)B2; (void)ldb2; (void)K2; (void)C; (void)ldc; (void)ncols; (void)r0; (void)r1; (void)acc;
}
#endif

/* forward: C (rows of N) = W1 B1 + W2 B2 over rows [r0, r1), W row-major with rows of K */
static inline void fc_wx_f32(const float *A1, const float *B1, ptrdiff_t K1, const float *A2,
        const float *B2, ptrdiff_t K2, float *C, ptrdiff_t N, ptrdiff_t r0, ptrdiff_t r1) {
    fc_mm_f32(A1, K1, 1, B1, N, K1, A2, K2, 1, B2, N, K2, C, N, N, r0, r1, 0);
}
