/* Element-wise activation loops (restrict pointers, omp parallel for simd).
 * One macro per shape of loop; each op is one line of math. */
#include <math.h>
#include <stddef.h>

#define FC_UNARY(NAME, T, EXPR)                                                            \
static void NAME(const T *restrict x, T *restrict y, ptrdiff_t n, T a, int nt) {           \
    (void)a;                                                                                \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                      \
    for (ptrdiff_t i = 0; i < n; i++) { T v = x[i]; y[i] = (EXPR); }                       \
}
#define FC_BINARY(NAME, T, EXPR)                                                           \
static void NAME(const T *restrict dy, const T *restrict u, T *restrict dx, ptrdiff_t n,    \
                 T a, int nt) {                                                             \
    (void)a;                                                                                \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                      \
    for (ptrdiff_t i = 0; i < n; i++) { T g = dy[i]; T v = u[i]; dx[i] = (EXPR); }         \
}

#define FC_SQRT1_2 0.70710678118654752440
#define FC_INV_SQRT_2PI 0.39894228040143267794
#define FC_SQRT_2_PI 0.79788456080286535588

#define FC_ACTS(T, SFX, EXP, TANH, ERF)                                                          \
FC_UNARY(fc_leaky_fwd_##SFX, T, v < 0 ? v * a : v)                                                \
FC_BINARY(fc_leaky_bwd_##SFX, T, v > 0 ? g : g * a)                                               \
FC_UNARY(fc_sigmoid_fwd_##SFX, T, v >= 0 ? 1 / (1 + EXP(-v)) : EXP(v) / (1 + EXP(v)))            \
FC_BINARY(fc_sigmoid_bwd_##SFX, T, g * v * (1 - v))                                               \
FC_UNARY(fc_tanh_fwd_##SFX, T, TANH(v))                                                           \
FC_BINARY(fc_tanh_bwd_##SFX, T, g * (1 - v * v))                                                  \
FC_UNARY(fc_gelu_fwd_##SFX, T, (T)0.5 * v * (1 + ERF(v * (T)FC_SQRT1_2)))                        \
FC_BINARY(fc_gelu_bwd_##SFX, T,                                                                   \
    g * ((T)0.5 * (1 + ERF(v * (T)FC_SQRT1_2)) + v * (T)FC_INV_SQRT_2PI * EXP((T)-0.5 * v * v)))  \
FC_UNARY(fc_gelu_tanh_fwd_##SFX, T,                                                               \
    (T)0.5 * v * (1 + TANH((T)FC_SQRT_2_PI * (v + (T)0.044715 * v * v * v))))                     \
FC_BINARY(fc_gelu_tanh_bwd_##SFX, T, g * fc_gelu_tanh_grad_##SFX(v))

static inline float fc_gelu_tanh_grad_f32(float v) {
    float k = (float)FC_SQRT_2_PI, u = k * (v + 0.044715f * v * v * v), t = tanhf(u);
    return 0.5f * (1 + t) + 0.5f * v * (1 - t * t) * k * (1 + 3 * 0.044715f * v * v);
}
static inline double fc_gelu_tanh_grad_f64(double v) {
    double k = FC_SQRT_2_PI, u = k * (v + 0.044715 * v * v * v), t = tanh(u);
    return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
}

FC_ACTS(float, f32, expf, tanhf, erff)
FC_ACTS(double, f64, exp, tanh, erf)

/* Row-wise softmax / log-softmax over the last axis, one row per iteration. */
#define FC_SOFTMAX(T, SFX, EXP, LOG)                                                          \
static void fc_softmax_##SFX(const T *restrict x, T *restrict y, ptrdiff_t rows, ptrdiff_t k,  \
                             int logspace, int nt) {                                           \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                              \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
        const T *xr = x + r * k; T *yr = y + r * k;                                           \
        T m = xr[0];                                                                          \
        for (ptrdiff_t j = 1; j < k; j++) m = (xr[j] > m || xr[j] != xr[j]) ? xr[j] : m;      \
        if (m != m) { for (ptrdiff_t j = 0; j < k; j++) yr[j] = m; continue; }               \
        if (isinf(m) && m < 0) m = 0; /* all -inf row: let exp give NaN/0 like the reference */ \
        T s = 0;                                                                              \
        _Pragma("omp simd reduction(+:s)")                                                    \
        for (ptrdiff_t j = 0; j < k; j++) { T e = EXP(xr[j] - m); s += e; if (!logspace) yr[j] = e; } \
        if (logspace) { T ls = m + LOG(s);                                                    \
            _Pragma("omp simd")                                                               \
            for (ptrdiff_t j = 0; j < k; j++) yr[j] = xr[j] - ls; }                          \
        else { T inv = 1 / s;                                                                 \
            _Pragma("omp simd")                                                               \
            for (ptrdiff_t j = 0; j < k; j++) yr[j] *= inv; }                                 \
    }                                                                                         \
}                                                                                             \
static void fc_softmax_bwd_##SFX(const T *restrict dy, const T *restrict y, T *restrict dx,   \
                                 ptrdiff_t rows, ptrdiff_t k, int logspace, int nt) {          \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                              \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                   \
        const T *g = dy + r * k, *yr = y + r * k; T *d = dx + r * k; T s = 0;                 \
        if (logspace) {                                                                       \
            _Pragma("omp simd reduction(+:s)")                                                \
            for (ptrdiff_t j = 0; j < k; j++) s += g[j];                                      \
            _Pragma("omp simd")                                                               \
            for (ptrdiff_t j = 0; j < k; j++) d[j] = g[j] - EXP(yr[j]) * s;                   \
        } else {                                                                              \
            _Pragma("omp simd reduction(+:s)")                                                \
            for (ptrdiff_t j = 0; j < k; j++) s += g[j] * yr[j];                              \
            _Pragma("omp simd")                                                               \
            for (ptrdiff_t j = 0; j < k; j++) d[j] = yr[j] * (g[j] - s);                      \
        }                                                                                     \
    }                                                                                         \
}
FC_SOFTMAX(float, f32, expf, logf)
FC_SOFTMAX(double, f64, exp, log)
