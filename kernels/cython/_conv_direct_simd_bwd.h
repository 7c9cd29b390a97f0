/* Depthwise conv2d backward kernels (strided backward-input, backward-weight) for ONE
 * element type and ONE instruction set: the second half of _conv_direct_simd.h, which
 * includes it with its types and helpers (FN, V, T, VW, ld/st, copy, zero, xload, ...)
 * defined.  Without FC_T defined it is empty (see _conv_direct_simd.h).
 */
#ifdef FC_T

/* Copy dy plane (P x Q) into the dy buffer: row p at dyb + p * DS + 16; the zeros around
 * it (16 before, up to Qb + 16 after) are the caller's and never written. */
FC_ATTR static void FN(pad_dy)(const T *restrict dy, T *restrict dyb, const fc_dwg *g) {
    for (int p = 0; p < g->P; p++)
        FN(copy)(dyb + (ptrdiff_t)p * g->DS + FC_DW_QB, dy + (ptrdiff_t)p * g->Q, g->Q);
}

/* Ring row i += transposed correlation of one dy row (src, with 16 zeros before it and
 * zeros past Q) with w, any stride: buffer row p*sh + r*dh (ring slot i % nring), phase f,
 * element m gets the sum over the taps s of phase f ((s*dw) % sw == f) of
 * w[r, s] * dy[p][m - (s*dw)/sw], one read-modify-write per vector. */
FC_ATTR static void FN(scatter_row)(const T *restrict src, const T *restrict w, T *restrict ring, int nring,
                                    int p, const fc_dwg *g) {
    const int R = g->R, S = g->S, sw = g->sw, dw = g->dw;
    const int M = (g->Qb + ((S - 1) * dw) / sw + VW - 1) / VW * VW;  /* <= Lb - base */
    for (int r = 0; r < R; r++) {
        T *rb = ring + (ptrdiff_t)((p * g->sh + r * g->dh) % nring) * g->RS + g->base;
        const T *wr = w + r * S;
        for (int f = 0; f < sw; f++) {
            int ts[FC_DW_MAXS], cs[FC_DW_MAXS], n = 0;
            for (int s = 0; s < S; s++)
                if ((s * dw) % sw == f) {
                    ts[n] = s;
                    cs[n++] = (s * dw) / sw;
                }
            if (!n) continue;
            T *d = rb + f * g->Lb;
            for (int q0 = 0; q0 < M; q0 += VW) {
                V a = FN(ld)(d + q0);
                for (int t = 0; t < n; t++) a += wr[ts[t]] * FN(ld)(src + q0 - cs[t]);
                FN(st)(d + q0, a);
            }
        }
    }
}

/* dx row ih from buffer row ih + ph (row: its start + base). */
FC_AI void FN(crop_row)(const T *row, T *dr, const fc_dwg *g, FC_IT lo, FC_IT hi) {
    const int sw = g->sw, Lb = g->Lb, W = g->W, pw = g->pw;
    int iw = 0;
    if (sw == 1) {
        FN(copy)(dr, row + pw, W);
        return;
    }
    if (sw == 2) /* dx column iw is buffer column j = iw + pw: phase j % 2, element j / 2 */
        for (; iw + 2 * VW <= W && (iw + pw) / 2 + 1 + VW <= Lb - g->base; iw += 2 * VW) {
            const int j = iw + pw, f = j % 2, m = j / 2;
            const V a = FN(ld)(row + f * Lb + m), b = FN(ld)(row + (1 - f) * Lb + m + f);
            FN(st)(dr + iw, __builtin_shuffle(a, b, lo));
            FN(st)(dr + iw + VW, __builtin_shuffle(a, b, hi));
        }
    for (; iw < W; iw++) {
        int j = iw + pw, m = j / sw;
        dr[iw] = m < Lb - g->base ? row[(j % sw) * Lb + m] : 0;
    }
}

FC_AI double FN(hsum)(V a) {
    double t = 0;
    for (int l = 0; l < VW; l++) t += a[l];
    return t;
}

