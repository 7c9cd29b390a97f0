/* 2-D pooling loops for pool.pyx (OpenMP over output rows or planes, SIMD over output columns).
 *
 * Every window loop is written "tap outer, output column inner": for one output row, for each
 * window tap (i, j) one branch-free pass over the output columns q whose tap (i, j) lies inside
 * the input ([qlo[j], qhi[j]) precomputed), updating a row of running maxima / sums that stays in
 * L1.  The taps are visited in PyTorch's window order (i outer, j inner), so the max-pool select
 * (v > m || isnan(v)) gives exactly PyTorch's value and index (first maximum; a NaN wins and the
 * last NaN of the window is reported).  Column strides 1 and 2 get their own compiled copies so
 * the inner loop is a plain (or even/odd) vector loop; each hot function is compiled for AVX-512,
 * AVX2 and baseline x86-64 (target_clones, picked at load time), as _act_impl.h does.
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_POOL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_POOL_CLONES
#endif
#define FC_INLINE static inline __attribute__((always_inline))

typedef struct {
    ptrdiff_t planes;
    int H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw, include_pad;
} fc_pool_geom;

/* Per-call column tables: for tap column j, outputs q in [qlo[j], qhi[j]) read input column
 * q*sw - pw + j*dw inside [0, W); w0[q] is the first in-range column of window q. */
typedef struct {
    int *qlo, *qhi, *w0;
} fc_cols;

static int fc_cols_make(fc_cols *c, const fc_pool_geom *g) {
    c->qlo = (int *)malloc(sizeof(int) * (size_t)(2 * g->kw + g->Q));
    if (!c->qlo) return -1;
    c->qhi = c->qlo + g->kw;
    c->w0 = c->qhi + g->kw;
    for (int j = 0; j < g->kw; j++) {
        int off = j * g->dw - g->pw, lo = 0, hi = g->Q;
        while (lo < hi && lo * g->sw + off < 0) lo++;
        while (hi > lo && (hi - 1) * g->sw + off >= g->W) hi--;
        c->qlo[j] = lo;
        c->qhi[j] = hi;
    }
    for (int q = 0; q < g->Q; q++) {
        int w = q * g->sw - g->pw;
        while (w < 0) w += g->dw;
        c->w0[q] = w;
    }
    return 0;
}

/* rows [r0, r1) of the flat (plane, output row) range assigned to thread t of nt */
FC_INLINE void fc_split(ptrdiff_t n, int t, int nt, ptrdiff_t *r0, ptrdiff_t *r1) {
    ptrdiff_t q = n / nt, r = n % nt;
    *r0 = t * q + (t < r ? t : r);
    *r1 = *r0 + q + (t < r);
}

/* ------------------------------------------------------------------ strided rows */
/* A column stride sw > 1 would make every tap a strided (gathered) load.  Instead each input row
 * is split once into its sw column phases, phase r holding columns r, r + sw, ... (Wp = ceil(W/sw)
 * each); tap column q*sw + off is then element q + floor(off/sw) of phase off mod sw: unit stride.
 * A thread keeps the last `slots` split rows (tagged by plane and row), so a row shared by
 * neighbouring output rows (3x3 stride 2: every other row) is split once. */
typedef struct {
    void *buf;
    ptrdiff_t *tag;  /* plane * H + row held by each slot, -1: empty */
    int slots, Wp;
} fc_phases;

static int fc_phases_make(fc_phases *ph, const fc_pool_geom *g, size_t itemsize) {
    ph->slots = g->sw > 1 ? g->kh : 0;
    ph->Wp = (g->W + g->sw - 1) / g->sw;
    ph->buf = NULL;
    ph->tag = NULL;
    if (!ph->slots) return 0;
    ph->buf = malloc(itemsize * (size_t)ph->slots * (size_t)g->sw * (size_t)ph->Wp);
    ph->tag = (ptrdiff_t *)malloc(sizeof(ptrdiff_t) * (size_t)ph->slots);
    if (!ph->buf || !ph->tag) return -1;
    for (int s = 0; s < ph->slots; s++) ph->tag[s] = -1;
    return 0;
}
static void fc_phases_free(fc_phases *ph) { free(ph->buf); free(ph->tag); }

