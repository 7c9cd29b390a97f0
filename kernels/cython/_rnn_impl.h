/* Fused gate loops of the LSTM and GRU cells (restrict pointers, OpenMP over
 * rows, simd over the hidden units).  The GEMMs are done by the caller; these
 * loops read the two (N, G*H) products once and write every output once. */
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

#define FC_RNN(T, SFX, EXP, TANH)                                                                  \
/* gi (N,4H) = x W_ih^T, in: pre-activations; out: activated gates i,f,g,o.  gh = h W_hh^T. */     \
FC_RCLONES static void fc_lstm_fwd_##SFX(T *restrict gi, const T *restrict gh, const T *restrict b,     \
        const T *restrict c, T *restrict c_new, T *restrict h_new, ptrdiff_t N, ptrdiff_t H, int nt) { \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t n = 0; n < N; n++) {                                                            \
        T *restrict g4 = gi + n * 4 * H;                                                           \
        const T *restrict h4 = gh + n * 4 * H;                                                     \
        const T *restrict cr = c + n * H;                                                          \
        T *restrict cn = c_new + n * H, *restrict hn = h_new + n * H;                              \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < H; j++) {                                                        \
            T ai = g4[j] + h4[j] + b[j];                                                           \
            T af = g4[H + j] + h4[H + j] + b[H + j];                                               \
            T ag = g4[2 * H + j] + h4[2 * H + j] + b[2 * H + j];                                   \
            T ao = g4[3 * H + j] + h4[3 * H + j] + b[3 * H + j];                                   \
            T i = FC_SIG(T, EXP, ai), f = FC_SIG(T, EXP, af), g = TANH(ag), o = FC_SIG(T, EXP, ao); \
            T cc = f * cr[j] + i * g;                                                              \
            g4[j] = i; g4[H + j] = f; g4[2 * H + j] = g; g4[3 * H + j] = o;                       \
            cn[j] = cc; hn[j] = o * TANH(cc);                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* d (N,4H): pre-activation gate gradients; dc (N,H) = dc_tot * f. */                              \
FC_RCLONES static void fc_lstm_bwd_##SFX(const T *restrict dh_new, const T *restrict dc_new,            \
        const T *restrict gates, const T *restrict c, const T *restrict c_new, T *restrict d,       \
        T *restrict dc, ptrdiff_t N, ptrdiff_t H, int nt) {                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t n = 0; n < N; n++) {                                                            \
        const T *restrict g4 = gates + n * 4 * H;                                                  \
        T *restrict d4 = d + n * 4 * H;                                                            \
        const T *restrict dhr = dh_new + n * H, *restrict dcr = dc_new + n * H;                    \
        const T *restrict cr = c + n * H, *restrict cnr = c_new + n * H;                           \
        T *restrict dco = dc + n * H;                                                              \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < H; j++) {                                                        \
            T i = g4[j], f = g4[H + j], g = g4[2 * H + j], o = g4[3 * H + j];                      \
            T tc = TANH(cnr[j]), dh = dhr[j];                                                      \
            T dct = dcr[j] + dh * o * (1 - tc * tc);                                               \
            d4[j] = dct * g * i * (1 - i);                                                         \
            d4[H + j] = dct * cr[j] * f * (1 - f);                                                 \
            d4[2 * H + j] = dct * i * (1 - g * g);                                                 \
            d4[3 * H + j] = dh * tc * o * (1 - o);                                                 \
            dco[j] = dct * f;                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* gi (N,3H) = x W_ih^T, gh (N,3H) = h W_hh^T (no biases); saved (N,4H) = r, z, n, hn. */          \
FC_RCLONES static void fc_gru_fwd_##SFX(const T *restrict gi, const T *restrict gh, const T *restrict bi, \
        const T *restrict bh, const T *restrict h, T *restrict saved, T *restrict h_new,           \
        ptrdiff_t N, ptrdiff_t H, int nt) {                                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t n = 0; n < N; n++) {                                                            \
        const T *restrict i3 = gi + n * 3 * H, *restrict h3 = gh + n * 3 * H, *restrict hr = h + n * H; \
        T *restrict s4 = saved + n * 4 * H, *restrict ho = h_new + n * H;                          \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < H; j++) {                                                        \
            T ar = i3[j] + bi[j] + h3[j] + bh[j];                                                  \
            T az = i3[H + j] + bi[H + j] + h3[H + j] + bh[H + j];                                  \
            T r = FC_SIG(T, EXP, ar), z = FC_SIG(T, EXP, az);                                      \
            T hn = h3[2 * H + j] + bh[2 * H + j];                                                  \
            T nn = TANH(i3[2 * H + j] + bi[2 * H + j] + r * hn);                                   \
            s4[j] = r; s4[H + j] = z; s4[2 * H + j] = nn; s4[3 * H + j] = hn;                      \
            ho[j] = nn + z * (hr[j] - nn);                                                         \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* dgi, dgh (N,3H): pre-activation gradients of the input and hidden sides; dhz = dh_new * z. */   \
FC_RCLONES static void fc_gru_bwd_##SFX(const T *restrict dh_new, const T *restrict h,                  \
        const T *restrict saved, T *restrict dgi, T *restrict dgh, T *restrict dhz,                \
        ptrdiff_t N, ptrdiff_t H, int nt) {                                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t n = 0; n < N; n++) {                                                            \
        const T *restrict s4 = saved + n * 4 * H, *restrict dhr = dh_new + n * H, *restrict hr = h + n * H; \
        T *restrict di = dgi + n * 3 * H, *restrict dg = dgh + n * 3 * H, *restrict dz = dhz + n * H; \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < H; j++) {                                                        \
            T r = s4[j], z = s4[H + j], nn = s4[2 * H + j], hn = s4[3 * H + j], g = dhr[j];        \
            T dn = g * (1 - z) * (1 - nn * nn);                                                    \
            T dr = dn * hn * r * (1 - r);                                                          \
            T dzz = g * (hr[j] - nn) * z * (1 - z);                                                \
            di[j] = dr; di[H + j] = dzz; di[2 * H + j] = dn;                                       \
            dg[j] = dr; dg[H + j] = dzz; dg[2 * H + j] = dn * r;                                   \
            dz[j] = g * z;                                                                         \
        }                                                                                          \
    }                                                                                              \
}

FC_RNN(float, f32, expf, tanhf)
FC_RNN(double, f64, exp, tanh)
