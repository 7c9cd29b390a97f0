/* 2-D pooling loops for pool.pyx (OpenMP over planes / row blocks, SIMD over outputs).
 *
 * Forward (max and average): per block of output rows the input is copied into column/row
 * "phase planes" with the padding stored as a neutral value, after which every window tap is one
 * flat, branch-free, unit-stride vector pass over the block (see "forward: phase planes").  Taps
 * are visited in PyTorch's window order (i outer, j inner), so the max-pool select
 * (v > m || isnan(v)) gives exactly PyTorch's value and index (first maximum; a NaN wins and the
 * last NaN of the window is reported) and average sums add in PyTorch's order.
 * Backward: max-pool scatters per plane (zeroed by the same thread); average-pool gathers per
 * input row; global average pool is one reduction / fill per plane.
 * Each hot function is compiled for AVX-512, AVX2 and baseline x86-64 and picked per call
 * (fc_pool_isa).  All hot loops index with ptrdiff_t: Python builds with -fwrapv, under which
 * an int index (q * SW + off) is not affine and gcc falls back to element-wise gathers.
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_ISA 1
#define FC_T_V4 __attribute__((target("arch=x86-64-v4,prefer-vector-width=256"))) /* 512-bit measured 7-20 % slower here */
#define FC_T_V3 __attribute__((target("arch=x86-64-v3")))
#else
#define FC_ISA 0
#define FC_T_V4
#define FC_T_V3
#endif
#define FC_INLINE static inline __attribute__((always_inline))
/* Between the tap passes: stops gcc's unroll-and-jam (-O3) from fusing two taps into one loop,
 * which then no longer vectorizes (scalar compare-and-branch, 4x slower). */
#if defined(__GNUC__)
#define FC_NOJAM() __asm__ __volatile__("" ::: "memory")
#else
#define FC_NOJAM()
#endif

/* Instruction-set level of the hot loops: 2 = AVX-512 (x86-64-v4), 1 = AVX2/FMA (x86-64-v3),
 * 0 = baseline x86-64.  Each hot function is compiled once per level (an always_inline body
 * wrapped in target-attributed functions) and picked per call, so tests can run every level
 * this CPU supports (fc_pool_set_isa). */
static int fc_pool_isa_force = -1;
static int fc_pool_isa_hw(void) {
    static int hw = -1;
    if (hw < 0) {
#if FC_ISA
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("x86-64-v4") ? 2 : __builtin_cpu_supports("x86-64-v3") ? 1 : 0;
#else
        hw = 0;
#endif
    }
    return hw;
}
static int fc_pool_isa(void) {
    const int hw = fc_pool_isa_hw();
    return fc_pool_isa_force >= 0 && fc_pool_isa_force < hw ? fc_pool_isa_force : hw;
}
/* level < 0: the best this CPU runs; returns the level now in use */
static int fc_pool_set_isa(int level) { fc_pool_isa_force = level; return fc_pool_isa(); }

#define FC_ISA_FN(NAME, PARAMS, ARGS)                                                              \
FC_T_V4 static void NAME##_v4 PARAMS { NAME##_impl ARGS; }                                         \
FC_T_V3 static void NAME##_v3 PARAMS { NAME##_impl ARGS; }                                         \
static void NAME##_v0 PARAMS { NAME##_impl ARGS; }                                                 \
static void NAME PARAMS {                                                                          \
    switch (fc_pool_isa()) {                                                                       \
    case 2: NAME##_v4 ARGS; break;                                                                 \
    case 1: NAME##_v3 ARGS; break;                                                                 \
    default: NAME##_v0 ARGS;                                                                       \
    }                                                                                              \
}

typedef struct {
    ptrdiff_t planes;
    int H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, include_pad;
} fc_pool_geom;

/* rows [r0, r1) of the flat (plane, output row) range assigned to thread t of nt */
FC_INLINE void fc_split(ptrdiff_t n, int t, int nt, ptrdiff_t *r0, ptrdiff_t *r1) {
    ptrdiff_t q = n / nt, r = n % nt;
    *r0 = t * q + (t < r ? t : r);
    *r1 = *r0 + q + (t < r);
}

