/* Element-wise losses (mse, huber, bce_with_logits): forward and backward over flat arrays.
 *
 * Reductions are deterministic for any thread count: the n elements are cut into fixed blocks
 * of FC_RB, each block's loss is summed in double (simd lanes in a fixed order per ISA clone)
 * into bsum[b], and the caller adds the block sums in order.  OpenMP hands whole blocks to
 * threads, so which thread sums a block never changes its value.
 *
 * bce's weight / pos_weight arrive as buffers of period P (the broadcast pattern of the
 * trailing dims, tiled; see _loss_reg.pyx): element i uses w[i % P].  Each block is walked in
 * segments that do not wrap, so the inner loops are plain unit-stride simd loops. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "_fast_exp.h"

/* libmvec's SIMD exp/log1p (math.h declares them only under -ffinite-math-only; see
 * _act_impl.h).  log1p/log1pf entered libmvec in glibc 2.35. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(FC_NO_MVEC)
#define FC_BVEC __attribute__((__simd__("notinbranch")))
FC_BVEC double exp(double);
#if __GLIBC_PREREQ(2, 35)
FC_BVEC float log1pf(float);
FC_BVEC double log1p(double);
#endif
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_BCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_BCLONES
#endif
#define FC_AINL static inline __attribute__((always_inline))

/* log1p(e) for e in [0, 1] (bce's softplus tail; e = exp(-|x|)), inlined so the loop stays one
 * simd body: log1p(e) = 2 atanh(s), s = e / (2 + e) in [0, 1/3], the atanh series to s^13
 * (truncation < 2e-8 relative), so tiny e keep full relative accuracy (log(1 + e) would not).
 * NaN in, NaN out.  libmvec's log1pf made the float32 forward ~2x slower. */
static inline float fc_log1pf_01(float e) {
    float s = e / (2.0f + e), z = s * s;
    float p = 1.0f / 13;
    p = p * z + 1.0f / 11;
    p = p * z + 1.0f / 9;
    p = p * z + 1.0f / 7;
    p = p * z + 1.0f / 5;
    p = p * z + 1.0f / 3;
    p = p * z + 1.0f;
    return 2.0f * s * p;
}

#define FC_RB 4096 /* elements per reduction block */

#define FC_ABS(v) ((v) < 0 ? -(v) : (v)) /* type-generic; NaN stays NaN */
static inline ptrdiff_t fc_rmin(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

/* ---- mse / huber: d = p - q; forward writes out (reduction 'none') or block sums ---------- */
#define FC_PAIR_FWD(NAME, T, EXPR)                                                                 \
FC_BCLONES static void NAME(const T *restrict p, const T *restrict q, T delta, T hd,              \
        T *restrict out, double *restrict bsum, ptrdiff_t n, int nt) {                            \
    (void)delta; (void)hd;                                                                         \
    ptrdiff_t nb = (n + FC_RB - 1) / FC_RB;                                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t b = 0; b < nb; b++) {                                                           \
        ptrdiff_t lo = b * FC_RB, hi = fc_rmin(lo + FC_RB, n);                                     \
        if (out) {                                                                                 \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t i = lo; i < hi; i++) { T d = p[i] - q[i]; out[i] = (EXPR); }            \
        } else {                                                                                   \
            double s = 0;                                                                          \
            _Pragma("omp simd reduction(+:s)")                                                     \
            for (ptrdiff_t i = lo; i < hi; i++) { T d = p[i] - q[i]; s += (double)(EXPR); }        \
            bsum[b] = s;                                                                           \
        }                                                                                          \
    }                                                                                              \
}

/* backward: out = EXPR(d) with gi = g[i] (per_elem, reduction 'none') or g[0] */
#define FC_PAIR_BWD(NAME, T, EXPR)                                                                 \
FC_BCLONES static void NAME(const T *restrict p, const T *restrict q, const T *restrict g,        \
        int per_elem, T delta, T *restrict out, ptrdiff_t n, int nt) {                            \
    (void)delta;                                                                                   \
    ptrdiff_t nb = (n + FC_RB - 1) / FC_RB;                                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t b = 0; b < nb; b++) {                                                           \
        ptrdiff_t lo = b * FC_RB, hi = fc_rmin(lo + FC_RB, n);                                     \
        if (per_elem) {                                                                            \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t i = lo; i < hi; i++) { T d = p[i] - q[i]; T gi = g[i]; out[i] = (EXPR); } \
        } else {                                                                                   \
            const T gi = g[0];                                                                     \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t i = lo; i < hi; i++) { T d = p[i] - q[i]; out[i] = (EXPR); }            \
        }                                                                                          \
    }                                                                                              \
}

