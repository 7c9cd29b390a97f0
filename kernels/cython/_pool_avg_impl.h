/* Average pooling for _pool_impl.h (included at its end): the average-pool forward runs the
 * shared phase-plane engine there; its backward gathers per input row here; global average
 * pooling is one reduction (forward) or fill (backward) per plane. */

/* ------------------------------------------------------------------ average pool */
#define FC_AVG(T, SFX)                                                                             \
/* Backward, one dx row at a time (each element written once, no zero pass): gs = dy / divisor  \
 * for the plane; for input row ih, r = sum of the gs rows whose windows cover ih (zero margins   \
 * around it), then column phase b of the row is sum over taps j with (b + pw - j) % SW == 0 of  \
 * r shifted by (b + pw - j) / SW: every pass is a unit-stride vector loop that rewrites the same  \
 * aligned elements (no partially overlapping store->load forwarding). */                         \
FC_INLINE void fc_avgb_plane_##SFX(const T *restrict gp, T *restrict d, T *restrict gs,           \
                                   T *restrict r, T *restrict acc, const fc_pool_geom *g,         \
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
        int plo = ih + g->ph - g->kh + 1, phi = (ih + g->ph) / g->sh;                              \
        plo = plo <= 0 ? 0 : (plo + g->sh - 1) / g->sh;                                            \
        if (phi > g->P - 1) phi = g->P - 1;                                                        \
        for (ptrdiff_t q = 0; q < Q; q++) r[q] = plo <= phi ? gs[plo * Q + q] : 0;                 \
        for (int p = plo + 1; p <= phi; p++) {                                                     \
            const T *restrict gr = gs + p * Q;                                                     \
            FC_NOJAM();                                                                            \
            for (ptrdiff_t q = 0; q < Q; q++) r[q] += gr[q];                                       \
        }                                                                                          \
        T *restrict dr = d + (ptrdiff_t)ih * W;                                                    \
        for (int b = 0; b < SW; b++) {                                                             \
            T *restrict o = SW == 1 ? dr : acc + (ptrdiff_t)b * Wp;                                \
            const ptrdiff_t nb = (W - b + SW - 1) / SW;                                            \
            int first = 1;                                                                         \
            for (int j = 0; j < g->kw; j++) {                                                      \
                const int t = b + g->pw - j;                                                       \
                if (((t % SW) + SW) % SW) continue;                                                \
                const T *restrict src = r + fc_fdiv(t, SW);                                        \
                FC_NOJAM();                                                                        \
                if (first) for (ptrdiff_t k = 0; k < nb; k++) o[k] = src[k];                       \
                else for (ptrdiff_t k = 0; k < nb; k++) o[k] += src[k];                            \
                first = 0;                                                                         \
            }                                                                                      \
            if (first) for (ptrdiff_t k = 0; k < nb; k++) o[k] = 0;                                \
        }                                                                                          \
        if (SW == 2) {                                                                             \
            const ptrdiff_t h = W / 2;                                                             \
            const T *restrict a1 = acc + Wp;                                                       \
            for (ptrdiff_t k = 0; k < h; k++) { dr[2 * k] = acc[k]; dr[2 * k + 1] = a1[k]; }       \
            if (W & 1) dr[W - 1] = acc[h];                                                         \
        } else if (SW > 2) {                                                                       \
            for (ptrdiff_t b = 0; b < SW; b++)                                                     \
                for (ptrdiff_t k = 0; k * SW + b < W; k++) dr[k * SW + b] = acc[b * Wp + k];      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* r: kw zeros, Q row sums, W + pw + 1 zeros */                                                    \
FC_INLINE void fc_avgb_planes_##SFX##_impl(const T *restrict dy, T *restrict dx, T *gs, T *r,     \
                                           T *acc, const fc_pool_geom *g, const T *cdiv,           \
                                           ptrdiff_t p0, ptrdiff_t p1) {                           \
    const ptrdiff_t hw = (ptrdiff_t)g->H * g->W, pq = (ptrdiff_t)g->P * g->Q;                      \
    memset(r, 0, sizeof(T) * (size_t)(g->kw + g->Q + g->W + g->pw + 1));                           \
    r += g->kw;                                                                                    \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        if (g->sw == 1) fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, r, acc, g, cdiv, 1);   \
        else if (g->sw == 2) fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, r, acc, g, cdiv, 2); \
        else fc_avgb_plane_##SFX(dy + pl * pq, dx + pl * hw, gs, r, acc, g, cdiv, g->sw);          \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_avgb_planes_##SFX, (const T *dy, T *dx, T *gs, T *r, T *acc, const fc_pool_geom *g,   \
                                 const T *cdiv, ptrdiff_t p0, ptrdiff_t p1),                       \
          (dy, dx, gs, r, acc, g, cdiv, p0, p1))                                                   \