#define FC_PHASED(T, SFX)                                                                          \
FC_INLINE const T *fc_phased_##SFX(fc_phases *ph, const T *restrict row, ptrdiff_t key, int W,    \
                                   const int SW) {                                                 \
    if (SW == 1) return row;                                                                       \
    const int s = (int)(key % ph->slots), Wp = ph->Wp;                                             \
    T *restrict b = (T *)ph->buf + (ptrdiff_t)s * SW * Wp;                                         \
    if (ph->tag[s] != key) {                                                                       \
        ph->tag[s] = key;                                                                          \
        if (SW == 2) {                                                                             \
            const ptrdiff_t n = W / 2;                                                             \
            T *restrict b1 = b + Wp;                                                               \
            for (ptrdiff_t k = 0; k < n; k++) { b[k] = row[2 * k]; b1[k] = row[2 * k + 1]; }       \
            if (W & 1) b[n] = row[W - 1];                                                          \
        } else {                                                                                   \
            for (ptrdiff_t r = 0; r < SW; r++)                                                     \
                for (ptrdiff_t k = 0; k * SW + r < W; k++) b[r * Wp + k] = row[k * SW + r];       \
        }                                                                                          \
    }                                                                                              \
    return b;                                                                                      \
}
FC_PHASED(float, f32)
FC_PHASED(double, f64)

/* Tap column offset off: input column q*SW + off is src[q] of the returned pointer (only
 * dereferenced for q in the tap's [qlo, qhi), which is in range). */
#define fc_tap(prow, off, SW, Wp)                                                                  \
    ((prow) + (ptrdiff_t)((((off) % (SW)) + (SW)) % (SW)) * (Wp)                                   \
            + (ptrdiff_t)(((off) - ((((off) % (SW)) + (SW)) % (SW))) / (SW)))

