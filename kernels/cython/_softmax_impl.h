/* softmax / log_softmax (forward and backward) and prelu loops for activation.pyx.
 *
 * softmax over an axis views the array as (outer, L, inner): L the axis length.
 *  - inner == 1 (the last axis): one task per row of L contiguous elements: a max pass, a fused
 *    exp + sum pass (float32: the inlined polynomial exp of _fast_exp.h, valid for x - max <= 0;
 *    float64: libmvec's exp), then a scale pass (log_softmax: the exp pass stores x - max, the
 *    last pass subtracts log(sum)).
 *  - inner > 1: one task per (outer, block of up to FS_BLK inner columns); the same three passes
 *    vectorised across the contiguous inner columns, the per-column max / sum kept on the stack.
 * The log_softmax forward stores x - max before subtracting log(sum): written as one expression,
 * -ffast-math may reassociate (x - m) - ls into x - (m + ls), which loses everything for huge
 * logits (x ~ 1e30).  No special case for an all -inf row or NaN: they give NaN, as the
 * reference does.
 * Backward: softmax dx = y (dy - sum(dy y)); log_softmax dx = dy - exp(y) sum(dy), with the fast
 * exp only when max(y) <= 80 (y is a log-probability, <= 0 up to rounding), else libm's.
 *
 * prelu views x as planes of S contiguous elements that share one weight (c = plane % C): the
 * (n, c) planes for weight (C,), chunks of the flat array for weight (1,).  The backward sums
 * each plane's dweight share in double into part[plane]; the caller adds them up in plane order,
 * so the result does not depend on the thread count. */
#ifndef FC_SOFTMAX_IMPL_H
#define FC_SOFTMAX_IMPL_H
#include <math.h>
#include <stddef.h>
#include "_fast_exp.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FS_CLONES
#endif

/* libmvec declarations, as in _act_impl.h (math.h has them only under -ffinite-math-only) */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(FC_NO_MVEC)
#define FS_VEC __attribute__((__simd__("notinbranch")))
FS_VEC float expf(float);
FS_VEC double exp(double);
FS_VEC float logf(float);
FS_VEC double log(double);
#endif

#define FS_BLK 512

/* columns per task for inner > 1: about 16K elements per block, a multiple of 16 */
static inline ptrdiff_t fs_block(ptrdiff_t L, ptrdiff_t inner) {
    ptrdiff_t bw = (16384 / (L > 0 ? L : 1)) & ~(ptrdiff_t)15;
    if (bw < 16) bw = 16;
    if (bw > FS_BLK) bw = FS_BLK;
    return bw < inner ? bw : inner;
}

#define FS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Row reductions with FS_W independent accumulators (4 AVX-512 vectors for float32): one
 * accumulator is a chain of dependent adds / maxes, 4 cycles per vector, which bound the max pass
 * and the backward's dot product on rows that sit in L1.  Fixed order: the same result on every
 * run and thread count. */
#define FS_W 64
#define FS_RED(T, SFX)                                                                             \
static inline __attribute__((always_inline)) T fs_rmax_##SFX(const T *restrict x, ptrdiff_t L) {                                  \
    T acc[FS_W], m = -INFINITY;                                                                    \
    ptrdiff_t i = 0;                                                                               \
    for (int j = 0; j < FS_W; j++) acc[j] = -INFINITY;                                             \
    for (; i + FS_W <= L; i += FS_W) {                                                             \
        _Pragma("omp simd")                                                                        \
        for (int j = 0; j < FS_W; j++) acc[j] = FS_MAX(x[i + j], acc[j]);                          \
    }                                                                                              \
    for (; i < L; i++) m = FS_MAX(x[i], m);                                                        \
    _Pragma("omp simd reduction(max:m)")                                                           \
    for (int j = 0; j < FS_W; j++) m = FS_MAX(acc[j], m);                                          \
    return m;                                                                                      \
}                                                                                                  \
/* sum(a * b), or sum(a) and max(b) when b_max is given */                                       \
static inline __attribute__((always_inline)) T fs_rdot_##SFX(const T *restrict a, const T *restrict b, ptrdiff_t L, T *b_max) {   \
    T acc[FS_W], d = 0;                                                                            \
    ptrdiff_t i = 0;                                                                               \
    for (int j = 0; j < FS_W; j++) acc[j] = 0;                                                     \
    if (b_max) {                                                                                   \
        T mx[FS_W], m = -INFINITY;                                                                 \
        for (int j = 0; j < FS_W; j++) mx[j] = -INFINITY;                                          \
        for (; i + FS_W <= L; i += FS_W) {                                                         \
            _Pragma("omp simd")                                                                    \
            for (int j = 0; j < FS_W; j++) { acc[j] += a[i + j]; mx[j] = FS_MAX(b[i + j], mx[j]); } \
        }                                                                                          \
        for (; i < L; i++) { d += a[i]; m = FS_MAX(b[i], m); }                                     \
        _Pragma("omp simd reduction(max:m)")                                                       \
        for (int j = 0; j < FS_W; j++) m = FS_MAX(mx[j], m);                                       \
        *b_max = m;                                                                                \
    } else {                                                                                       \
        for (; i + FS_W <= L; i += FS_W) {                                                         \
            _Pragma("omp simd")                                                                    \
            for (int j = 0; j < FS_W; j++) acc[j] += a[i + j] * b[i + j];                          \
        }                                                                                          \
        for (; i < L; i++) d += a[i] * b[i];                                                       \
    }                                                                                              \
    _Pragma("omp simd reduction(+:d)")                                                             \
    for (int j = 0; j < FS_W; j++) d += acc[j];                                                    \
    return d;                                                                                      \
}
FS_RED(float, f32)
FS_RED(double, f64)