static T *fc_avg_cdiv_##SFX(const fc_pool_geom *g) {                                               \
    T *cdiv = (T *)malloc(sizeof(T) * (size_t)g->Q);                                               \
    if (cdiv)                                                                                      \
        for (int q = 0; q < g->Q; q++) {                                                           \
            int w0, w1;                                                                            \
            cdiv[q] = (T)fc_avg_extent(q, g->sw, g->pw, g->kw, g->W, g->include_pad, &w0, &w1);  \
        }                                                                                          \
    return cdiv;                                                                                   \
}                                                                                                  \
/* 2x2 / stride 2 backward (fc_is_k2): every dx element is dy / 4 of its one window, or 0 in a    \
 * row / column no window covers. */                                                              \
FC_INLINE void fc_k2b_planes_##SFX##_impl(const T *restrict dy, T *restrict dx, const fc_pool_geom *g, \
                                          ptrdiff_t p0, ptrdiff_t p1) {                            \
    const ptrdiff_t W = g->W, H = g->H, P = g->P, Q = g->Q;                                        \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        T *restrict d = dx + pl * H * W;                                                           \
        for (ptrdiff_t p = 0; p < P; p++) {                                                        \
            const T *restrict gr = dy + (pl * P + p) * Q;                                          \
            T *restrict d0 = d + 2 * p * W, *restrict d1 = d0 + W;                                 \
            for (ptrdiff_t q = 0; q < Q; q++) {                                                    \
                const T v = gr[q] / (T)4;                                                          \
                d0[2 * q] = v; d0[2 * q + 1] = v; d1[2 * q] = v; d1[2 * q + 1] = v;                \
            }                                                                                      \
            for (ptrdiff_t w = 2 * Q; w < W; w++) { d0[w] = 0; d1[w] = 0; }                        \
        }                                                                                          \
        if (2 * P < H) memset(d + 2 * P * W, 0, sizeof(T) * (size_t)((H - 2 * P) * W));           \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_k2b_planes_##SFX, (const T *dy, T *dx, const fc_pool_geom *g, ptrdiff_t p0, ptrdiff_t p1), \
          (dy, dx, g, p0, p1))                                                                     \
/* bwd = 0: dst = avg_pool(src); bwd = 1: dst = dx for dy = src (every element written) */         \
static int fc_avg_##SFX(const T *src, T *dst, const fc_pool_geom *g, int bwd, int nt) {           \
    int err = 0;                                                                                   \
    if (bwd && fc_is_k2(g)) {                                                                      \
        _Pragma("omp parallel num_threads(nt)")                                                   \
        {                                                                                          \
            ptrdiff_t p0, p1;                                                                      \
            fc_split(g->planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);            \
            fc_k2b_planes_##SFX(src, dst, g, p0, p1);                                              \
        }                                                                                          \
        return 0;                                                                                  \
    }                                                                                              \
    T *cdiv = fc_avg_cdiv_##SFX(g);                                                                \
    if (!cdiv) return -1;                                                                          \
    if (!bwd) {                                                                                    \
        err = fc_zfwd_##SFX(src, dst, NULL, cdiv, g, 1, nt);                                       \
    } else {                                                                                       \
        const size_t ngs = (size_t)g->P * g->Q, nr = (size_t)(g->kw + g->Q + g->W + g->pw + 1);    \
        const size_t nacc = (size_t)g->sw * ((g->W + g->sw - 1) / g->sw);                          \
        _Pragma("omp parallel num_threads(nt) reduction(|:err)")                                  \
        {                                                                                          \
            ptrdiff_t r0, r1;                                                                      \
            T *gs = (T *)malloc(sizeof(T) * (ngs + nr + nacc));                                    \
            fc_split(g->planes, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);            \
            if (!gs) err = 1;                                                                      \
            else fc_avgb_planes_##SFX(src, dst, gs, gs + ngs, gs + ngs + nr, g, cdiv, r0, r1);     \
            free(gs);                                                                              \
        }                                                                                          \
    }                                                                                              \
    free(cdiv);                                                                                    \
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