/* ------------------------------------------------------------------ max pool forward */
#define FC_MAX_ROW(T, IT, SFX, TS)                                                                   \
FC_INLINE void fc_max_row_##SFX(const T *restrict xp, ptrdiff_t pl, T *restrict yr,               \
                                IT *restrict ar, int64_t *restrict ir, const fc_pool_geom *g,     \
                                const fc_cols *c, fc_phases *ph, int p, const int SW) {           \
    const int Q = g->Q, W = g->W, hs = p * g->sh - g->ph, Wp = SW == 1 ? W : ph->Wp;               \
    int i0 = 0;                                                                                    \
    while (hs + i0 * g->dh < 0) i0++;                                                              \
    const IT hb = (IT)(hs + i0 * g->dh) * W;                                                       \
    for (ptrdiff_t q = 0; q < Q; q++) { yr[q] = (T)-INFINITY; ar[q] = hb + c->w0[q]; }             \
    for (int i = i0; i < g->kh; i++) {                                                             \
        const int ih = hs + i * g->dh;                                                             \
        if (ih >= g->H) break;                                                                     \
        const T *prow = fc_phased_##TS(ph,  xp + (ptrdiff_t)ih * W, pl * g->H + ih, W, SW);        \
        for (int j = 0; j < g->kw; j++) {                                                          \
            const int off = j * g->dw - g->pw;                                                     \
            const T *restrict src = fc_tap(prow, off, SW, Wp);                                     \
            const ptrdiff_t hi = c->qhi[j];                                                        \
            const IT base = (IT)ih * W + off;                                                      \
            for (ptrdiff_t q = c->qlo[j]; q < hi; q++) {                                           \
                T v = src[q], m = yr[q];                                                           \
                int up = (v > m) | (v != v);                                                       \
                yr[q] = up ? v : m;                                                                \
                ar[q] = up ? base + (IT)q * SW : ar[q];                                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    for (ptrdiff_t q = 0; q < Q; q++) ir[q] = (int64_t)ar[q];                                      \
}                                                                                                  \
FC_POOL_CLONES static void fc_max_rows_##SFX(const T *restrict x, T *restrict y, int64_t *restrict idx, \
                                             IT *restrict ar, const fc_pool_geom *g, const fc_cols *c, \
                                             fc_phases *ph, ptrdiff_t r0, ptrdiff_t r1) {          \
    for (ptrdiff_t r = r0; r < r1; r++) {                                                          \
        const ptrdiff_t pl = r / g->P;                                                             \
        const int p = (int)(r % g->P);                                                             \
        const T *xp = x + pl * g->H * g->W;                                                        \
        T *yr = y + r * g->Q;                                                                      \
        int64_t *ir = idx + r * g->Q;                                                              \
        if (g->sw == 1) fc_max_row_##SFX(xp, pl, yr, ar, ir, g, c, ph, p, 1);                      \
        else if (g->sw == 2) fc_max_row_##SFX(xp, pl, yr, ar, ir, g, c, ph, p, 2);                 \
        else fc_max_row_##SFX(xp, pl, yr, ar, ir, g, c, ph, p, g->sw);                             \
    }                                                                                              \
}

FC_MAX_ROW(float, int32_t, f32, f32)
FC_MAX_ROW(double, int32_t, f64, f64)
FC_MAX_ROW(float, int64_t, f32_l, f32)
FC_MAX_ROW(double, int64_t, f64_l, f64)

#define FC_MAX_FWD(T, SFX)                                                                         \
static int fc_max_fwd_##SFX(const T *x, T *y, int64_t *idx, const fc_pool_geom *g, int nt) {       \
    fc_cols c;                                                                                     \
    int err = 0;                                                                                   \
    if (fc_cols_make(&c, g)) return -1;                                                            \
    const int big = (ptrdiff_t)g->H * g->W >= ((ptrdiff_t)1 << 31);                                \
    _Pragma("omp parallel num_threads(nt) reduction(|:err)")                                      \
    {                                                                                              \
        ptrdiff_t r0, r1;                                                                          \
        fc_phases ph;                                                                              \
        fc_split(g->planes * g->P, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);         \
        void *ar = malloc((big ? sizeof(int64_t) : sizeof(int32_t)) * (size_t)g->Q);               \
        if (!ar || fc_phases_make(&ph, g, sizeof(T))) err = 1;                                     \
        else if (big) fc_max_rows_##SFX##_l(x, y, idx, (int64_t *)ar, g, &c, &ph, r0, r1);         \
        else fc_max_rows_##SFX(x, y, idx, (int32_t *)ar, g, &c, &ph, r0, r1);                      \
        free(ar);                                                                                  \
        fc_phases_free(&ph);                                                                       \
    }                                                                                              \
    free(c.qlo);                                                                                   \
    return err ? -1 : 0;                                                                           \
}
FC_MAX_FWD(float, f32)
FC_MAX_FWD(double, f64)

/* ------------------------------------------------------------------ max pool backward */
/* dx planes zeroed and scattered by the same thread (the plane is still in cache);
 * returns the number of indices outside [0, hw) (skipped). */
#define FC_MAX_BWD(T, SFX)                                                                         \
static ptrdiff_t fc_max_bwd_##SFX(const T *restrict dy, const int64_t *restrict idx, T *restrict dx, \
                                  ptrdiff_t planes, ptrdiff_t pq, ptrdiff_t hw, int nt) {          \
    ptrdiff_t bad = 0;                                                                             \
    _Pragma("omp parallel for num_threads(nt) schedule(static) reduction(+:bad)")                 \
    for (ptrdiff_t pl = 0; pl < planes; pl++) {                                                    \
        T *restrict d = dx + pl * hw;                                                              \
        const T *restrict g = dy + pl * pq;                                                        \
        const int64_t *restrict ix = idx + pl * pq;                                                \
        memset(d, 0, sizeof(T) * (size_t)hw);                                                      \
        for (ptrdiff_t i = 0; i < pq; i++) {                                                       \
            int64_t j = ix[i];                                                                     \
            if ((uint64_t)j < (uint64_t)hw) d[j] += g[i];                                          \
            else bad++;                                                                            \
        }                                                                                          \
    }                                                                                              \
    return bad;                                                                                    \
}
FC_MAX_BWD(float, f32)
FC_MAX_BWD(double, f64)

