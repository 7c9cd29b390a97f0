/* Row softmax of the attention forward (_attn.pyx): in place over one row of n scaled scores,
 * s = exp(s - max), returning the sum and the max.  Vectorised (max reduction; float32: the
 * inlined polynomial exp of _fast_exp.h fused with the sum, float64: libmvec's exp) and
 * compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time).
 * 8x8x256x64 float32 forward, one thread: libmvec's expf + the max pass were ~40% of the time,
 * the two GEMMs ~60%. */
#include <math.h>
#include <stddef.h>
#include "_fast_exp.h"

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

FA_ROW(float, f32, fc_expf_sm)
FA_ROW(double, f64, exp)
FA_BWD(float, f32, fc_expf_sm)
FA_BWD(double, f64, exp)