/* ------------------------------------------------------------------ general adaptive average pool */
/* Bins [floor(i*n/o), ceil((i+1)*n/o)) are separable: forward sums each output row's input rows
 * (float64, vector adds over the whole row) and then each column bin of that row sum; backward
 * spreads dy / area over the column bins of a row buffer, then adds that buffer into every input
 * row of the bin. */
#define FC_BIN0(i, n, o) ((int)(((ptrdiff_t)(i) * (n)) / (o)))
#define FC_BIN1(i, n, o) ((int)((((ptrdiff_t)(i) + 1) * (n) + (o) - 1) / (o)))
#define FC_ADAPT(T, SFX)                                                                           \
FC_INLINE void fc_adapt_rng_##SFX##_impl(const T *restrict src, T *restrict dst, double *restrict rs, \
                                         const fc_pool_geom *g, int bwd, ptrdiff_t p0, ptrdiff_t p1) { \
    const int H = g->H, W = g->W, P = g->P, Q = g->Q;                                              \
    for (ptrdiff_t pl = p0; pl < p1; pl++) {                                                       \
        const T *restrict s = src + pl * (bwd ? (ptrdiff_t)P * Q : (ptrdiff_t)H * W);              \
        T *restrict d = dst + pl * (bwd ? (ptrdiff_t)H * W : (ptrdiff_t)P * Q);                    \
        if (bwd) memset(d, 0, sizeof(T) * (size_t)H * W);                                          \
        for (int p = 0; p < P; p++) {                                                              \
            const int h0 = FC_BIN0(p, H, P), h1 = FC_BIN1(p, H, P);                                \
            if (!bwd) {                                                                            \
                for (ptrdiff_t w = 0; w < W; w++) rs[w] = 0;                                       \
                for (int ih = h0; ih < h1; ih++) {                                                 \
                    const T *restrict xr = s + (ptrdiff_t)ih * W;                                  \
                    FC_NOJAM();                                                                    \
                    for (ptrdiff_t w = 0; w < W; w++) rs[w] += (double)xr[w];                      \
                }                                                                                  \
                for (int q = 0; q < Q; q++) {                                                      \
                    const int w0 = FC_BIN0(q, W, Q), w1 = FC_BIN1(q, W, Q);                        \
                    double a = 0;                                                                  \
                    for (int w = w0; w < w1; w++) a += rs[w];                                      \
                    d[p * Q + q] = (T)(a / ((double)(h1 - h0) * (w1 - w0)));                       \
                }                                                                                  \
            } else {                                                                               \
                for (ptrdiff_t w = 0; w < W; w++) rs[w] = 0;                                       \
                for (int q = 0; q < Q; q++) {                                                      \
                    const int w0 = FC_BIN0(q, W, Q), w1 = FC_BIN1(q, W, Q);                        \
                    const double v = (double)s[p * Q + q] / ((double)(h1 - h0) * (w1 - w0));       \
                    for (int w = w0; w < w1; w++) rs[w] += v;                                      \
                }                                                                                  \
                for (int ih = h0; ih < h1; ih++) {                                                 \
                    T *restrict dr = d + (ptrdiff_t)ih * W;                                        \
                    FC_NOJAM();                                                                    \
                    for (ptrdiff_t w = 0; w < W; w++) dr[w] = (T)((double)dr[w] + rs[w]);          \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FC_ISA_FN(fc_adapt_rng_##SFX, (const T *src, T *dst, double *rs, const fc_pool_geom *g, int bwd,   \
                               ptrdiff_t p0, ptrdiff_t p1), (src, dst, rs, g, bwd, p0, p1))        \
/* bwd = 0: dst (planes, P, Q) = adaptive mean of src (planes, H, W); 1: dst = dx for dy = src */  \
static int fc_adapt_##SFX(const T *src, T *dst, const fc_pool_geom *g, int bwd, int nt) {         \
    int err = 0;                                                                                   \
    _Pragma("omp parallel num_threads(nt) reduction(|:err)")                                      \
    {                                                                                              \
        ptrdiff_t p0, p1;                                                                          \
        double *rs = (double *)malloc(sizeof(double) * (size_t)g->W);                              \
        fc_split(g->planes, omp_get_thread_num(), omp_get_num_threads(), &p0, &p1);                \
        if (!rs) err = 1;                                                                          \
        else fc_adapt_rng_##SFX(src, dst, rs, g, bwd, p0, p1);                                     \
        free(rs);                                                                                  \
    }                                                                                              \
    return err ? -1 : 0;                                                                           \
}
FC_ADAPT(float, f32)
FC_ADAPT(double, f64)