#define FS_DEF(T, SFX, EXP, EXPX, LOG)                                                             \
FS_CLONES static void fs_fwd_row_##SFX(const T *restrict x, T *restrict y, ptrdiff_t L, int lg) {  \
    T m = fs_rmax_##SFX(x, L), s = 0;                                                              \
    if (lg) {                                                                                      \
        _Pragma("omp simd reduction(+:s)")                                                         \
        for (ptrdiff_t i = 0; i < L; i++) { T d = x[i] - m; y[i] = d; s += EXP(d); }               \
        T ls = LOG(s);                                                                             \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t i = 0; i < L; i++) y[i] -= ls;                                              \
    } else {                                                                                       \
        _Pragma("omp simd reduction(+:s)")                                                         \
        for (ptrdiff_t i = 0; i < L; i++) { T e = EXP(x[i] - m); y[i] = e; s += e; }               \
        T r = 1 / s;                                                                               \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t i = 0; i < L; i++) y[i] *= r;                                               \
    }                                                                                              \
}                                                                                                  \
FS_CLONES static void fs_fwd_blk_##SFX(const T *restrict x, T *restrict y, ptrdiff_t L,           \
                                       ptrdiff_t inner, ptrdiff_t nb, int lg) {                    \
    T m[FS_BLK], s[FS_BLK];                                                                        \
    for (ptrdiff_t j = 0; j < nb; j++) { m[j] = -INFINITY; s[j] = 0; }                             \
    for (ptrdiff_t l = 0; l < L; l++) {                                                            \
        const T *restrict r = x + l * inner;                                                       \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < nb; j++) m[j] = FS_MAX(r[j], m[j]);                              \
    }                                                                                              \
    if (lg) {                                                                                      \
        for (ptrdiff_t l = 0; l < L; l++) {                                                        \
            const T *restrict r = x + l * inner;                                                   \
            T *restrict o = y + l * inner;                                                         \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) { T d = r[j] - m[j]; o[j] = d; s[j] += EXP(d); }    \
        }                                                                                          \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < nb; j++) s[j] = LOG(s[j]);                                       \
        for (ptrdiff_t l = 0; l < L; l++) {                                                        \
            T *restrict o = y + l * inner;                                                         \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) o[j] -= s[j];                                       \
        }                                                                                          \
    } else {                                                                                       \
        for (ptrdiff_t l = 0; l < L; l++) {                                                        \
            const T *restrict r = x + l * inner;                                                   \
            T *restrict o = y + l * inner;                                                         \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) { T e = EXP(r[j] - m[j]); o[j] = e; s[j] += e; }    \
        }                                                                                          \
        for (ptrdiff_t j = 0; j < nb; j++) s[j] = 1 / s[j];                                        \
        for (ptrdiff_t l = 0; l < L; l++) {                                                        \
            T *restrict o = y + l * inner;                                                         \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) o[j] *= s[j];                                       \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FS_CLONES static void fs_bwd_row_##SFX(const T *restrict dy, const T *restrict y, T *restrict dx,  \
                                       ptrdiff_t L, int lg) {                                      \
    if (!lg) {                                                                                     \
        T d = fs_rdot_##SFX(dy, y, L, NULL);                                                       \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t i = 0; i < L; i++) dx[i] = y[i] * (dy[i] - d);                              \
        return;                                                                                    \
    }                                                                                              \
    T my, d = fs_rdot_##SFX(dy, y, L, &my);                                                        \
    if (my <= 80) {                                                                                \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t i = 0; i < L; i++) dx[i] = dy[i] - EXP(y[i]) * d;                           \
    } else {                                                                                       \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t i = 0; i < L; i++) dx[i] = dy[i] - EXPX(y[i]) * d;                          \
    }                                                                                              \
}                                                                                                  \
FS_CLONES static void fs_bwd_blk_##SFX(const T *restrict dy, const T *restrict y, T *restrict dx,  \
                                       ptrdiff_t L, ptrdiff_t inner, ptrdiff_t nb, int lg) {       \
    T d[FS_BLK];                                                                                   \
    T my = -INFINITY;                                                                              \
    for (ptrdiff_t j = 0; j < nb; j++) d[j] = 0;                                                   \
    for (ptrdiff_t l = 0; l < L; l++) {                                                            \
        const T *restrict g = dy + l * inner, *restrict u = y + l * inner;                         \
        if (lg) {                                                                                  \
            _Pragma("omp simd reduction(max:my)")                                                  \
            for (ptrdiff_t j = 0; j < nb; j++) { d[j] += g[j]; my = FS_MAX(u[j], my); }            \
        } else {                                                                                   \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) d[j] += g[j] * u[j];                                \
        }                                                                                          \
    }                                                                                              \
    for (ptrdiff_t l = 0; l < L; l++) {                                                            \
        const T *restrict g = dy + l * inner, *restrict u = y + l * inner;                         \
        T *restrict o = dx + l * inner;                                                            \
        if (!lg) {                                                                                 \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) o[j] = u[j] * (g[j] - d[j]);                        \
        } else if (my <= 80) {                                                                     \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) o[j] = g[j] - EXP(u[j]) * d[j];                     \
        } else {                                                                                   \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < nb; j++) o[j] = g[j] - EXPX(u[j]) * d[j];                    \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* drivers: rows (inner == 1) or (outer, column block) tasks over nt OpenMP threads */            \