/* PyTorch's divisor is separable: rows(p) * cols(q), each the window extent clipped to the
 * padded input (count_include_pad) or to the input. */
FC_INLINE int fc_avg_extent(int o, int s, int pad, int k, int n, int inc, int *a0, int *a1) {
    int a = o * s - pad, ae = a + k < n + pad ? a + k : n + pad;
    *a0 = a > 0 ? a : 0;
    *a1 = ae < n ? ae : n;
    if (*a0 >= *a1) return 0;
    return inc ? ae - a : *a1 - *a0;
}

/* Non-temporal copies for large outputs (max-pool dx, forward y / idx over FC_STREAM_BYTES):
 * results are built in a cache-resident buffer and written with streaming stores, so the output
 * costs one write stream instead of a read-for-ownership plus a write-back. */
#ifndef FC_STREAM_BYTES
#define FC_STREAM_BYTES ((ptrdiff_t)8 << 20)
#endif
#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#define FC_STREAM 1
static void fc_stream_f32(float *dst, const float *src, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++) dst[i] = src[i];
    for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static void fc_stream_f64(double *dst, const double *src, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++) dst[i] = src[i];
    for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static void fc_stream_i64(int64_t *dst, const int64_t *src, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++) dst[i] = src[i];
    for (; i + 2 <= n; i += 2) _mm_stream_si128((__m128i *)(dst + i), _mm_loadu_si128((const __m128i *)(src + i)));
    for (; i < n; i++) dst[i] = src[i];
}
#define FC_SFENCE() _mm_sfence()
#else
#define FC_STREAM 0
static void fc_stream_f32(float *dst, const float *src, ptrdiff_t n) { memcpy(dst, src, sizeof(float) * (size_t)n); }
static void fc_stream_f64(double *dst, const double *src, ptrdiff_t n) { memcpy(dst, src, sizeof(double) * (size_t)n); }
static void fc_stream_i64(int64_t *dst, const int64_t *src, ptrdiff_t n) { memcpy(dst, src, sizeof(int64_t) * (size_t)n); }
#define FC_SFENCE()
#endif

/* 2x2 windows, stride 2, no padding or dilation, every window inside the input: direct paths */
static inline int fc_is_k2(const fc_pool_geom *g) {
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && !g->ph && !g->pw && g->dh == 1
           && g->dw == 1 && 2 * g->P <= g->H && 2 * g->Q <= g->W;
}

/* ------------------------------------------------------------------ forward: phase planes */
/* fc_max_fwd / fc_avg (forward) return 0, -1 (out of memory) or -2 (window span * W >= 2^31). */
/* The forward kernels first copy a block of R output rows' worth of one input plane into
 * "phase planes": Z_ab[u][v] = x[u*sh + a, v*sw + b] (a < sh, b < sw), each row L = Q + halo long,
 * with the padding (and the halo) stored as a neutral value (-inf for max, 0 for sums).  Output
 * (p, q) of tap (i, j) is then Z_ab[p + fi][q + fj] with oi = i*dh - ph = fi*sh + a (oj likewise),
 * i.e. element t + zoff[tap] of a flat loop over t = p*L + q: every tap is one branch-free,
 * unit-stride vector loop over the whole block, whatever the stride, padding or dilation.
 * Max pool keeps per output the tap-relative index toff = oi*W + oj of the running maximum; an
 * output whose maximum stays -inf (all -inf, or only padding seen) reports the first in-range tap
 * of its window, which is PyTorch's answer in that case. */
#ifndef FC_ZBLOCK
#define FC_ZBLOCK 2048 /* outputs (incl. halo columns) per block: buffers stay in L1/L2 */
#endif

typedef struct {
    int R, L, Pz, rt, cl, nblk;
    ptrdiff_t zplane;       /* elements per phase plane: (Pz + 1) * L (one spare row read by the halo) */
    ptrdiff_t *zoff;        /* per tap (window order): its source in Z */
    int32_t *toff;          /* per tap: oi * W + oj */
    int *w0;                /* per output column: first in-range input column of its window */
    unsigned char *used;    /* per row phase a: read by some tap */
} fc_zgeom;

