/* Small-channel (LeNet-sized) conv2d kernels for _conv_direct.pyx: stride 1, dilation 1,
 * groups 1, any padding, R * S <= FC_SM_MAXT.
 *
 * Flattened rows: image n's input is copied into a zero-padded buffer of Hb = P + R - 1
 * rows of Wb = Q + S - 1 columns (buffer (i, j) = input (i - ph, j - pw)), one plane of L
 * elements per channel.  Output (p, q) is then "extended" position e = p * Wb + q, and tap
 * (r, s) of it reads buffer element e + r * Wb + s: one contiguous unaligned vector load
 * for VW consecutive positions (the S - 1 wrap-around columns per row are computed and
 * dropped: Wb / Q of the work).  Positions run over [0, J), J = P * Wb rounded up to 16.
 *   forward: a block of KB filters x JB vectors of positions in registers, summing all
 *            C * R * S taps (weights pre-packed per block, zero for k >= K);
 *   backward-weight: dy copied the same way (zeros in the wrap-around columns and past
 *            P * Wb), dw[k, c, r, s] = sum over e of dyb[k][e] * xb[c][e + r * Wb + s] with
 *            KB filters x TB taps of vector accumulators, summed over a fixed chunk of
 *            images before one horizontal sum into double partials (one per chunk; the
 *            chunks are summed in order: deterministic for any thread count).
 * The kernels are built per ISA (AVX-512F, AVX2+FMA, baseline) like the depthwise ones and
 * picked by the depthwise module's level (fc_dw_level / _simd_level).
 */
#include <stddef.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "_tr16.h"
#endif

#define FC_SM_MAXT 64 /* most taps (R * S) */
#define FC_SM_NB 8    /* images per backward-weight chunk */

typedef struct {
    int N, C, H, W, K, P, Q, R, S, ph, pw;
    int Hb, Wb, J, L;      /* buffer rows / columns, positions, elements per plane */
    int Kp;                /* K rounded up to 8 (packed weights, dy planes) */
    int off[FC_SM_MAXT + 8]; /* tap t = r * S + s reads e + off[t] (padded taps: 0) */
} fc_smg;

static int fc_sm_setup(fc_smg *g, int N, int C, int H, int W, int K, int P, int Q, int R, int S, int ph, int pw) {
    if (R * S > FC_SM_MAXT || R < 1 || S < 1 || P < 1 || Q < 1) return 0;
    g->N = N; g->C = C; g->H = H; g->W = W; g->K = K; g->P = P; g->Q = Q; g->R = R; g->S = S;
    g->ph = ph; g->pw = pw;
    g->Hb = P + R - 1;
    g->Wb = Q + S - 1;
    int j = (P * g->Wb + 15) / 16 * 16;
    g->J = j;
    if (j < 64) j = 64; /* forward blocks may span up to 64 positions */
    g->L = (j + (R - 1) * g->Wb + S - 1 + 15) / 16 * 16;
    if (g->L < g->Hb * g->Wb) g->L = (g->Hb * g->Wb + 15) / 16 * 16;
    g->Kp = (K + 7) / 8 * 8;
    for (int t = 0; t < FC_SM_MAXT + 8; t++) g->off[t] = t < R * S ? (t / S) * g->Wb + t % S : 0;
    return 1;
}

/* lanes of the batch-vector kernels at the current level for elements of es bytes */
static inline int fc_sm_lanes(int es) { return (16 << fc_dw_level()) / es; }

/* elements after the batch-vector forward's C * Hb * Wb lane vectors: output staging of 8
 * filters x P * Q rounded up to 16 positions (used by the AVX-512 float32 kernel) */
static inline ptrdiff_t fc_sm_nv_extra(const fc_smg *g, int lanes) {
    return (ptrdiff_t)8 * ((g->P * g->Q + 15) / 16 * 16) * lanes;
}

/* the row-Winograd forward (fwd_nv1w_, S = 5): g's buffer rows widened to whole 6-wide windows
 * (g->Wb updated); returns its work per thread in elements */
static inline ptrdiff_t fc_sm_w1_setup(fc_smg *g, int lanes) {
    const int tw = (g->Q + 1) / 2;
    g->Wb = 2 * tw + 4;
    return ((ptrdiff_t)g->C * g->Hb * g->Wb + (ptrdiff_t)g->C * g->Hb * tw * 6 + 6 * 8 * 3 +
            (ptrdiff_t)8 * ((g->P * g->Q + 15) / 16 * 16)) * lanes;
}

/* positions per forward buffer row (>= J, >= 64) */
static inline int fc_sm_jalloc(const fc_smg *g) { return g->J < 64 ? 64 : g->J; }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

#define FC_SM_CAT3_(a, b, c) a##b##c
#define FC_SM_CAT3(a, b, c) FC_SM_CAT3_(a, b, c)