/* ------------------------------------------------------------------ average pool */
/* PyTorch's divisor is separable: rows(p) * cols(q), each the window extent clipped to the
 * padded input (count_include_pad) or to the input. */
FC_INLINE int fc_avg_extent(int o, int s, int pad, int k, int n, int inc, int *a0, int *a1) {
    int a = o * s - pad, ae = a + k < n + pad ? a + k : n + pad;
    *a0 = a > 0 ? a : 0;
    *a1 = ae < n ? ae : n;
    if (*a0 >= *a1) return 0;
    return inc ? ae - a : *a1 - *a0;
}

#define FC_AVG(T, SFX)                                                                             \
FC_INLINE void fc_avg_row_##SFX(const T *restrict xp, ptrdiff_t pl, T *restrict yr,               \
                                const fc_pool_geom *g, const fc_cols *c, fc_phases *ph,           \
                                const T *restrict cdiv, int p, const int SW) {                    \
    int h0, h1, rd = fc_avg_extent(p, g->sh, g->ph, g->kh, g->H, g->include_pad, &h0, &h1);      \
    const ptrdiff_t Q = g->Q;                                                                      \
    const int W = g->W, Wp = SW == 1 ? W : ph->Wp;                                                 \
    for (ptrdiff_t q = 0; q < Q; q++) yr[q] = 0;                                                   \
    if (!rd) return;                                                                               \
    for (int ih = h0; ih < h1; ih++) {                                                             \
        const T *prow = fc_phased_##SFX(ph, xp + (ptrdiff_t)ih * W, pl * g->H + ih, W, SW);        \
        for (int j = 0; j < g->kw; j++) {                                                          \
            const T *restrict src = fc_tap(prow, j - g->pw, SW, Wp);                               \
            const ptrdiff_t hi = c->qhi[j];                                                        \
            for (ptrdiff_t q = c->qlo[j]; q < hi; q++) yr[q] += src[q];                            \
        }                                                                                          \
    }                                                                                              \
    for (ptrdiff_t q = 0; q < Q; q++) yr[q] = cdiv[q] == 0 ? 0 : yr[q] / (cdiv[q] * (T)rd);        \
}                                                                                                  \
FC_POOL_CLONES static void fc_avg_rows_##SFX(const T *restrict x, T *restrict y, const fc_pool_geom *g, \
                                             const fc_cols *c, fc_phases *ph, const T *cdiv,       \
                                             ptrdiff_t r0, ptrdiff_t r1) {                         \
    for (ptrdiff_t r = r0; r < r1; r++) {                                                          \
        const ptrdiff_t pl = r / g->P;                                                             \
        const T *xp = x + pl * g->H * g->W;                                                        \
        const int p = (int)(r % g->P);                                                             \
        if (g->sw == 1) fc_avg_row_##SFX(xp, pl, y + r * g->Q, g, c, ph, cdiv, p, 1);              \
        else if (g->sw == 2) fc_avg_row_##SFX(xp, pl, y + r * g->Q, g, c, ph, cdiv, p, 2);         \
        else fc_avg_row_##SFX(xp, pl, y + r * g->Q, g, c, ph, cdiv, p, g->sw);                     \
    }                                                                                              \
}                                                                                                  \
/* Backward, one dx row at a time (written once, no zero pass over dx): gs = dy / divisor for the \
 * plane, then each input row gathers the output rows whose windows cover it, accumulating in   \
 * column phases (acc) and interleaving them back into the row. */                                 \
