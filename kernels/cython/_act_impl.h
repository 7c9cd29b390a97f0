/* Element-wise activation loops (restrict pointers, omp parallel for simd).
 * One macro per shape of loop; each op is one line of math. */
#include <math.h>
#include <stddef.h>

/* glibc's libmvec has SIMD expf/tanhf/erff (and double versions); math.h declares them only
 * under -ffinite-math-only, which we don't use (NaN must propagate), so declare them here, as
 * _rnn_impl.h does.  Without this every element was a scalar libm call: tanh on 64x6x28x28
 * took 6.4 ms against NumPy's 0.11 ms. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(FC_NO_MVEC)
#define FC_AVEC __attribute__((__simd__("notinbranch")))
FC_AVEC float expf(float);
FC_AVEC float tanhf(float);
FC_AVEC float erff(float);
FC_AVEC double exp(double);
FC_AVEC double tanh(double);
FC_AVEC double erf(double);
#endif

/* Portable build, fast on new CPUs: gcc compiles each hot loop for AVX-512,
 * AVX2 and baseline x86-64 and picks one at load time (ifunc). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_CLONES
#endif

#define FC_UNARY(NAME, T, EXPR)                                                            \
FC_CLONES static void NAME(const T *restrict x, T *restrict y, ptrdiff_t n, T a, int nt) {           \
    (void)a;                                                                                \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                      \
    for (ptrdiff_t i = 0; i < n; i++) { T v = x[i]; y[i] = (EXPR); }                       \
}
#define FC_BINARY(NAME, T, EXPR)                                                           \
FC_CLONES static void NAME(const T *restrict dy, const T *restrict u, T *restrict dx, ptrdiff_t n,    \
                 T a, int nt) {                                                             \
    (void)a;                                                                                \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                      \
    for (ptrdiff_t i = 0; i < n; i++) { T g = dy[i]; T v = u[i]; dx[i] = (EXPR); }         \
}

#define FC_SQRT1_2 0.70710678118654752440
#define FC_INV_SQRT_2PI 0.39894228040143267794
#define FC_SQRT_2_PI 0.79788456080286535588

#define FC_ACTS(T, SFX, EXP, TANH, ERF)                                                          \
FC_UNARY(fc_relu_fwd_##SFX, T, v < 0 ? 0 : v)                                                     \
FC_BINARY(fc_relu_bwd_##SFX, T, v <= 0 ? 0 : g)                                                   \
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