static inline int fc_fdiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static int fc_zgeom_make(fc_zgeom *z, const fc_pool_geom *g) {
    const int minfi = fc_fdiv(-g->ph, g->sh), maxfi = fc_fdiv((g->kh - 1) * g->dh - g->ph, g->sh);
    const int minfj = fc_fdiv(-g->pw, g->sw), maxfj = fc_fdiv((g->kw - 1) * g->dw - g->pw, g->sw);
    const int ntap = g->kh * g->kw;
    z->rt = -minfi;
    z->cl = -minfj;
    z->L = g->Q + maxfj - minfj;
    z->R = FC_ZBLOCK / z->L;
    if (z->R < 1) z->R = 1;
    if (z->R > g->P) z->R = g->P;
    z->nblk = (g->P + z->R - 1) / z->R;
    z->Pz = z->R + maxfi - minfi;
    z->zplane = (ptrdiff_t)(z->Pz + 1) * z->L;
    z->zoff = (ptrdiff_t *)malloc(sizeof(ptrdiff_t) * (size_t)ntap);
    z->toff = (int32_t *)malloc(sizeof(int32_t) * (size_t)ntap);
    z->w0 = (int *)malloc(sizeof(int) * (size_t)g->Q);
    z->used = (unsigned char *)calloc((size_t)g->sh, 1);
    if (!z->zoff || !z->toff || !z->w0 || !z->used) return -1;
    for (int i = 0; i < g->kh; i++)
        for (int j = 0; j < g->kw; j++) {
            const int oi = i * g->dh - g->ph, oj = j * g->dw - g->pw;
            const int fi = fc_fdiv(oi, g->sh), fj = fc_fdiv(oj, g->sw);
            const int ph = (oi - fi * g->sh) * g->sw + (oj - fj * g->sw);
            z->zoff[i * g->kw + j] = ph * z->zplane + (ptrdiff_t)(fi + z->rt) * z->L + fj + z->cl;
            z->toff[i * g->kw + j] = oi * g->W + oj;
            z->used[ph / g->sw] = 1;
        }
    for (int q = 0; q < g->Q; q++) {
        int w = q * g->sw - g->pw;
        while (w < 0) w += g->dw;
        z->w0[q] = w;
    }
    return 0;
}
static void fc_zgeom_free(fc_zgeom *z) { free(z->zoff); free(z->toff); free(z->w0); free(z->used); }

/* Prefetch the input rows of block unit un (read by the next fc_zbuild) while the current block
 * computes: the tap passes touch no memory, so the hardware prefetcher would otherwise idle. */
static inline void fc_prefetch_unit(const void *x, size_t item, const fc_pool_geom *g,
                                    const fc_zgeom *z, ptrdiff_t un) {
    const ptrdiff_t pl = un / z->nblk;
    const int p0 = (int)(un % z->nblk) * z->R;
    ptrdiff_t h0 = (ptrdiff_t)(p0 - z->rt) * g->sh, h1 = (ptrdiff_t)(p0 + z->Pz - z->rt) * g->sh;
    if (h0 < 0) h0 = 0;
    if (h1 > g->H) h1 = g->H;
    const char *a = (const char *)x + (size_t)(pl * g->H + h0) * g->W * item;
    const char *e = (const char *)x + (size_t)(pl * g->H + h1) * g->W * item;
    for (; a < e; a += 64) __builtin_prefetch(a, 0, 3);
}

/* Tap column offset off: input column q*SW + off is src[q] of the returned pointer, where prow
 * holds a row split in SW column phases of Wp each (only dereferenced in range). */
#define fc_tap(prow, off, SW, Wp)                                                                  \
    ((prow) + (ptrdiff_t)((((off) % (SW)) + (SW)) % (SW)) * (Wp)                                   \
            + (ptrdiff_t)(((off) - ((((off) % (SW)) + (SW)) % (SW))) / (SW)))

#define FC_ZFWD(T, SFX)                                                                            \
/* phase planes of output rows [p0, p0 + rb) of plane xp (row u of plane ab at Z + ab*zplane + u*L; \
 * input column v*SW + b lands in column cl + v) */                                                \
