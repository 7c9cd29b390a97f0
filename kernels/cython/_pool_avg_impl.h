/* Average pooling for _pool_impl.h (included at its end): the average-pool forward runs the
 * shared phase-plane engine there; its backward gathers per input row here; global average
 * pooling is one reduction (forward) or fill (backward) per plane. */

/* Per-call column tables: for tap column j, outputs q in [qlo[j], qhi[j]) read input column
 * q*sw - pw + j*dw inside [0, W). */
typedef struct {
    int *qlo, *qhi;
} fc_cols;

static int fc_cols_make(fc_cols *c, const fc_pool_geom *g) {
    c->qlo = (int *)malloc(sizeof(int) * (size_t)(2 * g->kw));
    if (!c->qlo) return -1;
    c->qhi = c->qlo + g->kw;
    for (int j = 0; j < g->kw; j++) {
        int off = j * g->dw - g->pw, lo = 0, hi = g->Q;
        while (lo < hi && lo * g->sw + off < 0) lo++;
        while (hi > lo && (hi - 1) * g->sw + off >= g->W) hi--;
        c->qlo[j] = lo;
        c->qhi[j] = hi;
    }
    return 0;
}

/* ------------------------------------------------------------------ average pool */
#define FC_AVG(T, SFX)                                                                             \
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
FC_INLINE void fc_avgb_planes_##SFX##_impl(const T *restrict dy, T *restrict dx, T *gs, T *acc,   \
                                           const fc_pool_geom *g, const fc_cols *c, const T *cdiv, \
                                           ptrdiff_t p0, ptrdiff_t p1) {                           \
    const ptrdiff_t hw = (ptrdiff_t)g->H * g->W, pq = (ptrdiff_t)g->P * g->Q;                      \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        if (g->sw == 1) fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, acc, g, c, cdiv, 1);   \
        else if (g->sw == 2) fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, acc, g, c, cdiv, 2); \
        else fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, acc, g, c, cdiv, g->sw);          \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_avgb_planes_##SFX, (const T *dy, T *dx, T *gs, T *acc, const fc_pool_geom *g,         \
                                 const fc_cols *c, const T *cdiv, ptrdiff_t p0, ptrdiff_t p1),     \
          (dy, dx, gs, acc, g, c, cdiv, p0, p1))                                                   \
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
    if (!bwd) {                                                                                    \
        err = fc_zfwd_##SFX(src, dst, NULL, cdiv, g, 1, nt);                                       \
    } else {                                                                                       \
        _Pragma("omp parallel num_threads(nt) reduction(|:err)")                                  \
        {                                                                                          \
            ptrdiff_t r0, r1;                                                                      \
            const int Wp = (g->W + g->sw - 1) / g->sw;                                             \
            T *gs = (T *)malloc(sizeof(T) * ((size_t)g->P * g->Q + (size_t)g->sw * Wp));           \
            fc_split(g->planes, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);            \
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
#define FC_GAP_BLOCK 256
#define FC_GAP(T, SFX)                                                                             \
FC_INLINE void fc_gap_fwd_rng_##SFX##_impl(const T *restrict x, T *restrict y, ptrdiff_t n,       \
                                           ptrdiff_t p0, ptrdiff_t p1) {                           \
    const double inv = 1.0 / (double)n;                                                            \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        const T *restrict xp = x + pl * n;                                                         \
        double s = 0;                                                                              \
        for (ptrdiff_t i0 = 0; i0 < n; i0 += FC_GAP_BLOCK) { /* T sums of <= 256, added in double */ \
            const ptrdiff_t i1 = n - i0 < FC_GAP_BLOCK ? n : i0 + FC_GAP_BLOCK;                    \
            T b = 0;                                                                               \
            for (ptrdiff_t i = i0; i < i1; i++) b += xp[i];                                        \
            s += (double)b;                                                                        \
        }                                                                                          \
        y[pl] = (T)(s * inv);                                                                      \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_gap_fwd_rng_##SFX, (const T *x, T *y, ptrdiff_t n, ptrdiff_t p0, ptrdiff_t p1),       \
          (x, y, n, p0, p1))                                                                       \
FC_INLINE void fc_gap_bwd_rng_##SFX##_impl(const T *restrict dy, T *restrict dx, ptrdiff_t n,      \
                                           ptrdiff_t p0, ptrdiff_t p1) {                           \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        const T v = (T)((double)dy[pl] / (double)n);                                               \
        T *restrict d = dx + pl * n;                                                               \
        for (ptrdiff_t i = 0; i < n; i++) d[i] = v;                                                \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_gap_bwd_rng_##SFX, (const T *dy, T *dx, ptrdiff_t n, ptrdiff_t p0, ptrdiff_t p1),     \
          (dy, dx, n, p0, p1))                                                                     \
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
