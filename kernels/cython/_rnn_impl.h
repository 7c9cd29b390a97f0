/* Fused gate loops of the LSTM and GRU cells over one block of hidden units
 * [j0, j1) (all rows n, all gates of those units): rnn.pyx gives each OpenMP
 * thread one block, runs that block's GEMM rows with BLAS, then this loop,
 * with no barrier in between.  Single-threaded; simd over the hidden units.
 * The forward GEMMs write the gate pre-activations TRANSPOSED, (G*H, N), into
 * a scratch buffer; the backward's gate gradients are written (N, G*H). */
#include <math.h>
#include <stddef.h>
#include "_mm_f32.h" /* fc_mm_f32, fc_has_avx512: also used by the attention */

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

/* forward: C (rows of N) = W1 B1 + W2 B2 over rows [r0, r1), W row-major with rows of K */
static inline void fc_wx_f32(const float *A1, const float *B1, ptrdiff_t K1, const float *A2,
        const float *B2, ptrdiff_t K2, float *C, ptrdiff_t N, ptrdiff_t r0, ptrdiff_t r1) {
    fc_mm_f32(A1, K1, 1, B1, N, K1, A2, K2, 1, B2, N, K2, C, N, N, r0, r1, 0);
}