FC_INLINE void fc_zbuild_##SFX(const T *restrict xp, T *restrict Z, const fc_pool_geom *g,        \
                               const fc_zgeom *z, int p0, int rb, T pad, const int SW) {           \
    const int W = g->W, L = z->L, cl = z->cl < z->L ? z->cl : z->L, nu = rb + z->Pz - z->R;        \
    for (int a = 0; a < g->sh; a++) {                                                              \
        if (!z->used[a]) continue;                                                                 \
        for (int u = 0; u <= nu; u++) {                                                            \
            const int ih = (p0 + u - z->rt) * g->sh + a;                                           \
            const int in = u < nu && ih >= 0 && ih < g->H;                                         \
            const T *restrict row = xp + (ptrdiff_t)(in ? ih : 0) * W;                             \
            T *restrict z0 = Z + (ptrdiff_t)a * SW * z->zplane + (ptrdiff_t)u * L;                 \
            for (int b = 0; b < SW; b++) {                                                         \
                T *restrict zr = z0 + b * z->zplane;                                               \
                int nb = in ? (W - b + SW - 1) / SW : 0;                                           \
                if (nb > L - cl) nb = L - cl;                                                      \
                for (ptrdiff_t v = 0; v < cl; v++) zr[v] = pad;                                    \
                for (ptrdiff_t v = cl + nb; v < L; v++) zr[v] = pad;                               \
                if (SW == 1) { if (nb > 0) memcpy(zr + cl, row, sizeof(T) * (size_t)nb); }        \
                else if (SW > 2) { for (ptrdiff_t v = 0; v < nb; v++) zr[cl + v] = row[v * SW + b]; } \
            }                                                                                      \
            if (SW == 2 && in) { /* both phases in one pass: contiguous loads, vector permutes */  \
                T *restrict e = z0 + cl, *restrict o = z0 + z->zplane + cl;                        \
                ptrdiff_t n = W / 2 < L - cl ? W / 2 : L - cl;                                     \
                for (ptrdiff_t k = 0; k < n; k++) { e[k] = row[2 * k]; o[k] = row[2 * k + 1]; }   \
                if ((W & 1) && W / 2 < L - cl) e[W / 2] = row[W - 1];                              \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FC_INLINE void fc_zmax_##SFX(const T *restrict Z, T *restrict m, int32_t *restrict am,            \
                             const ptrdiff_t *restrict zoff, const int32_t *restrict toff,        \
                             int ntap, ptrdiff_t n) {                                              \
    const T *restrict s0 = Z + zoff[0];                                                            \
    const int32_t t0 = toff[0];                                                                    \
    for (ptrdiff_t t = 0; t < n; t++) { m[t] = s0[t]; am[t] = t0; }                                \
    for (int k = 1; k < ntap; k++) {                                                               \
        const T *restrict src = Z + zoff[k];                                                       \
        const int32_t tk = toff[k];                                                                \
        FC_NOJAM();                                                                                \
        for (ptrdiff_t t = 0; t < n; t++) {                                                        \
            T v = src[t], mm = m[t];                                                               \
            int up = (v > mm) | (v != v);                                                          \
            m[t] = up ? v : mm;                                                                    \
            am[t] = up ? tk : am[t];                                                               \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FC_INLINE void fc_zsum_##SFX(const T *restrict Z, T *restrict m, const ptrdiff_t *restrict zoff,  \
                             int ntap, ptrdiff_t n) {                                              \
    const T *restrict s0 = Z + zoff[0];                                                            \
    for (ptrdiff_t t = 0; t < n; t++) m[t] = s0[t];                                                \
    for (int k = 1; k < ntap; k++) {                                                               \
        const T *restrict src = Z + zoff[k];                                                       \
        FC_NOJAM();                                                                                \
        for (ptrdiff_t t = 0; t < n; t++) m[t] += src[t];                                          \
    }                                                                                              \
}                                                                                                  \
/* units [u0, u1) of (plane, row block); mode 0: max (y, idx), 1: average (y; cdiv per column) */ \
FC_INLINE void fc_zfwd_units_##SFX(const T *restrict x, T *restrict y, int64_t *restrict idx,     \
                                   const T *restrict cdiv, T *restrict Z, T *restrict m,          \
                                   int32_t *restrict am, T *restrict yb, int64_t *restrict ib,    \
                                   const fc_pool_geom *g, const fc_zgeom *z, ptrdiff_t u0,        \
                                   ptrdiff_t u1, int mode, const int SW) {                         \
    const int L = z->L, Q = g->Q, W = g->W;                                                        \
    for (ptrdiff_t un = u0; un < u1; un++) {                                                       \
        const ptrdiff_t pl = un / z->nblk;                                                         \
        const int p0 = (int)(un % z->nblk) * z->R;                                                 \
        const int rb = g->P - p0 < z->R ? g->P - p0 : z->R;                                        \
        const ptrdiff_t n = (ptrdiff_t)rb * L;                                                     \
        fc_zbuild_##SFX(x + pl * g->H * W, Z, g, z, p0, rb, mode ? (T)0 : (T)-INFINITY, SW);       \
        if (un + 1 < u1) fc_prefetch_unit(x, sizeof(T), g, z, un + 1);                              \
        if (mode) fc_zsum_##SFX(Z, m, z->zoff, g->kh * g->kw, n);                                  \
        else fc_zmax_##SFX(Z, m, am, z->zoff, z->toff, g->kh * g->kw, n);                          \
        for (int r = 0; r < rb; r++) {                                                             \
            const int p = p0 + r;                                                                  \
            const T *restrict mr = m + (ptrdiff_t)r * L;                                           \
            T *restrict yr = (yb ? yb + (ptrdiff_t)r * Q : y + (pl * g->P + p) * (ptrdiff_t)Q);    \
            if (mode) {                                                                            \
                int h0, h1;                                                                        \
                const T rd = (T)fc_avg_extent(p, g->sh, g->ph, g->kh, g->H, g->include_pad, &h0, &h1); \
                for (ptrdiff_t q = 0; q < Q; q++) yr[q] = (cdiv[q] == 0) | (rd == 0) ? 0 : mr[q] / (cdiv[q] * rd); \
                continue;                                                                          \
            }                                                                                      \
            const int32_t *restrict ar = am + (ptrdiff_t)r * L;                                    \
            int64_t *restrict ir = (yb ? ib + (ptrdiff_t)r * Q : idx + (pl * g->P + p) * (ptrdiff_t)Q); \
            int h0 = p * g->sh - g->ph;                                                            \
            while (h0 < 0) h0 += g->dh;                                                            \
            const int64_t pb = (int64_t)p * g->sh * W, fb = (int64_t)h0 * W;                       \
            const int *restrict w0 = z->w0;                                                        \
            for (ptrdiff_t q = 0; q < Q; q++) {                                                    \
                T v = mr[q];                                                                       \
                yr[q] = v;                                                                         \
                ir[q] = v == (T)-INFINITY ? fb + w0[q] : pb + q * SW + ar[q];                      \
            }                                                                                      \
        }                                                                                          \
        if (yb) {                                                                                  \
            const ptrdiff_t o = (pl * g->P + p0) * (ptrdiff_t)Q;                                   \
            fc_stream_##SFX(y + o, yb, (ptrdiff_t)rb * Q);                                         \
            if (!mode) fc_stream_i64(idx + o, ib, (ptrdiff_t)rb * Q);                              \
        }                                                                                          \
    }                                                                                              \
    if (yb) FC_SFENCE();                                                                           \
}                                                                                                  \
FC_INLINE void fc_zfwd_run_##SFX##_impl(const T *x, T *y, int64_t *idx, const T *cdiv, T *Z, T *m, \
                                        int32_t *am, T *yb, int64_t *ib, const fc_pool_geom *g,   \
                                        const fc_zgeom *z, ptrdiff_t u0, ptrdiff_t u1, int mode) { \
    if (g->sw == 1) fc_zfwd_units_##SFX(x, y, idx, cdiv, Z, m, am, yb, ib, g, z, u0, u1, mode, 1); \
    else if (g->sw == 2) fc_zfwd_units_##SFX(x, y, idx, cdiv, Z, m, am, yb, ib, g, z, u0, u1, mode, 2); \
    else fc_zfwd_units_##SFX(x, y, idx, cdiv, Z, m, am, yb, ib, g, z, u0, u1, mode, g->sw);        \
}                                                                                                  \
FC_ISA_FN(fc_zfwd_run_##SFX, (const T *x, T *y, int64_t *idx, const T *cdiv, T *Z, T *m, int32_t *am, \
                              T *yb, int64_t *ib, const fc_pool_geom *g, const fc_zgeom *z,        \
                              ptrdiff_t u0, ptrdiff_t u1, int mode),                               \
          (x, y, idx, cdiv, Z, m, am, yb, ib, g, z, u0, u1, mode))                                 \
/* 2x2 windows, stride 2, no padding / dilation, every window inside the input (LeNet, VGG,      \
 * U-Net): one pass straight from the input rows (even/odd column pairs), no phase planes. */     \
FC_INLINE void fc_k2_rows_##SFX##_impl(const T *restrict x, T *restrict y, int64_t *restrict idx, \
                                       const fc_pool_geom *g, int mode, ptrdiff_t r0, ptrdiff_t r1) { \
    const ptrdiff_t W = g->W, Q = g->Q;                                                            \
    const int32_t w = g->W, w1 = g->W + 1;                                                         \
    for (ptrdiff_t r = r0; r < r1; r++) {                                                          \
        const ptrdiff_t pl = r / g->P, p = r % g->P;                                               \
        const T *restrict a0 = x + (pl * g->H + 2 * p) * W, *restrict a1 = a0 + W;                \
        T *restrict yr = y + r * Q;                                                                \
        if (mode) {                                                                                \
            for (ptrdiff_t q = 0; q < Q; q++)                                                      \
                yr[q] = (((a0[2 * q] + a0[2 * q + 1]) + a1[2 * q]) + a1[2 * q + 1]) / (T)4;        \
            continue;                                                                              \
        }                                                                                          \
        int64_t *restrict ir = idx + r * Q;                                                        \
        const int64_t base = 2 * p * W;                                                            \
        for (ptrdiff_t q = 0; q < Q; q++) {                                                        \
            T m = a0[2 * q], v = a0[2 * q + 1];                                                    \
            int32_t k = 0;                                                                         \
            int up = (v > m) | (v != v);                                                           \
            m = up ? v : m; k = up ? 1 : k;                                                        \
            v = a1[2 * q]; up = (v > m) | (v != v);                                                \
            m = up ? v : m; k = up ? w : k;                                                        \
            v = a1[2 * q + 1]; up = (v > m) | (v != v);                                            \
            m = up ? v : m; k = up ? w1 : k;                                                       \
            yr[q] = m;                                                                             \
            ir[q] = base + 2 * q + k;                                                              \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_k2_rows_##SFX, (const T *x, T *y, int64_t *idx, const fc_pool_geom *g, int mode,     \
                             ptrdiff_t r0, ptrdiff_t r1), (x, y, idx, g, mode, r0, r1))            \
static int fc_zfwd_##SFX(const T *x, T *y, int64_t *idx, const T *cdiv, const fc_pool_geom *g,    \
                         int mode, int nt) {                                                       \
    fc_zgeom z;                                                                                    \
    int err = 0;                                                                                   \
    if (fc_is_k2(g)) {                                                                             \
        _Pragma("omp parallel num_threads(nt)")                                                   \
        {                                                                                          \
            ptrdiff_t r0, r1;                                                                      \
            fc_split(g->planes * g->P, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);     \
            fc_k2_rows_##SFX(x, y, idx, g, mode, r0, r1);                                          \
        }                                                                                          \
        return 0;                                                                                  \
    }                                                                                              \
    /* tap offsets oi * W + oj are int32 */                                                        \
    if (((ptrdiff_t)(g->kh - 1) * g->dh + g->ph + 1) * g->W + (ptrdiff_t)(g->kw - 1) * g->dw       \
        >= ((ptrdiff_t)1 << 31)) return -2;                                                        \
    if (fc_zgeom_make(&z, g)) { fc_zgeom_free(&z); return -1; }                                    \
    const size_t nz = (size_t)g->sh * g->sw * z.zplane, nm = (size_t)z.R * z.L;                   \
    const size_t nyb = (size_t)z.R * g->Q;                                                         \
    const int stream = FC_STREAM && g->planes * g->P * g->Q * (ptrdiff_t)(sizeof(T) + (mode ? 0 : 8)) \
                       >= FC_STREAM_BYTES;                                                         \
    _Pragma("omp parallel num_threads(nt) reduction(|:err)")                                      \
    {                                                                                              \
        ptrdiff_t u0, u1;                                                                          \
        fc_split(g->planes * z.nblk, omp_get_thread_num(), omp_get_num_threads(), &u0, &u1);       \
        T *Z = (T *)malloc(sizeof(T) * (nz + nm + (stream ? nyb : 0)));                            \
        int32_t *am = (int32_t *)malloc(sizeof(int32_t) * nm);                                     \
        int64_t *ib = stream && !mode ? (int64_t *)malloc(sizeof(int64_t) * nyb) : NULL;           \
        if (!Z || !am || (stream && !mode && !ib)) err = 1;                                        \
        else fc_zfwd_run_##SFX(x, y, idx, cdiv, Z, Z + nz, am, stream ? Z + nz + nm : NULL, ib, g, \
                               &z, u0, u1, mode);                                                  \
        free(Z);                                                                                   \
        free(am);                                                                                  \
        free(ib);                                                                                  \
    }                                                                                              \
    fc_zgeom_free(&z);                                                                             \
    return err ? -1 : 0;                                                                           \
}                                                                                                  \
static int fc_max_fwd_##SFX(const T *x, T *y, int64_t *idx, const fc_pool_geom *g, int nt) {       \
    return fc_zfwd_##SFX(x, y, idx, NULL, g, 0, nt);                                               \
}