/* dw taps: out[r*S+s] += sum over p, q of dy[p][q] * buf[p*sh + r*dh][off[s] + q].
 * dy rows: d + p * ds; full vectors at q0 < nfull, then (qt >= 0) one vector at qt whose
 * lanes below nfull - qt (already counted) are masked off.  unit: off[s] = base + s.
 * (No software prefetch of the next task's planes: measured 13-28 % slower than leaving
 * the sequential streams to the hardware prefetchers.) */
typedef struct {
    const T *d;
    ptrdiff_t ds;
    int nfull, qt;
    FC_IT keep; /* lanes >= nfull - qt of the tail vector: -1, others 0 */
} FN(wsrc);

FC_AI V FN(tailmask)(V v, FC_IT keep) { return (V)((FC_IT)v & keep); }

/* 3x3: the nine taps in registers, one pass over the plane. */
FC_AI void FN(wgrad33)(const T *restrict buf, const FN(wsrc) *src, double *out, const fc_dwg *g,
                       const int unit) {
    V a00 = {0}, a01 = {0}, a02 = {0}, a10 = {0}, a11 = {0}, a12 = {0}, a20 = {0}, a21 = {0}, a22 = {0};
    const ptrdiff_t rs = (ptrdiff_t)g->dh * g->RS, ps = (ptrdiff_t)g->sh * g->RS;
    const int o0 = unit ? 0 : g->off[0], o1 = unit ? 1 : g->off[1], o2 = unit ? 2 : g->off[2];
    const int nfull = src->nfull, qt = src->qt;
    if (unit) buf += g->base;
#define FC_W33(DV, Q0)                                                                  \
    do {                                                                                \
        const V dv = (DV);                                                              \
        a00 += dv * FN(ld)(x0 + (Q0) + o0);                                             \
        a01 += dv * FN(ld)(x0 + (Q0) + o1);                                             \
        a02 += dv * FN(ld)(x0 + (Q0) + o2);                                             \
        a10 += dv * FN(ld)(x1 + (Q0) + o0);                                             \
        a11 += dv * FN(ld)(x1 + (Q0) + o1);                                             \
        a12 += dv * FN(ld)(x1 + (Q0) + o2);                                             \
        a20 += dv * FN(ld)(x2 + (Q0) + o0);                                             \
        a21 += dv * FN(ld)(x2 + (Q0) + o1);                                             \
        a22 += dv * FN(ld)(x2 + (Q0) + o2);                                             \
    } while (0)
    for (int p = 0; p < g->P; p++) {
        const T *d = src->d + p * src->ds, *x0 = buf + p * ps, *x1 = x0 + rs, *x2 = x1 + rs;
        for (int q0 = 0; q0 < nfull; q0 += VW) FC_W33(FN(ld)(d + q0), q0);
        if (qt >= 0) FC_W33(FN(tailmask)(FN(ld)(d + qt), src->keep), qt);
    }
#undef FC_W33
    out[0] += FN(hsum)(a00); out[1] += FN(hsum)(a01); out[2] += FN(hsum)(a02);
    out[3] += FN(hsum)(a10); out[4] += FN(hsum)(a11); out[5] += FN(hsum)(a12);
    out[6] += FN(hsum)(a20); out[7] += FN(hsum)(a21); out[8] += FN(hsum)(a22);
}