/* mse: d^2 / 2 d g;  huber: 0.5 d^2 if |d| < delta else delta (|d| - delta/2) / clip(d) g.
 * The comparisons are written so that a NaN d falls through to a NaN result. */
#define FC_MSE_L (d * d)
#define FC_MSE_D (((T)2 * d) * gi)
#define FC_HUB_L (FC_ABS(d) < delta ? (T)0.5 * d * d : delta * (FC_ABS(d) - hd))
#define FC_HUB_D ((d < -delta ? -delta : (d > delta ? delta : d)) * gi)

#define T float
FC_PAIR_FWD(fc_mse_fwd_f32, float, FC_MSE_L)
FC_PAIR_BWD(fc_mse_bwd_f32, float, FC_MSE_D)
FC_PAIR_FWD(fc_hub_fwd_f32, float, FC_HUB_L)
FC_PAIR_BWD(fc_hub_bwd_f32, float, FC_HUB_D)
#undef T
#define T double
FC_PAIR_FWD(fc_mse_fwd_f64, double, FC_MSE_L)
FC_PAIR_BWD(fc_mse_bwd_f64, double, FC_MSE_D)
FC_PAIR_FWD(fc_hub_fwd_f64, double, FC_HUB_L)
FC_PAIR_BWD(fc_hub_bwd_f64, double, FC_HUB_D)
#undef T

/* ---- bce_with_logits ------------------------------------------------------------------------
 * loss = w ((1 - t) x + c (log1p(exp(-|x|)) + max(-x, 0))),  c = 1 + (pw - 1) t  (PyTorch's form)
 * dx   = w ((1 - t) - c sigmoid(-x)) g,  sigmoid(-x) = e/(1+e) (x >= 0) or 1/(1+e), e = exp(-|x|)
 * exp's argument is <= 0 (float32: _fast_exp.h's inlined exp), so nothing overflows. */
#define FC_BCE_L(T, EXPF, LOG1PF)                                                                  \
    T xv = xs[j], tv = ts[j];                                                                      \
    T sp = LOG1PF(EXPF(-FC_ABS(xv))) + (xv < 0 ? -xv : (T)0);                                        \
    if (hpw) sp *= (T)1 + (pws[j] - (T)1) * tv;                                                    \
    T l = ((T)1 - tv) * xv + sp;                                                                   \
    if (hw) l *= ws[j];
#define FC_BCE_D(T, EXPF)                                                                          \
    T xv = xs[j], tv = ts[j];                                                                      \
    T e = EXPF(-FC_ABS(xv)), r = (T)1 / ((T)1 + e);                                                  \
    T sn = xv >= 0 ? e * r : r;                                                                    \
    T c = hpw ? (T)1 + (pws[j] - (T)1) * tv : (T)1;                                                \
    T dv = ((T)1 - tv) - c * sn;                                                                   \
    if (hw) dv *= ws[j];                                                                           \
    os[j] = dv * (pg ? gs[j] : g0);

/* one block [lo, hi) in non-wrapping segments of the weight period P */
#define FC_BCE_SEGS(T, BODY)                                                                          \
    ptrdiff_t lo = b * FC_RB, hi = fc_rmin(lo + FC_RB, n), k = lo % P;                             \
    for (ptrdiff_t i = lo; i < hi;) {                                                              \
        ptrdiff_t len = fc_rmin(P - k, hi - i);                                                    \
        const T *restrict xs = x + i, *restrict ts = t + i;                                        \
        const T *restrict ws = hw ? w + k : x, *restrict pws = hpw ? pw + k : x;                   \
        (void)ws; (void)pws;                                                                       \
        BODY                                                                                       \
        i += len; k = 0;                                                                           \
    }