FC_ZFWD(float, f32)
FC_ZFWD(double, f64)

/* ------------------------------------------------------------------ max pool backward */
/* dx planes zeroed and scattered by the same thread (the plane is still in cache);
 * returns the number of indices outside [0, hw) (skipped). */
#define FC_MAX_BWD(T, SFX)                                                                         \
static ptrdiff_t fc_max_bwd_##SFX(const T *restrict dy, const int64_t *restrict idx, T *restrict dx, \
                                  ptrdiff_t planes, ptrdiff_t pq, ptrdiff_t hw, int nt) {          \
    ptrdiff_t bad = 0;                                                                             \
    const int stream = FC_STREAM && planes * hw * (ptrdiff_t)sizeof(T) >= FC_STREAM_BYTES;         \
    _Pragma("omp parallel num_threads(nt) reduction(+:bad)")                                      \
    {                                                                                              \
        T *buf = stream ? (T *)malloc(sizeof(T) * (size_t)hw) : NULL;                              \
        ptrdiff_t p0, p1;                                                                          \
        fc_split(planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);                   \
        for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                   \
            T *restrict d = buf ? buf : dx + pl * hw;                                              \
            const T *restrict g = dy + pl * pq;                                                    \
            const int64_t *restrict ix = idx + pl * pq;                                            \
            memset(d, 0, sizeof(T) * (size_t)hw);                                                  \
            for (ptrdiff_t i = 0; i < pq; i++) {                                                   \
                int64_t j = ix[i];                                                                 \
                if ((uint64_t)j < (uint64_t)hw) d[j] += g[i];                                      \
                else bad++;                                                                        \
            }                                                                                      \
            if (buf) fc_stream_##SFX(dx + pl * hw, buf, hw);                                       \
        }                                                                                          \
        if (buf) FC_SFENCE();                                                                      \
        free(buf);                                                                                 \
    }                                                                                              \
    return bad;                                                                                    \
}
FC_MAX_BWD(float, f32)
FC_MAX_BWD(double, f64)

#include "_pool_avg_impl.h"