/* S <= 5 (a constant): one filter row per pass, its S taps in registers. */
FC_AI void FN(wgrad_rows)(const T *restrict buf, const FN(wsrc) *src, double *out, const fc_dwg *g,
                          const int S, const int unit) {
    const ptrdiff_t ps = (ptrdiff_t)g->sh * g->RS;
    const int nfull = src->nfull, qt = src->qt;
    int o[5] = {0, 1, 2, 3, 4};
    if (!unit)
        for (int s = 0; s < S; s++) o[s] = g->off[s];
    else
        buf += g->base;
#define FC_WROW(DV, Q0)                                                                 \
    do {                                                                                \
        const V dv = (DV);                                                              \
        a0 += dv * FN(ld)(x + (Q0) + o[0]);                                             \
        if (S > 1) a1 += dv * FN(ld)(x + (Q0) + o[1]);                                  \
        if (S > 2) a2 += dv * FN(ld)(x + (Q0) + o[2]);                                  \
        if (S > 3) a3 += dv * FN(ld)(x + (Q0) + o[3]);                                  \
        if (S > 4) a4 += dv * FN(ld)(x + (Q0) + o[4]);                                  \
    } while (0)
    for (int r = 0; r < g->R; r++) {
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0};
        for (int p = 0; p < g->P; p++) {
            const T *d = src->d + p * src->ds, *x = buf + p * ps + (ptrdiff_t)r * g->dh * g->RS;
            for (int q0 = 0; q0 < nfull; q0 += VW) FC_WROW(FN(ld)(d + q0), q0);
            if (qt >= 0) FC_WROW(FN(tailmask)(FN(ld)(d + qt), src->keep), qt);
        }
        double *orow = out + r * S;
        orow[0] += FN(hsum)(a0);
        if (S > 1) orow[1] += FN(hsum)(a1);
        if (S > 2) orow[2] += FN(hsum)(a2);
        if (S > 3) orow[3] += FN(hsum)(a3);
        if (S > 4) orow[4] += FN(hsum)(a4);
    }
#undef FC_WROW
}

/* Any R x S: one tap at a time. */
FC_ATTR static void FN(wgrad_any)(const T *restrict buf, const FN(wsrc) *src, double *out, const fc_dwg *g) {
    for (int r = 0; r < g->R; r++)
        for (int s = 0; s < g->S; s++) {
            V a0 = (V){0};
            for (int p = 0; p < g->P; p++) {
                const T *d = src->d + p * src->ds;
                const T *xr = buf + (ptrdiff_t)(p * g->sh + r * g->dh) * g->RS + g->off[s];
                for (int q0 = 0; q0 < src->nfull; q0 += VW) a0 += FN(ld)(d + q0) * FN(ld)(xr + q0);
                if (src->qt >= 0) a0 += FN(tailmask)(FN(ld)(d + src->qt), src->keep) * FN(ld)(xr + src->qt);
            }
            out[r * g->S + s] += FN(hsum)(a0);
        }
}

/* Unpadded input (direct_ok): filter rows [r0, r0 + NR) (NR * S <= 9) in registers, the
 * x rows read in place (zero row outside, lane shifts at the borders); dy as in wsrc, two
 * rows per pass. */
