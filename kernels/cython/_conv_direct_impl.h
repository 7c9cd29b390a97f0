/* Depthwise conv2d (C / groups == 1) kernels for _conv_direct.pyx: padded-plane buffers,
 * SIMD along output rows, one task per input channel (n, c).
 *
 * Portable build: the kernels of _conv_direct_simd.h are compiled three times, for
 * AVX-512F, AVX2+FMA and baseline x86-64 (SSE2), and fc_dw_level picks one at run time
 * (__builtin_cpu_supports); other compilers/architectures get the baseline build only.
 */
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_DW_X86 1
#else
#define FC_DW_X86 0
#endif

#define FC_DW_MAXS 32 /* widest filter (S) these kernels take; wider ones use the scalar loops */
#define FC_DW_QB 16   /* dy rows / buffer rows are padded to multiples of 16 elements */
/* the unpadded forward's rows in the task buffer (zero row, copies of the plane's first /
 * last row): W elements between 16-element zero guards */
#define FC_DW_GUARD(W) ((ptrdiff_t)((W) + FC_DW_QB - 1) / FC_DW_QB * FC_DW_QB + 2 * FC_DW_QB)

/* 0: baseline (SSE2), 1: AVX2+FMA, 2: AVX-512F; -1 until first use. */
static int fc_dw_level_ = -1;

