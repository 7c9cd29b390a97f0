/* Element-wise activation loops (restrict pointers, OpenMP threads over 64-byte-aligned shares of
 * the output, simd inside).
 * One macro per shape of loop; each op is one line of math. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* Each thread's share [*lo, *hi) of n elements, cut where the output y is 64-byte aligned, so that
 * every full-width AVX-512 store fills one cache line instead of straddling two.  NumPy's large
 * arrays start 16 bytes past a line (glibc malloc), and the split stores cost the relu backward at
 * copy bandwidth (8x64x112x112) ~5% against PyTorch, whose buffers are 64-byte aligned.  Thread 0
 * also takes the head before the first aligned element. */
static inline void fc_share(const void *y, size_t itemsize, ptrdiff_t n, ptrdiff_t *lo, ptrdiff_t *hi) {
#ifdef _OPENMP
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    int t = 0, nt = 1;
#endif
    ptrdiff_t v = (ptrdiff_t)(64 / itemsize);
    ptrdiff_t head = ((uintptr_t)y % itemsize) ? 0 : (ptrdiff_t)(((uintptr_t)0 - (uintptr_t)y) % 64 / itemsize);
    if (head > n) head = n;
    ptrdiff_t nb = (n - head + v - 1) / v;  /* 64-byte blocks after the head */
    ptrdiff_t b0 = nb * t / nt, b1 = nb * (t + 1) / nt;
    *lo = t == 0 ? 0 : head + b0 * v;
    *hi = head + b1 * v < n ? head + b1 * v : n;
}

#define FC_UNARY(NAME, T, EXPR)                                                            \
FC_CLONES static void NAME(const T *restrict x, T *restrict y, ptrdiff_t n, T a, int nt) {           \
    (void)a;                                                                                \
    _Pragma("omp parallel num_threads(nt)")                                                 \
    {                                                                                       \
        ptrdiff_t lo, hi;                                                                   \
        fc_share(y, sizeof(T), n, &lo, &hi);                                                \
        _Pragma("omp simd")                                                                 \
        for (ptrdiff_t i = lo; i < hi; i++) { T v = x[i]; y[i] = (EXPR); }                  \
    }                                                                                       \
}
#define FC_BINARY(NAME, T, EXPR)                                                           \
FC_CLONES static void NAME(const T *restrict dy, const T *restrict u, T *restrict dx, ptrdiff_t n,    \
                 T a, int nt) {                                                             \
    (void)a;                                                                                \
    _Pragma("omp parallel num_threads(nt)")                                                 \
    {                                                                                       \
        ptrdiff_t lo, hi;                                                                   \
        fc_share(dx, sizeof(T), n, &lo, &hi);                                               \
        _Pragma("omp simd")                                                                 \
        for (ptrdiff_t i = lo; i < hi; i++) { T g = dy[i]; T v = u[i]; dx[i] = (EXPR); }    \
    }                                                                                       \
}

#define FC_SQRT1_2 0.70710678118654752440
#define FC_INV_SQRT_2PI 0.39894228040143267794
#define FC_SQRT_2_PI 0.79788456080286535588