FC_AI void FN(dwgrad_rows)(const T *restrict x, const T *restrict zrow, const FN(wsrc) *src, double *out,
                           const fc_dwg *g, int r0, const int NR, const int S, const int PW) {
    V acc[9];
    for (int t = 0; t < 9; t++) acc[t] = (V){0};
    const int Q = g->Q, W = g->W, nfull = src->nfull, qt = src->qt;
    /* with 'same' columns the last full vector is the right border when Q % VW == 0 */
    const int rfull = PW && qt < 0, nmid = rfull ? nfull - VW : nfull;
#define FC_DW(DV, Q0, KIND)                                                              \
    do {                                                                                 \
        const V dv = (DV);                                                               \
        for (int r = 0; r < NR; r++)                                                     \
            for (int s = 0; s < S; s++)                                                  \
                acc[r * S + s] += dv * FN(xload)(rows[r], (Q0), W, s, PW, (KIND));       \
    } while (0)
    int p = 0;
    /* dy rows p and p + 1 together: the NR - 1 x rows they share are loaded once */
#define FC_DW2(D0, D1, Q0, KIND)                                                         \
    do {                                                                                 \
        const V d0 = (D0), d1 = (D1);                                                    \
        for (int r = 0; r <= NR; r++)                                                    \
            for (int s = 0; s < S; s++) {                                                \
                V xv = FN(xload)(rows[r], (Q0), W, s, PW, (KIND));                       \
                if (r > 0 && r < NR) FC_REG(xv);                                         \
                if (r < NR) acc[r * S + s] += d0 * xv;                                   \
                if (r > 0) acc[(r - 1) * S + s] += d1 * xv;                              \
            }                                                                            \
    } while (0)
    for (; p + 2 <= g->P; p += 2) {
        const T *rows[4];
        for (int r = 0; r <= NR; r++) {
            int ih = p - g->ph + r0 + r;
            rows[r] = ih >= 0 && ih < g->H ? x + (ptrdiff_t)ih * W : zrow;
        }
        const T *d = src->d + p * src->ds, *e = d + src->ds;
        FC_DW2(FN(ld)(d), FN(ld)(e), 0, PW ? 0 : 1);
        for (int q0 = VW; q0 < nmid; q0 += VW) FC_DW2(FN(ld)(d + q0), FN(ld)(e + q0), q0, 1);
        if (rfull) FC_DW2(FN(ld)(d + Q - VW), FN(ld)(e + Q - VW), Q - VW, 2);
        if (qt >= 0)
            FC_DW2(FN(tailmask)(FN(ld)(d + qt), src->keep), FN(tailmask)(FN(ld)(e + qt), src->keep), qt, PW ? 2 : 1);
    }
#undef FC_DW2
    for (; p < g->P; p++) {
        const T *rows[3];
        for (int r = 0; r < NR; r++) {
            int ih = p - g->ph + r0 + r;
            rows[r] = ih >= 0 && ih < g->H ? x + (ptrdiff_t)ih * W : zrow;
        }
        const T *d = src->d + p * src->ds;
        FC_DW(FN(ld)(d), 0, PW ? 0 : 1);
        for (int q0 = VW; q0 < nmid; q0 += VW) FC_DW(FN(ld)(d + q0), q0, 1);
        if (rfull) FC_DW(FN(ld)(d + Q - VW), Q - VW, 2);
        if (qt >= 0) FC_DW(FN(tailmask)(FN(ld)(d + qt), src->keep), qt, PW ? 2 : 1);
    }
#undef FC_DW
    for (int t = 0; t < NR * S; t++) out[r0 * S + t] += FN(hsum)(acc[t]);
}

FC_ATTR static void FN(dwgrad)(const T *x, const T *zrow, const FN(wsrc) *src, double *out, const fc_dwg *g) {
    if (g->R == 3 && g->S == 3 && g->pw == 1)
        FN(dwgrad_rows)(x, zrow, src, out, g, 0, 3, 3, 1);
    else if (g->R == 3 && g->S == 3)
        FN(dwgrad_rows)(x, zrow, src, out, g, 0, 3, 3, 0);
    else if (g->S == 3)
        for (int r = 0; r < g->R; r++) {
            if (g->pw == 1)
                FN(dwgrad_rows)(x, zrow, src, out, g, r, 1, 3, 1);
            else
                FN(dwgrad_rows)(x, zrow, src, out, g, r, 1, 3, 0);
        }
    else
        for (int r = 0; r < g->R; r++) {
            if (g->pw == 2)
                FN(dwgrad_rows)(x, zrow, src, out, g, r, 1, 5, 2);
            else
                FN(dwgrad_rows)(x, zrow, src, out, g, r, 1, 5, 0);
        }
}

FC_ATTR static void FN(wgrad)(const T *buf, const FN(wsrc) *src, double *out, const fc_dwg *g) {
    const int unit = g->sw == 1 && g->dw == 1;
    if (g->R == 3 && g->S == 3 && unit)
        FN(wgrad33)(buf, src, out, g, 1);
    else if (g->R == 3 && g->S == 3)
        FN(wgrad33)(buf, src, out, g, 0);
    else if (g->S == 5 && unit)
        FN(wgrad_rows)(buf, src, out, g, 5, 1);
    else if (g->S == 5)
        FN(wgrad_rows)(buf, src, out, g, 5, 0);
    else if (g->S == 3)
        FN(wgrad_rows)(buf, src, out, g, 3, 0);
    else
        FN(wgrad_any)(buf, src, out, g);
}

