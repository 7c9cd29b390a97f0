/* Row softmax of the attention forward (_attn.pyx): in place over one row of n scaled scores,
 * s = exp(s - max), returning the sum and the max.  Vectorised (max reduction; float32: the
 * inlined polynomial exp of _fast_exp.h fused with the sum, float64: libmvec's exp) and
 * compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time).
 * 8x8x256x64 float32 forward, one thread: libmvec's expf + the max pass were ~40% of the time,
 * the two GEMMs ~60%. */
#include <math.h>
#include <stddef.h>
#include "_fast_exp.h"
#include "_tr16.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the RNN cells' loops, not used here */
#include "_mm_f32.h" /* fc_mm_f32, fc_has_avx512: the unpacked AVX-512 GEMM (shared with the RNN cells) */
#pragma GCC diagnostic pop

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FA_CLONES
#endif

/* As in _rnn_impl.h: glibc's math.h declares the libmvec variants only under
 * -ffinite-math-only, which we do not use (NaN must propagate); they propagate NaN. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__)
#define FA_VEC __attribute__((__simd__("notinbranch")))
FA_VEC float expf(float);
FA_VEC double exp(double);
FA_VEC float logf(float);
FA_VEC double log(double);
#endif

#define FA_ROW(T, SFX, EXP)                                                                        \
FA_CLONES static T fa_row_##SFX(T *restrict s, int n, T *mx) {                                     \
    T m = -INFINITY;                                                                               \
    _Pragma("omp simd reduction(max:m)")                                                           \
    for (int i = 0; i < n; i++) m = s[i] > m ? s[i] : m;                                           \
    if (m == -INFINITY) m = 0; /* every score -inf: exp gives 0, den 0 */                          \
    T d = 0;                                                                                       \
    _Pragma("omp simd reduction(+:d)")                                                             \
    for (int i = 0; i < n; i++) {                                                                  \
        T e = EXP(s[i] - m);                                                                       \
        s[i] = e;                                                                                  \
        d += e;                                                                                    \
    }                                                                                              \
    *mx = m;                                                                                       \
    return d;                                                                                      \
}

/* backward: p = exp(s - c) in place (c = the row's lse; +inf gives 0), and ds = p (ds - delta) scale */
#define FA_BWD(T, SFX, EXP)                                                                        \
FA_CLONES static void fa_expsub_##SFX(T *restrict s, int n, T c) {                                 \
    _Pragma("omp simd")                                                                            \
    for (int i = 0; i < n; i++) s[i] = EXP(s[i] - c);                                              \
}                                                                                                  \
FA_CLONES static void fa_ds_##SFX(T *restrict ds, const T *restrict p, int n, T delta, T scale) {  \
    for (int i = 0; i < n; i++) ds[i] = p[i] * (ds[i] - delta) * scale;                            \
}

/* After the block's PV GEMM: lse = log(den) + max per row (den == 0: no key left, -inf;
 * den NaN: a NaN score, propagates) and o /= den (0 where den == 0), libmvec's vector log. */
#define FA_FINISH(T, SFX, LOG)                                                                     \
FA_CLONES static void fa_finish_##SFX(const T *restrict den, const T *restrict mx, T *restrict lse, \
                                     T *restrict o, int lb, int ev) {                              \
    _Pragma("omp simd")                                                                            \
    for (int i = 0; i < lb; i++) {                                                                 \
        T d = den[i], l = LOG(d > 0 ? d : 1) + mx[i];                                              \
        lse[i] = d > 0 ? l : (d == 0 ? (T)-INFINITY : d);                                          \
    }                                                                                              \
    for (int i = 0; i < lb; i++) {                                                                 \
        T d = den[i], inv = d > 0 ? 1 / d : (d == 0 ? 0 : d);                                      \
        T *restrict r = o + (ptrdiff_t)i * ev;                                                     \
        _Pragma("omp simd")                                                                        \
        for (int j = 0; j < ev; j++) r[j] *= inv;                                                  \
    }                                                                                              \
}

FA_ROW(float, f32, fc_expf_sm)
FA_ROW(double, f64, exp)
FA_BWD(float, f32, fc_expf_sm)
FA_BWD(double, f64, exp)
FA_FINISH(float, f32, logf)
FA_FINISH(double, f64, log)

/* float32 GEMMs without OpenBLAS's packing, on CPUs with AVX-512 (fc_mm_f32: 8x32 register
 * tiles, A broadcast through strides, B rows as vectors).  OpenBLAS packed both operands of
 * every GEMM on every block (the 256x256 probabilities included) and zeroed C first
 * (beta = 0): ~20% of the 8x8x256x64 forward.  Scores: kt = scale k^T (E x keys, so B's rows
 * run along the keys), s = q_blk kt; output: o = p v; the backward's transposed operands
 * (p^T, ds^T) are A read through strides, v^T one more transpose per batch element. */
#if defined(__GNUC__) && defined(__x86_64__)
/* dst[c * ld + j] = scale * src[j * ls + c] for a 16 x 16 block */
__attribute__((target("avx512f"))) static inline void fa_tr16(const float *src, ptrdiff_t ls, float *dst,
                                                              ptrdiff_t ld, __m512 sc) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_mul_ps(_mm512_loadu_ps(src + i * ls), sc);
    fc_tr16(r);
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ld, r[i]);
}
#endif

/* kt (e x n) = scale * k (n x e)^T; 16 x 16 register transposes (AVX-512: fa_kt_f32 runs only on the
 * fa_mm_f32 path), scalar edges */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx512f")))
#endif
static void fa_kt_f32(const float *restrict k, float *restrict kt, int n, int e, float scale) {
    int n16 = 0, e16 = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    n16 = n & ~15;
    e16 = e & ~15;
    __m512 sc = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < n16; j0 += 16)
        for (int c0 = 0; c0 < e16; c0 += 16)
            fa_tr16(k + (ptrdiff_t)j0 * e + c0, e, kt + (ptrdiff_t)c0 * n + j0, n, sc);
#endif
    for (int c = 0; c < e; c++) {
        float *restrict d = kt + (ptrdiff_t)c * n;
        for (int j = c < e16 ? n16 : 0; j < n; j++) d[j] = scale * k[(ptrdiff_t)j * e + c];
    }
}
/* c[r * ldc + n] (+= if acc) sum_k a[r * sr + k * sk] b[k * ldb + n], r < rows, n < ncols */
static void fa_mm_f32(const float *a, int sr, int sk, const float *b, int ldb, int kdim, float *c, int ldc,
                      int ncols, int rows, int acc) {
    fc_mm_f32(a, sr, sk, b, ldb, kdim, a, sr, sk, b, ldb, 0, c, ldc, ncols, 0, rows, acc);
}
static int fa_has_avx512(void) { return fc_has_avx512(); }