static void fs_softmax_fwd_##SFX(const T *x, T *y, ptrdiff_t outer, ptrdiff_t L, ptrdiff_t inner,  \
                                 int lg, int nt) {                                                 \
    if (inner == 1) {                                                                              \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
        for (ptrdiff_t o = 0; o < outer; o++) fs_fwd_row_##SFX(x + o * L, y + o * L, L, lg);       \
        return;                                                                                    \
    }                                                                                              \
    ptrdiff_t bw = fs_block(L, inner), nb = (inner + bw - 1) / bw;                                 \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t t = 0; t < outer * nb; t++) {                                                   \
        ptrdiff_t j0 = (t % nb) * bw, off = (t / nb) * L * inner + j0;                             \
        fs_fwd_blk_##SFX(x + off, y + off, L, inner, inner - j0 < bw ? inner - j0 : bw, lg);       \
    }                                                                                              \
}                                                                                                  \
static void fs_softmax_bwd_##SFX(const T *dy, const T *y, T *dx, ptrdiff_t outer, ptrdiff_t L,     \
                                 ptrdiff_t inner, int lg, int nt) {                                \
    if (inner == 1) {                                                                              \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
        for (ptrdiff_t o = 0; o < outer; o++)                                                      \
            fs_bwd_row_##SFX(dy + o * L, y + o * L, dx + o * L, L, lg);                            \
        return;                                                                                    \
    }                                                                                              \
    ptrdiff_t bw = fs_block(L, inner), nb = (inner + bw - 1) / bw;                                 \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t t = 0; t < outer * nb; t++) {                                                   \
        ptrdiff_t j0 = (t % nb) * bw, off = (t / nb) * L * inner + j0;                             \
        fs_bwd_blk_##SFX(dy + off, y + off, dx + off, L, inner,                                    \
                         inner - j0 < bw ? inner - j0 : bw, lg);                                   \
    }                                                                                              \
}                                                                                                  \
/* prelu: planes of S elements, weight w[plane % C]; n elements in all */                         \
FS_CLONES static void fs_prelu_fwd_##SFX(const T *restrict x, const T *restrict w, T *restrict y,  \
                                         ptrdiff_t n, ptrdiff_t S, ptrdiff_t C, int nt) {          \
    ptrdiff_t P = (n + S - 1) / S;                                                                 \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t p = 0; p < P; p++) {                                                            \
        T a = w[p % C];                                                                            \
        ptrdiff_t lo = p * S, hi = n - lo < S ? n : lo + S;                                        \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t i = lo; i < hi; i++) { T v = x[i]; y[i] = v > 0 ? v : v * a; }              \
    }                                                                                              \
}                                                                                                  \
FS_CLONES static void fs_prelu_bwd_##SFX(const T *restrict dy, const T *restrict x,                \
        const T *restrict w, T *restrict dx, double *restrict part, ptrdiff_t n, ptrdiff_t S,      \
        ptrdiff_t C, int nt) {                                                                     \
    ptrdiff_t P = (n + S - 1) / S;                                                                 \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t p = 0; p < P; p++) {                                                            \
        T a = w[p % C];                                                                            \
        double acc = 0;                                                                            \
        ptrdiff_t lo = p * S, hi = n - lo < S ? n : lo + S;                                        \
        _Pragma("omp simd reduction(+:acc)")                                                       \
        for (ptrdiff_t i = lo; i < hi; i++) {                                                      \
            T v = x[i], g = dy[i];                                                                 \
            dx[i] = v > 0 ? g : g * a;                                                             \
            acc += v > 0 ? 0.0 : (double)(v * g);                                                  \
        }                                                                                          \
        part[p] = acc;                                                                             \
    }                                                                                              \
}

FS_DEF(float, f32, fc_expf_sm, expf, logf)
FS_DEF(double, f64, exp, exp, log)

#endif