FC_INLINE void fc_avgb_plane_##SFX(const T *restrict gp, T *restrict d, T *restrict gs,           \
                                   T *restrict acc, const fc_pool_geom *g, const fc_cols *c,      \
                                   const T *restrict cdiv, const int SW) {                        \
    const ptrdiff_t Q = g->Q;                                                                      \
    const int W = g->W, Wp = (W + SW - 1) / SW;                                                    \
    for (int p = 0; p < g->P; p++) {                                                               \
        int h0, h1, rd = fc_avg_extent(p, g->sh, g->ph, g->kh, g->H, g->include_pad, &h0, &h1);  \
        T *restrict o = gs + p * Q;                                                                \
        const T *restrict i = gp + p * Q;                                                          \
        for (ptrdiff_t q = 0; q < Q; q++) o[q] = (cdiv[q] == 0) | (rd == 0) ? 0 : i[q] / (cdiv[q] * (T)rd); \
    }                                                                                              \
    for (int ih = 0; ih < g->H; ih++) {                                                            \
        T *restrict out = SW == 1 ? d + (ptrdiff_t)ih * W : acc;                                   \
        const ptrdiff_t n = SW == 1 ? W : (ptrdiff_t)SW * Wp;                                      \
        for (ptrdiff_t k = 0; k < n; k++) out[k] = 0;                                              \
        int plo = ih + g->ph - g->kh + 1, phi = (ih + g->ph) / g->sh;                              \
        plo = plo <= 0 ? 0 : (plo + g->sh - 1) / g->sh;                                            \
        if (phi > g->P - 1) phi = g->P - 1;                                                        \
        for (int p = plo; p <= phi; p++) {                                                         \
            const T *restrict gr = gs + p * Q;                                                     \
            for (int j = 0; j < g->kw; j++) {                                                      \
                T *restrict dst = fc_tap(out, j - g->pw, SW, Wp);                                  \
                const ptrdiff_t hi = c->qhi[j];                                                    \
                for (ptrdiff_t q = c->qlo[j]; q < hi; q++) dst[q] += gr[q];                        \
            }                                                                                      \
        }                                                                                          \
        if (SW == 1) continue;                                                                     \
        T *restrict dr = d + (ptrdiff_t)ih * W;                                                    \
        if (SW == 2) {                                                                             \
            const ptrdiff_t h = W / 2;                                                             \
            const T *restrict a1 = acc + Wp;                                                       \
            for (ptrdiff_t k = 0; k < h; k++) { dr[2 * k] = acc[k]; dr[2 * k + 1] = a1[k]; }       \
            if (W & 1) dr[W - 1] = acc[h];                                                         \
        } else {                                                                                   \
            for (ptrdiff_t r = 0; r < SW; r++)                                                     \
                for (ptrdiff_t k = 0; k * SW + r < W; k++) dr[k * SW + r] = acc[r * Wp + k];      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FC_POOL_CLONES static void fc_avgb_planes_##SFX(const T *restrict dy, T *restrict dx, T *gs, T *acc, \
                                                const fc_pool_geom *g, const fc_cols *c, const T *cdiv, \
                                                ptrdiff_t p0, ptrdiff_t p1) {                      \
    const ptrdiff_t hw = (ptrdiff_t)g->H * g->W, pq = (ptrdiff_t)g->P * g->Q;                      \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        if (g->sw == 1) fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, acc, g, c, cdiv, 1);   \
        else if (g->sw == 2) fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, acc, g, c, cdiv, 2); \
        else fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, acc, g, c, cdiv, g->sw);          \
    }                                                                                              \
}                                                                                                  \
static T *fc_avg_cdiv_##SFX(const fc_pool_geom *g) {                                               \
    T *cdiv = (T *)malloc(sizeof(T) * (size_t)g->Q);                                               \
    if (cdiv)                                                                                      \
        for (int q = 0; q < g->Q; q++) {                                                           \
            int w0, w1;                                                                            \
            cdiv[q] = (T)fc_avg_extent(q, g->sw, g->pw, g->kw, g->W, g->include_pad, &w0, &w1);  \
        }                                                                                          \
    return cdiv;                                                                                   \
}                                                                                                  \
/* bwd = 0: dst = avg_pool(src); bwd = 1: dst = dx for dy = src (every element written) */         \
static int fc_avg_##SFX(const T *src, T *dst, const fc_pool_geom *g, int bwd, int nt) {           \
    fc_cols c;                                                                                     \
    int err = 0;                                                                                   \
    if (fc_cols_make(&c, g)) return -1;                                                            \
    T *cdiv = fc_avg_cdiv_##SFX(g);                                                                \
    if (!cdiv) { free(c.qlo); return -1; }                                                         \
    _Pragma("omp parallel num_threads(nt) reduction(|:err)")                                      \
    {                                                                                              \
        ptrdiff_t r0, r1;                                                                          \
        int t = omp_get_thread_num(), n = omp_get_num_threads();                                   \
        if (!bwd) {                                                                                \
            fc_phases ph;                                                                          \
            fc_split(g->planes * g->P, t, n, &r0, &r1);                                            \
            if (fc_phases_make(&ph, g, sizeof(T))) err = 1;                                        \
            else fc_avg_rows_##SFX(src, dst, g, &c, &ph, cdiv, r0, r1);                            \
            fc_phases_free(&ph);                                                                   \
        } else {                                                                                   \
            const int Wp = (g->W + g->sw - 1) / g->sw;                                             \
            T *gs = (T *)malloc(sizeof(T) * ((size_t)g->P * g->Q + (size_t)g->sw * Wp));           \
            fc_split(g->planes, t, n, &r0, &r1);                                                   \
            if (!gs) err = 1;                                                                      \
            else fc_avgb_planes_##SFX(src, dst, gs, gs + (ptrdiff_t)g->P * g->Q, g, &c, cdiv, r0, r1); \
            free(gs);                                                                              \
        }                                                                                          \
    }                                                                                              \
    free(cdiv);                                                                                    \
    free(c.qlo);                                                                                   \
    return err ? -1 : 0;                                                                           \
}
FC_AVG(float, f32)
FC_AVG(double, f64)