#define FC_BCE(SFX, T, EXPF, LOG1PF)                                                               \
FC_AINL void fc_bce_fwd_blk_##SFX(const T *restrict x, const T *restrict t, const T *restrict w,  \
        const T *restrict pw, ptrdiff_t P, T *restrict out, double *restrict bsum, ptrdiff_t b,   \
        ptrdiff_t n, const int hw, const int hpw) {                                               \
    double s = 0;                                                                                  \
    FC_BCE_SEGS(T,                                                                                 \
        if (out) {                                                                                 \
            T *restrict os = out + i;                                                              \
            _Pragma("omp simd")                                                                    \
            for (ptrdiff_t j = 0; j < len; j++) { FC_BCE_L(T, EXPF, LOG1PF) os[j] = l; }           \
        } else {                                                                                   \
            _Pragma("omp simd reduction(+:s)")                                                     \
            for (ptrdiff_t j = 0; j < len; j++) { FC_BCE_L(T, EXPF, LOG1PF) s += (double)l; }      \
        })                                                                                         \
    if (!out) bsum[b] = s;                                                                         \
}                                                                                                  \
FC_BCLONES static void fc_bce_fwd_##SFX(const T *restrict x, const T *restrict t,                 \
        const T *restrict w, const T *restrict pw, ptrdiff_t P, T *restrict out,                  \
        double *restrict bsum, ptrdiff_t n, int nt) {                                             \
    const int hw = w != 0, hpw = pw != 0;                                                          \
    if (!hw && !hpw) P = FC_RB;                                                                    \
    ptrdiff_t nb = (n + FC_RB - 1) / FC_RB;                                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t b = 0; b < nb; b++) {                                                           \
        if (hw && hpw) fc_bce_fwd_blk_##SFX(x, t, w, pw, P, out, bsum, b, n, 1, 1);                \
        else if (hw) fc_bce_fwd_blk_##SFX(x, t, w, pw, P, out, bsum, b, n, 1, 0);                  \
        else if (hpw) fc_bce_fwd_blk_##SFX(x, t, w, pw, P, out, bsum, b, n, 0, 1);                 \
        else fc_bce_fwd_blk_##SFX(x, t, w, pw, P, out, bsum, b, n, 0, 0);                          \
    }                                                                                              \
}                                                                                                  \
FC_AINL void fc_bce_bwd_blk_##SFX(const T *restrict x, const T *restrict t, const T *restrict w,  \
        const T *restrict pw, ptrdiff_t P, const T *restrict g, T *restrict out, ptrdiff_t b,     \
        ptrdiff_t n, const int hw, const int hpw, const int pg) {                                 \
    const T g0 = g[0];                                                                             \
    FC_BCE_SEGS(T,                                                                                 \
        T *restrict os = out + i;                                                                  \
        const T *restrict gs = g + (pg ? i : 0);                                                   \
        (void)gs;                                                                                  \
        _Pragma("omp simd")                                                                        \
        for (ptrdiff_t j = 0; j < len; j++) { FC_BCE_D(T, EXPF) })                                 \
}                                                                                                  \
FC_BCLONES static void fc_bce_bwd_##SFX(const T *restrict x, const T *restrict t,                 \
        const T *restrict w, const T *restrict pw, ptrdiff_t P, const T *restrict g, int per_elem, \
        T *restrict out, ptrdiff_t n, int nt) {                                                   \
    const int hw = w != 0, hpw = pw != 0;                                                          \
    if (!hw && !hpw) P = FC_RB;                                                                    \
    ptrdiff_t nb = (n + FC_RB - 1) / FC_RB;                                                        \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                                   \
    for (ptrdiff_t b = 0; b < nb; b++) {                                                           \
        if (per_elem) {                                                                            \
            if (hw && hpw) fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 1, 1, 1);            \
            else if (hw) fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 1, 0, 1);              \
            else if (hpw) fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 0, 1, 1);             \
            else fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 0, 0, 1);                      \
        } else {                                                                                   \
            if (hw && hpw) fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 1, 1, 0);            \
            else if (hw) fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 1, 0, 0);              \
            else if (hpw) fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 0, 1, 0);             \
            else fc_bce_bwd_blk_##SFX(x, t, w, pw, P, g, out, b, n, 0, 0, 0);                      \
        }                                                                                          \
    }                                                                                              \
}

FC_BCE(f32, float, fc_expf_sm, fc_log1pf_01)
FC_BCE(f64, double, exp, log1p)