/* ---- tasks ------------------------------------------------------------------------ */

/* Any stride: dy rows scattered into a ring of padded rows (in cache), each finished
 * row cropped into dx at once.  buf: >= nring * RS elements, dyb: one dy row (DS). */
FC_ATTR static void FN(bwd_in_task)(const T *dy, const T *w, T *dx, int Kg, const fc_dwg *g, T *buf, T *dyb) {
    const int nring = (g->R - 1) * g->dh + 1 + g->sh, H = g->H, ph = g->ph;
    const ptrdiff_t pq = (ptrdiff_t)g->P * g->Q;
    FC_IT lo, hi; /* interleave two phase vectors: (a0, b0, a1, b1, ...) */
    for (int l = 0; l < VW; l++) {
        lo[l] = l / 2 + (l % 2 ? VW : 0);
        hi[l] = (l + VW) / 2 + (l % 2 ? VW : 0);
    }
    int top = 0, done = 0; /* rows [0, top) zeroed / touched, [0, done) cropped */
    for (int p = 0; p <= g->P; p++) {
        const int fin = p < g->P ? p * g->sh : top; /* rows below fin receive nothing more */
        for (; top < fin; top++) FN(zero)(buf + (ptrdiff_t)(top % nring) * g->RS, g->RS); /* skipped rows */
        for (; done < fin; done++)
            if (done - ph >= 0 && done - ph < H)
                FN(crop_row)(buf + (ptrdiff_t)(done % nring) * g->RS + g->base, dx + (ptrdiff_t)(done - ph) * g->W, g,
                             lo, hi);
        if (p == g->P) break;
        for (; top <= p * g->sh + (g->R - 1) * g->dh; top++) FN(zero)(buf + (ptrdiff_t)(top % nring) * g->RS, g->RS);
        for (int kk = 0; kk < Kg; kk++) {
            FN(copy)(dyb + FC_DW_QB, dy + kk * pq + (ptrdiff_t)p * g->Q, g->Q);
            FN(scatter_row)(dyb + FC_DW_QB, w + (ptrdiff_t)kk * g->R * g->S, buf, nring, p, g);
        }
    }
    for (int ih = done - ph > 0 ? done - ph : 0; ih < H; ih++) /* rows no output reaches */
        for (int iw = 0; iw < g->W; iw++) dx[(ptrdiff_t)ih * g->W + iw] = 0;
}


/* out[kk*R*S + t] = tap t of dw[kk] summed over this image (out is overwritten). */
/* Rows of at least one vector are read from dy in place (last vector overlapping, masked);
 * narrower ones through dyb (zero past column Q). */
FC_ATTR static void FN(bwd_w_task)(const T *x, const T *dy, double *out, int Kg, const fc_dwg *g, T *buf, T *dyb) {
    const ptrdiff_t pq = (ptrdiff_t)g->P * g->Q;
    FN(wsrc) src;
    const int direct = FN(direct_ok)(g);
    if (!direct) FN(pad)(x, buf, g);
    for (int kk = 0; kk < Kg; kk++) {
        double *o = out + (ptrdiff_t)kk * g->R * g->S;
        for (int t = 0; t < g->R * g->S; t++) o[t] = 0;
        if (g->Q >= VW) {
            src.d = dy + kk * pq;
            src.ds = g->Q;
            src.nfull = g->Q / VW * VW;
            src.qt = g->Q % VW ? g->Q - VW : -1;
            for (int l = 0; l < VW; l++) src.keep[l] = l >= src.nfull - src.qt ? -1 : 0;
        } else {
            FN(pad_dy)(dy + kk * pq, dyb, g);
            src.d = dyb + FC_DW_QB;
            src.ds = g->DS;
            src.nfull = (g->Q + VW - 1) / VW * VW; /* zeros past Q */
            src.qt = -1;
        }
        if (direct)
            FN(dwgrad)(x, buf, &src, o, g);
        else
            FN(wgrad)(buf, &src, o, g);
    }
}

#endif /* FC_T */
