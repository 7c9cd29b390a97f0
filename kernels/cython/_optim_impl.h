/* Optimizer inner loops: restrict pointers + omp parallel for simd so the
 * compiler vectorizes them (Cython's prange lastprivate temporaries defeat it). */
#include <math.h>
#include <stddef.h>

#define FC_DEFINE_ADAM(T, NAME, SQRT)                                                        \
static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v,           \
                 ptrdiff_t n, T decay, T l2, T b1, T b2, T eps, T step_size,                  \
                 T inv_bc2_sqrt, int nt) {                                                    \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T pi = p[i] * decay;                                                                  \
        T d = g[i] + l2 * pi;                                                                 \
        T mi = b1 * m[i] + (1 - b1) * d;                                                      \
        T vi = b2 * v[i] + (1 - b2) * d * d;                                                  \
        m[i] = mi;                                                                            \
        v[i] = vi;                                                                            \
        p[i] = pi - step_size * mi / (SQRT(vi) * inv_bc2_sqrt + eps);                         \
    }                                                                                         \
}

#define FC_DEFINE_SGD(T, NAME)                                                               \
static void NAME(T *restrict p, const T *restrict g, T *restrict buf, ptrdiff_t n, T lr,     \
                 T momentum, T damp, T wd, int nesterov, int first, int has_buf, int nt) {    \
    if (!has_buf) {                                                                           \
        _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                    \
        for (ptrdiff_t i = 0; i < n; i++) p[i] = p[i] - lr * (g[i] + wd * p[i]);             \
        return;                                                                               \
    }                                                                                         \
    T keep = first ? 0 : momentum, mix = first ? 1 : 1 - damp, look = nesterov ? momentum : 0; \
    T use_buf = nesterov ? 0 : 1;                                                             \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T d = g[i] + wd * p[i];                                                               \
        T b = keep * buf[i] + mix * d;                                                        \
        buf[i] = b;                                                                           \
        p[i] = p[i] - lr * ((1 - use_buf) * (d + look * b) + use_buf * b);                    \
    }                                                                                         \
}

#define FC_DEFINE_ADAGRAD(T, NAME, SQRT)                                                     \
static void NAME(T *restrict p, const T *restrict g, T *restrict s, ptrdiff_t n, T clr,      \
                 T wd, T eps, int nt) {                                                       \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T d = g[i] + wd * p[i];                                                               \
        T acc = s[i] + d * d;                                                                 \
        s[i] = acc;                                                                           \
        p[i] = p[i] - clr * d / (SQRT(acc) + eps);                                            \
    }                                                                                         \
}

FC_DEFINE_ADAM(float, fc_adam_f32, sqrtf)
FC_DEFINE_ADAM(double, fc_adam_f64, sqrt)
FC_DEFINE_SGD(float, fc_sgd_f32)
FC_DEFINE_SGD(double, fc_sgd_f64)
FC_DEFINE_ADAGRAD(float, fc_adagrad_f32, sqrtf)
FC_DEFINE_ADAGRAD(double, fc_adagrad_f64, sqrt)
