/* Softmax cross-entropy rows (restrict pointers, OpenMP over rows, simd inside).
 * x, lp, d are (N, K) row-major; t holds int64 class indices (ignore: skipped). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "_fast_exp.h"

/* libmvec's SIMD expf/exp/logf (see _act_impl.h: math.h declares them only under
 * -ffinite-math-only, which we don't use because NaN must propagate). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(FC_NO_MVEC)
#define FC_LVEC __attribute__((__simd__("notinbranch")))
FC_LVEC float expf(float);
FC_LVEC double exp(double);
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_LCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_LCLONES
#endif

/* Forward: per row m = max, lp = (x - m) - log(sum exp(x - m)); the shifted row is stored
 * while summing and log(s) subtracted in a later pass, so -ffast-math cannot fold it into
 * x - (m + log s), which loses digits for huge logits.  A NaN anywhere in the row makes
 * the sum, hence the whole row, NaN (whatever the max reduction made of it), as in the
 * reference.  loss[i] = -lp[i, t[i]] in double, 0 for ignored rows. */
#define FC_CE_FWD(T, SFX, EXPF, LOGF)                                                          \
FC_LCLONES static void fc_ce_fwd_##SFX(const T *restrict x, const int64_t *restrict t, T *restrict lp, \
        double *restrict loss, ptrdiff_t N, ptrdiff_t K, int64_t ignore, int nt) {            \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
    for (ptrdiff_t i = 0; i < N; i++) {                                                        \
        const T *restrict p = x + i * K;                                                       \
        T *restrict q = lp + i * K;                                                            \
        T m = p[0], s = 0;                                                                     \
        _Pragma("omp simd reduction(max:m)")                                                   \
        for (ptrdiff_t k = 1; k < K; k++) m = p[k] > m ? p[k] : m;                             \
        _Pragma("omp simd reduction(+:s)")                                                     \
        for (ptrdiff_t k = 0; k < K; k++) { T v = p[k] - m; q[k] = v; s += EXPF(v); }          \
        T ls = LOGF(s);                                                                        \
        _Pragma("omp simd")                                                                    \
        for (ptrdiff_t k = 0; k < K; k++) q[k] -= ls;                                          \
        loss[i] = t[i] == ignore ? 0.0 : -(double)q[t[i]];                                     \
    }                                                                                          \
}

/* Backward: d[i] = g_i * (exp(lp[i]) - onehot(t[i])), zero rows where t == ignore;
 * g_i = g[i] (per_row) or g[0]. */
#define FC_CE_BWD(T, SFX, EXPF)                                                                \
FC_LCLONES static void fc_ce_bwd_##SFX(const T *restrict lp, const int64_t *restrict t, const T *restrict g, \
        int per_row, T *restrict d, ptrdiff_t N, ptrdiff_t K, int64_t ignore, int nt) {       \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
    for (ptrdiff_t i = 0; i < N; i++) {                                                        \
        const T *restrict p = lp + i * K;                                                      \
        T *restrict q = d + i * K;                                                             \
        if (t[i] == ignore) {                                                                  \
            for (ptrdiff_t k = 0; k < K; k++) q[k] = 0;                                        \
            continue;                                                                          \
        }                                                                                      \
        T gi = per_row ? g[i] : g[0];                                                          \
        _Pragma("omp simd")                                                                    \
        for (ptrdiff_t k = 0; k < K; k++) q[k] = gi * EXPF(p[k]);                              \
        q[t[i]] -= gi;                                                                         \
    }                                                                                          \
}

/* float32: _fast_exp.h's inlined polynomial exp (vectorised in the loop, no libmvec call per
 * 16 elements); float64 keeps libmvec's exp. */
FC_CE_FWD(float, f32, fc_expf_sm, logf)
FC_CE_FWD(double, f64, exp, log)
FC_CE_BWD(float, f32, fc_expf_sm)
FC_CE_BWD(double, f64, exp)