#define FC_ACTS(T, SFX, EXP, TANH, ERF)                                                          \
FC_UNARY(fc_relu_fwd_##SFX##_t, T, v < 0 ? 0 : v)                                                   \
FC_BINARY(fc_relu_bwd_##SFX##_t, T, v <= 0 ? 0 : g)                                                 \
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

/* relu over arrays larger than the last-level cache: stream the output past the caches with
 * non-temporal stores.  A normal store first reads the line it writes (read-for-ownership), so
 * the backward moved 4 bytes per 3 it needs, the forward 3 per 2.  Used when the op touches
 * (inputs + output) at least FC_NT_MIN_BYTES, half of a 32 MB L3 that other data shares: below
 * that the arrays may still be in cache (and the output is read next by the following layer).
 * Measured, 1 thread, interleaved with PyTorch: backward 8x64x112x112 (77 MB) 0.91 -> 1.17x,
 * 8x64x56x56 (19 MB) 1.14 -> 1.59x; forward 8x64x56x56 (13 MB) was slower streamed (2 threads
 * 1.77 -> 1.19x), so it keeps normal stores.  Selected at run time (no -march needed).  One loop shape for both: out[i] from a[i] (forward: x; backward:
 * dy) and b[i] (backward: y). */
#define FC_NT_MIN_BYTES ((size_t)16 << 20)
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#include <immintrin.h>
#define FC_HAVE_NT 1
#define FC_NT(NAME, TGT, W, SCALAR, BODY)                                                         \
__attribute__((target(TGT))) static void NAME(const float *restrict a, const float *restrict b,    \
        float *restrict out, ptrdiff_t n, int nt) {                                                \
    (void)b;                                                                                       \
    _Pragma("omp parallel num_threads(nt)")                                                        \
    {                                                                                              \
        ptrdiff_t lo, hi, i;                                                                       \
        fc_share(out, sizeof(float), n, &lo, &hi);                                                 \
        for (i = lo; i < hi && ((uintptr_t)(out + i) & 63); i++) out[i] = (SCALAR);                \
        for (; i + W <= hi; i += W) { BODY }                                                       \
        for (; i < hi; i++) out[i] = (SCALAR);                                                     \
        _mm_sfence();                                                                              \
    }                                                                                              \
}
/* backward, _CMP_NLE_UQ: true for y > 0 and for NaN y, which keeps its gradient (y <= 0 ? 0 : dy) */
FC_NT(fc_relu_bwd_nt512, "avx512f", 16, b[i] <= 0 ? 0 : a[i],
    __mmask16 k = _mm512_cmp_ps_mask(_mm512_loadu_ps(b + i), _mm512_setzero_ps(), _CMP_NLE_UQ);
    _mm512_stream_ps(out + i, _mm512_maskz_loadu_ps(k, a + i));)
FC_NT(fc_relu_bwd_nt256, "avx2", 8, b[i] <= 0 ? 0 : a[i],
    __m256 k = _mm256_cmp_ps(_mm256_loadu_ps(b + i), _mm256_setzero_ps(), _CMP_NLE_UQ);
    _mm256_stream_ps(out + i, _mm256_and_ps(k, _mm256_loadu_ps(a + i)));)
/* forward, max(0, x) = 0 > x ? 0 : x: NaN and -0.0 pass through (as x < 0 ? 0 : x) */
FC_NT(fc_relu_fwd_nt512, "avx512f", 16, a[i] < 0 ? 0 : a[i],
    _mm512_stream_ps(out + i, _mm512_max_ps(_mm512_setzero_ps(), _mm512_loadu_ps(a + i)));)
FC_NT(fc_relu_fwd_nt256, "avx2", 8, a[i] < 0 ? 0 : a[i],
    _mm256_stream_ps(out + i, _mm256_max_ps(_mm256_setzero_ps(), _mm256_loadu_ps(a + i)));)
#define FC_PICK_NT(N512, N256, A, B, OUT, N, NT, ARRAYS)                                         \
    if ((size_t)(N) * sizeof(float) * (ARRAYS) >= FC_NT_MIN_BYTES && ((uintptr_t)(OUT) & 3) == 0) {\
        if (__builtin_cpu_supports("avx512f")) { N512(A, B, OUT, N, NT); return; }                 \
        if (__builtin_cpu_supports("avx2")) { N256(A, B, OUT, N, NT); return; }                    \
    }
#else
#define FC_PICK_NT(N512, N256, A, B, OUT, N, NT, ARRAYS)
#endif

static void fc_relu_bwd_f32(const float *dy, const float *u, float *dx, ptrdiff_t n, float a, int nt) {
    FC_PICK_NT(fc_relu_bwd_nt512, fc_relu_bwd_nt256, dy, u, dx, n, nt, 3)
    fc_relu_bwd_f32_t(dy, u, dx, n, a, nt);
}
static void fc_relu_fwd_f32(const float *x, float *y, ptrdiff_t n, float a, int nt) {
    FC_PICK_NT(fc_relu_fwd_nt512, fc_relu_fwd_nt256, x, x, y, n, nt, 2)
    fc_relu_fwd_f32_t(x, y, n, a, nt);
}
static void fc_relu_bwd_f64(const double *dy, const double *u, double *dx, ptrdiff_t n, double a, int nt) {
    fc_relu_bwd_f64_t(dy, u, dx, n, a, nt);
}
static void fc_relu_fwd_f64(const double *x, double *y, ptrdiff_t n, double a, int nt) {
    fc_relu_fwd_f64_t(x, y, n, a, nt);
}