#define FC_ATTR
#define FC_VB 16
#define FC_KB 4
#define FC_JB 2
#define FC_BK 2
#define FC_BT 5
#define FC_T float
#define FC_SFX f32_sse
#include "_conv_small_simd.h"
#undef FC_T
#undef FC_SFX
#define FC_T double
#define FC_SFX f64_sse
#include "_conv_small_simd.h"
#undef FC_T
#undef FC_SFX
#undef FC_VB
#undef FC_ATTR

#if FC_DW_X86
#define FC_ATTR __attribute__((target("avx2,fma")))
#define FC_VB 32
#define FC_T float
#define FC_SFX f32_avx2
#include "_conv_small_simd.h"
#undef FC_T
#undef FC_SFX
#define FC_T double
#define FC_SFX f64_avx2
#include "_conv_small_simd.h"
#undef FC_T
#undef FC_SFX
#undef FC_VB
#undef FC_ATTR
#undef FC_KB
#undef FC_JB
#undef FC_BK
#undef FC_BT
#define FC_ATTR __attribute__((target("avx512f,avx2,fma")))
#define FC_VB 64
#define FC_KB 8
#define FC_JB 3
#define FC_BK 4
#define FC_BT 5
#define FC_T float
#define FC_SFX f32_avx512
#define FC_SM_TR16 1
#include "_conv_small_simd.h"
#undef FC_SM_TR16
#undef FC_T
#undef FC_SFX
#define FC_T double
#define FC_SFX f64_avx512
#include "_conv_small_simd.h"
#undef FC_T
#undef FC_SFX
#undef FC_VB
#undef FC_ATTR
#endif
#undef FC_KB
#undef FC_JB
#undef FC_BK
#undef FC_BT

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#if FC_DW_X86
#define FC_SM_DISPATCH(NAME, SFX, ARGS)                                     \
    switch (fc_dw_level()) {                                                \
    case 2: FC_SM_CAT3(fc_sm_, NAME, FC_SM_CAT3(SFX, _, avx512)) ARGS; break; \
    case 1: FC_SM_CAT3(fc_sm_, NAME, FC_SM_CAT3(SFX, _, avx2)) ARGS; break;   \
    default: FC_SM_CAT3(fc_sm_, NAME, FC_SM_CAT3(SFX, _, sse)) ARGS;          \
    }
#else
#define FC_SM_DISPATCH(NAME, SFX, ARGS) FC_SM_CAT3(fc_sm_, NAME, FC_SM_CAT3(SFX, _, sse)) ARGS;
#endif

#define FC_SM_ENTRY(T, SFX)                                                                  \
static void fc_sm_packw_##SFX(const T *w, T *wp, const fc_smg *g) {                          \
    FC_SM_DISPATCH(packw_, SFX, (w, wp, g))                                                  \
}                                                                                            \
static void fc_sm_fwd_##SFX(const T *x, const T *wp, const T *b, T *y, const fc_smg *g,      \
                            T *xb, T *yb) {                                                  \
    FC_SM_DISPATCH(fwd_, SFX, (x, wp, b, y, g, xb, yb))                                      \
}                                                                                            \
static void fc_sm_packw1_##SFX(const T *w, T *up, const fc_smg *g) {                          \
    FC_SM_DISPATCH(packw1_, SFX, (w, up, g))                                                 \
}                                                                                            \
static void fc_sm_fwd_nv1w_##SFX(const T *x, const T *up, const T *b, T *y, int n0,            \
                                 const fc_smg *g, T *xt) {                                   \
    FC_SM_DISPATCH(fwd_nv1w_, SFX, (x, up, b, y, n0, g, xt))                                 \
}                                                                                            \
static void fc_sm_fwd_nv_##SFX(const T *x, const T *wp, const T *b, T *y, int n0,              \
                               const fc_smg *g, T *xt) {                                     \
    FC_SM_DISPATCH(fwd_nv_, SFX, (x, wp, b, y, n0, g, xt))                                   \
}                                                                                            \
static void fc_sm_bww_nv_##SFX(const T *x, const T *dy, int n0, const fc_smg *g, T *xt,        \
                               T *dyt, double *out) {                                        \
    FC_SM_DISPATCH(bww_nv_, SFX, (x, dy, n0, g, xt, dyt, out))                               \
}                                                                                            \
static void fc_sm_bww_##SFX(const T *x, const T *dy, int n0, int nb, const fc_smg *g,        \
                            T *xb, T *dyb, double *out) {                                    \
    FC_SM_DISPATCH(bww_, SFX, (x, dy, n0, nb, g, xb, dyb, out))                              \
}

FC_SM_ENTRY(float, f32)
FC_SM_ENTRY(double, f64)