/* ------------------------------------------------------------------ global average pool */
/* One reduction per plane (float64 accumulation), and its backward: a fill. */
#define FC_GAP(T, SFX)                                                                             \
FC_POOL_CLONES static void fc_gap_fwd_rng_##SFX(const T *restrict x, T *restrict y, ptrdiff_t n,  \
                                                ptrdiff_t p0, ptrdiff_t p1) {                      \
    const double inv = 1.0 / (double)n;                                                            \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        const T *restrict xp = x + pl * n;                                                         \
        double s = 0;                                                                              \
        for (ptrdiff_t i = 0; i < n; i++) s += (double)xp[i];                                      \
        y[pl] = (T)(s * inv);                                                                      \
    }                                                                                              \
}                                                                                                  \
FC_POOL_CLONES static void fc_gap_bwd_rng_##SFX(const T *restrict dy, T *restrict dx, ptrdiff_t n, \
                                                ptrdiff_t p0, ptrdiff_t p1) {                      \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        const T v = (T)((double)dy[pl] / (double)n);                                               \
        T *restrict d = dx + pl * n;                                                               \
        for (ptrdiff_t i = 0; i < n; i++) d[i] = v;                                                \
    }                                                                                              \
}                                                                                                  \
static void fc_gap_##SFX(const T *src, T *dst, ptrdiff_t planes, ptrdiff_t n, int bwd, int nt) {   \
    _Pragma("omp parallel num_threads(nt)")                                                       \
    {                                                                                              \
        ptrdiff_t p0, p1;                                                                          \
        fc_split(planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);                   \
        if (bwd) fc_gap_bwd_rng_##SFX(src, dst, n, p0, p1);                                        \
        else fc_gap_fwd_rng_##SFX(src, dst, n, p0, p1);                                            \
    }                                                                                              \
}
FC_GAP(float, f32)
FC_GAP(double, f64)