static int fc_dw_max_level(void) {
#if FC_DW_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* level < 0: the best this CPU runs; otherwise at most that. Returns the level in use. */
static int fc_dw_set_level(int level) {
    int mx = fc_dw_max_level();
    fc_dw_level_ = (level < 0 || level > mx) ? mx : level;
    return fc_dw_level_;
}

static inline int fc_dw_level(void) {
    if (fc_dw_level_ < 0) fc_dw_set_level(-1);
    return fc_dw_level_;
}

/* The vector width for output rows of Q elements of es bytes: the least lane work
 * (ceil(Q / VW) * VW, rows narrower than a vector counted at four vectors; SSE2, without
 * FMA, at double), the wider vector on ties.  Among the levels up to fc_dw_level(). */
static inline int fc_dw_pick(int Q, int es) {
    int best = 0;
    long bestc = -1;
    for (int l = fc_dw_level(); l >= 0; l--) {
        long vw = (16L << l) / es, c = Q >= vw ? (Q + vw - 1) / vw * vw : 4 * vw;
        if (l == 0) c *= 2;
        if (bestc < 0 || c < bestc) {
            best = l;
            bestc = c;
        }
    }
    return best;
}

typedef struct {
    int H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw;
    int Hb, Lb, RS, Qb;       /* buffer: Hb rows of RS = sw * Lb elements; Q rounded up to 16 */
    int DS;                   /* dy buffer rows: 16 zeros, Qb elements (zero past Q), 32 zeros */
    int base;                 /* element of padded column 0 (stride 1: input column 0 aligned) */
    ptrdiff_t nbuf, ndyb;     /* elements of the padded-input buffer and the dy buffer */
    int off[FC_DW_MAXS];      /* tap s reads buffer row element off[s] + q */
    int lv4, lv8;             /* fc_dw_pick(Q, 4 / 8) at setup: the kernels' ISA level */
} fc_dwg;

/* Forward correlation of an H x W plane to a P x Q plane. Buffer row i holds input row
 * i - ph; buffer column j (input column j - pw) sits at (j % sw) * Lb + j / sw + base, so
 * output q, tap s (column q*sw + s*dw) is element off[s] + q: contiguous in q for any
 * stride.  With sw == 1, base puts input column 0 on a 16-element boundary.
 * Returns 0 when the shape is not supported (S > FC_DW_MAXS). */
static int fc_dw_setup(fc_dwg *g, int H, int W, int P, int Q, int R, int S, int sh, int sw,
                       int ph, int pw, int dh, int dw) {
    if (S > FC_DW_MAXS || S < 1 || R < 1 || P < 1 || Q < 1 || sw < 1 || sh < 1) return 0;
    if (((S - 1) * dw) / sw > FC_DW_QB) return 0; /* the dy buffer's left zeros cover tap shifts */
    g->H = H; g->W = W; g->P = P; g->Q = Q; g->R = R; g->S = S;
    g->sh = sh; g->sw = sw; g->ph = ph; g->pw = pw; g->dh = dh; g->dw = dw;
    g->Hb = (P - 1) * sh + (R - 1) * dh + 1;
    int wb = (Q - 1) * sw + (S - 1) * dw + 1;
    g->Qb = (Q + FC_DW_QB - 1) / FC_DW_QB * FC_DW_QB;
    int l1 = (wb + sw - 1) / sw, l2 = g->Qb + ((S - 1) * dw) / sw + FC_DW_QB;
    g->base = sw == 1 ? ((-pw) % FC_DW_QB + FC_DW_QB) % FC_DW_QB : 0;
    int lb = g->base + (l1 > l2 ? l1 : l2);
    g->Lb = (lb + FC_DW_QB - 1) / FC_DW_QB * FC_DW_QB;
    g->RS = sw * g->Lb;
    g->nbuf = (ptrdiff_t)g->Hb * g->RS;
    if (g->nbuf < 3 * FC_DW_GUARD(W)) g->nbuf = 3 * FC_DW_GUARD(W);
    g->DS = g->Qb + 3 * FC_DW_QB; /* scatter reads up to Qb + 2 * 16 - 1 past a row start */
    g->ndyb = (ptrdiff_t)P * g->DS;
    for (int s = 0; s < S; s++) g->off[s] = ((s * dw) % sw) * g->Lb + (s * dw) / sw + g->base;
    g->lv4 = fc_dw_pick(Q, 4);
    g->lv8 = fc_dw_pick(Q, 8);
    return 1;
}

/* keep the short row copies / zero fills below as inline vector moves: as libc
 * memcpy/memset calls (gcc's loop-pattern rewrite) they cost more than the convolution */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-distribute-patterns", "no-associative-math")
#endif

#define FC_CAT3_(a, b, c) a##b##c
#define FC_CAT3(a, b, c) FC_CAT3_(a, b, c)

#define FC_ATTR
#define FC_T float
#define FC_TI int
#define FC_VB 16
#define FC_SFX f32_sse
#include "_conv_direct_simd.h"
#undef FC_T
#undef FC_TI
#undef FC_SFX
#define FC_T double
#define FC_TI long long
#define FC_SFX f64_sse
#include "_conv_direct_simd.h"
#undef FC_T
#undef FC_TI
#undef FC_SFX
#undef FC_VB
#undef FC_ATTR

#if FC_DW_X86
#define FC_ATTR __attribute__((target("avx2,fma")))
#define FC_VB 32
#define FC_T float
#define FC_TI int
#define FC_SFX f32_avx2
#include "_conv_direct_simd.h"
#undef FC_T
#undef FC_TI
#undef FC_SFX
#define FC_T double
#define FC_TI long long
#define FC_SFX f64_avx2
#include "_conv_direct_simd.h"
#undef FC_T
#undef FC_TI
#undef FC_SFX
#undef FC_VB
#undef FC_ATTR
#define FC_ATTR __attribute__((target("avx512f,avx2,fma")))
#define FC_VB 64
#define FC_T float
#define FC_TI int
#define FC_SFX f32_avx512
#include "_conv_direct_simd.h"
#undef FC_T
#undef FC_TI
#undef FC_SFX
#define FC_T double
#define FC_TI long long
#define FC_SFX f64_avx512
#include "_conv_direct_simd.h"
#undef FC_T
#undef FC_TI
#undef FC_SFX
#undef FC_VB
#undef FC_ATTR
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#if FC_DW_X86
#define FC_DW_DISPATCH(NAME, SFX, ARGS)                                   \
    switch (FC_DW_ES_##SFX == 4 ? g->lv4 : g->lv8) {                                              \
    case 2: FC_CAT3(fc_dw_, NAME, FC_CAT3(SFX, _, avx512)) ARGS; break;   \
    case 1: FC_CAT3(fc_dw_, NAME, FC_CAT3(SFX, _, avx2)) ARGS; break;     \
    default: FC_CAT3(fc_dw_, NAME, FC_CAT3(SFX, _, sse)) ARGS;            \
    }
#else
#define FC_DW_DISPATCH(NAME, SFX, ARGS) FC_CAT3(fc_dw_, NAME, FC_CAT3(SFX, _, sse)) ARGS;
#endif

#define FC_DW_ES_f32 4
#define FC_DW_ES_f64 8

#define FC_DW_ENTRY(T, SFX)                                                                    \
static void fc_dw_fwd_##SFX(const T *x, const T *w, const T *b, T *y, int Kg, const fc_dwg *g, \
                            T *buf, int edges) {                                               \
    FC_DW_DISPATCH(fwd_task, SFX, (x, w, b, y, Kg, g, buf, edges))                             \
}                                                                                              \
static void fc_dw_bwd_in1_##SFX(const T *dy, const T *wf, T *dx, int Kg, const fc_dwg *g,      \
                                T *buf, int edges) {                                           \
    FC_DW_DISPATCH(bwd_in1_task, SFX, (dy, wf, dx, Kg, g, buf, edges))                         \
}                                                                                              \
static void fc_dw_bwd_in_##SFX(const T *dy, const T *w, T *dx, int Kg, const fc_dwg *g,        \
                               T *buf, T *dyb) {                                               \
    FC_DW_DISPATCH(bwd_in_task, SFX, (dy, w, dx, Kg, g, buf, dyb))                             \
}                                                                                              \
static void fc_dw_bwd_w_##SFX(const T *x, const T *dy, double *out, int Kg, const fc_dwg *g,   \
                              T *buf, T *dyb) {                                                \
    FC_DW_DISPATCH(bwd_w_task, SFX, (x, dy, out, Kg, g, buf, dyb))                             \
}

FC_DW_ENTRY(float, f32)
FC_DW_ENTRY(double, f64)
