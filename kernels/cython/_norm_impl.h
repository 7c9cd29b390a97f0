/* Layer-norm and dropout loops (restrict pointers, OpenMP over rows, simd inside).
 * Layer norm: x is (M, D) row-major, one row per normalized slice. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <omp.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_NCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_NCLONES
#endif

/* Forward: statistics in double, shifted by the row's first element, one read of
 * the row; then y = x * a + b with a = rstd*gamma, b = beta - mean*a fused. */
#define FC_LN_FWD(T, SFX)                                                                      \
FC_NCLONES static void fc_ln_fwd_##SFX(const T *restrict x, T *restrict y, const T *restrict gamma,   \
        const T *restrict beta, T *restrict mean, T *restrict rstd, ptrdiff_t M, ptrdiff_t D,  \
        double eps, int nt) {                                                                  \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
    for (ptrdiff_t r = 0; r < M; r++) {                                                        \
        const T *restrict p = x + r * D;                                                       \
        T *restrict q = y + r * D;                                                             \
        double shift = p[0], s1 = 0, s2 = 0;                                                   \
        _Pragma("omp simd reduction(+:s1,s2)")                                                 \
        for (ptrdiff_t i = 0; i < D; i++) { double d = (double)p[i] - shift; s1 += d; s2 += d * d; } \
        double m1 = s1 / D, var = s2 / D - m1 * m1;                                            \
        if (var < 0) var = 0;                                                                  \
        double mu = shift + m1, inv = 1.0 / sqrt(var + eps);                                   \
        if (isnan(s1)) { mu = s1; inv = s1; }                                                  \
        mean[r] = (T)mu; rstd[r] = (T)inv;                                                     \
        T tm = (T)mu, ti = (T)inv;                                                             \
        if (gamma && beta) {                                                                   \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti * gamma[i] + beta[i];    \
        } else if (gamma) {                                                                    \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti * gamma[i];              \
        } else if (beta) {                                                                     \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti + beta[i];               \
        } else {                                                                               \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti;                         \
        }                                                                                      \
    }                                                                                          \
}

/* Backward: per row, a = sum(dy*g), b = sum(dy*g*xhat) in double, then
 * dx = rstd*(dy*g - a/D - xhat*b/D).  dgamma/dbeta: each thread accumulates its
 * rows into its own slice acc[t*2*D .. ] (sum dy*xhat, sum dy); caller sums the slices. */
#define FC_LN_BWD(T, SFX)                                                                      \
FC_NCLONES static void fc_ln_bwd_##SFX(const T *restrict dy, const T *restrict x, const T *restrict gamma, \
        const T *restrict mean, const T *restrict rstd, T *restrict dx, double *restrict acc,  \
        ptrdiff_t M, ptrdiff_t D, int nt) {                                                    \
    _Pragma("omp parallel num_threads(nt)")                                                    \
    {                                                                                          \
        double *restrict dg = acc ? acc + (ptrdiff_t)omp_get_thread_num() * 2 * D : NULL;      \
        double *restrict db = dg ? dg + D : NULL;                                              \
        _Pragma("omp for schedule(static)")                                                    \
        for (ptrdiff_t r = 0; r < M; r++) {                                                    \
            const T *restrict g = dy + r * D;                                                  \
            const T *restrict p = x + r * D;                                                   \
            T *restrict q = dx + r * D;                                                        \
            T mu = mean[r], inv = rstd[r];                                                     \
            double a = 0, b = 0;                                                               \
            if (gamma) {                                                                       \
                _Pragma("omp simd reduction(+:a,b)")                                           \
                for (ptrdiff_t i = 0; i < D; i++) {                                            \
                    T gg = g[i] * gamma[i]; T xh = (p[i] - mu) * inv;                          \
                    a += gg; b += (double)gg * xh;                                             \
                    dg[i] += (double)g[i] * xh; db[i] += g[i];                                 \
                }                                                                              \
                T ka = (T)(a / D), kb = (T)(b / D);                                            \
                _Pragma("omp simd")                                                            \
                for (ptrdiff_t i = 0; i < D; i++)                                              \
                    q[i] = inv * (g[i] * gamma[i] - ka - (p[i] - mu) * inv * kb);              \
            } else {                                                                           \
                _Pragma("omp simd reduction(+:a,b)")                                           \
                for (ptrdiff_t i = 0; i < D; i++) {                                            \
                    T xh = (p[i] - mu) * inv;                                                  \
                    a += g[i]; b += (double)g[i] * xh;                                         \
                }                                                                              \
                T ka = (T)(a / D), kb = (T)(b / D);                                            \
                _Pragma("omp simd")                                                            \
                for (ptrdiff_t i = 0; i < D; i++)                                              \
                    q[i] = inv * (g[i] - ka - (p[i] - mu) * inv * kb);                         \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

/* Dropout: counter-based.  Element i keeps iff the top 53 bits of
 * mix64(key + (i+1) * golden) >= thresh, key = mix64(seed); a pure function of
 * (seed, i), so the mask is the same for any thread count and any schedule. */
static inline uint64_t fc_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define FC_DROPOUT(T, SFX)                                                                     \
FC_NCLONES static void fc_dropout_fwd_##SFX(const T *restrict x, T *restrict y, T *restrict mask,    \
        ptrdiff_t n, uint64_t seed, uint64_t thresh, T scale, int nt) {                        \
    const uint64_t key = fc_mix64(seed + 0x9e3779b97f4a7c15ULL);                               \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                        \
        uint64_t h = fc_mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL) >> 11;          \
        T m = h >= thresh ? scale : (T)0;                                                      \
        mask[i] = m; y[i] = x[i] * m;                                                          \
    }                                                                                          \
}

FC_LN_FWD(float, f32)
FC_LN_FWD(double, f64)
FC_LN_BWD(float, f32)
FC_LN_BWD(double, f64)
FC_DROPOUT(float, f32)
FC_DROPOUT(double, f64)
