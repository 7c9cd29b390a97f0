/* Batch-vector forward with a one-dimensional Winograd F(2, 5) along the rows (LeNet C3: 5x5
 * filters on 6 channels), included by _conv_small_simd.h inside its per-type / per-ISA block
 * (SN, SV, ST, SVW, SAI, FC_KB, FC_JB defined there).
 *
 * Lanes run over SVW images as in fwd_nv_.  Each input row is cut into 6-wide windows 2 apart
 * and transformed, Xt[c][i][t][e] = (B^T x[c][i][2t .. 2t + 5])[e]; each filter row likewise,
 * U[k][c][r][e] = (G w[k][c][r][:])[e]; then for output row p and window t the 6 components
 * M_e = sum over (c, r) of U[k][c][r][e] Xt[c][p + r][t][e] (a reduction over C R = 30 terms, so
 * the products keep fwd_nv_'s register blocking: FC_KB filters x FC_JB windows of one component)
 * and y[p][2t + j] = (A^T M)[j].  6 products per 2 outputs per (c, r) instead of 10: 1.67x
 * fewer multiply-adds; the transforms are 1-D and cheap.  Points 0, 1, -1, 2, -2, inf (the
 * matrices of _wino5_impl.h): B^T of F(4, 3); G rows g(0)/4, -g(1)/6, -g(-1)/6, g(2)/24,
 * g(-2)/24, g4; A^T rows (1, 1, 1, 1, 1, 0) and (0, 1, -1, 2, -2, 1).
 */
#ifdef FC_T

/* 1-D data transform B^T d of 6 vectors (in place) */
#define FC_W1_BT(d0, d1, d2, d3, d4, d5)                                                  \
    do {                                                                                  \
        const SV a_ = (d4) - 4 * (d2), b_ = (d3) - 4 * (d1), c_ = (d4) - (d2);            \
        const SV e_ = 2 * ((d3) - (d1));                                                  \
        const SV t0_ = 4 * (d0) - 5 * (d2) + (d4), t5_ = 4 * (d1) - 5 * (d3) + (d5);      \
        (d0) = t0_;                                                                       \
        (d1) = a_ + b_;                                                                   \
        (d2) = a_ - b_;                                                                   \
        (d3) = c_ + e_;                                                                   \
        (d4) = c_ - e_;                                                                   \
        (d5) = t5_;                                                                       \
    } while (0)

/* up[(((kb * 6 + e) * C + c) * R + r) * FC_KB + kk] = (G w[k, c, r, :])[e], k = kb FC_KB + kk
 * (zero for k >= K; S = 5) */
FC_ATTR static void SN(packw1_)(const ST *restrict w, ST *restrict up, const fc_smg *g) {
    const int C = g->C, R = g->R, K = g->K;
    const ST c4 = (ST)0.25, c6 = (ST)1 / 6, c24 = (ST)1 / 24;
    for (int k = 0; k < g->Kp; k++)
        for (int c = 0; c < C; c++)
            for (int r = 0; r < R; r++) {
                ST u[6] = {0, 0, 0, 0, 0, 0};
                if (k < K) {
                    const ST *q = w + (((ptrdiff_t)k * C + c) * R + r) * 5;
                    const ST a0 = q[0], a1 = q[1], a2 = q[2], a3 = q[3], a4 = q[4];
                    const ST e = a0 + a2 + a4, o = a1 + a3, e2 = a0 + 4 * a2 + 16 * a4, o2 = 2 * a1 + 8 * a3;
                    u[0] = a0 * c4, u[1] = -(e + o) * c6, u[2] = -(e - o) * c6;
                    u[3] = (e2 + o2) * c24, u[4] = (e2 - o2) * c24, u[5] = a4;
                }
                for (int e = 0; e < 6; e++)
                    up[((((ptrdiff_t)(k / FC_KB) * 6 + e) * C + c) * R + r) * FC_KB + k % FC_KB] = u[e];
            }
}

/* Forward of images n0 .. n0 + SVW - 1.  g->Wb = 2 * ceil(Q / 2) + 4 (fc_sm_w1_setup); xt: C
 * planes of Hb x Wb lane vectors, then Xt (C * Hb * TW * 6 vectors), the products of one block
 * (6 * FC_KB * FC_JB) and the output staging (FC_KB * ceil16(P * Q), as fwd_nv_'s). */
FC_ATTR static void SN(fwd_nv1w_)(const ST *x, const ST *up, const ST *b, ST *y, int n0, const fc_smg *g, ST *xt) {
    const int C = g->C, R = g->R, P = g->P, Q = g->Q, PQ = P * Q, Wb = g->Wb, Hb = g->Hb, K = g->K;
    const int nl = g->N - n0 < SVW ? g->N - n0 : SVW, TW = (Q + 1) / 2, NPOS = P * TW;
    const int PQ16 = (PQ + 15) / 16 * 16;
    const ptrdiff_t plane = (ptrdiff_t)Hb * Wb, xrow = (ptrdiff_t)TW * 6;
    ST *Xt = xt + C * plane * SVW, *mb = Xt + (ptrdiff_t)C * Hb * xrow * SVW;
    ST *stg = mb + (ptrdiff_t)6 * FC_KB * FC_JB * SVW;
#ifdef FC_SM_TR16
    SN(packxt16_)(x, n0, nl, g, xt);
#else
    SN(packxt_)(x, n0, nl, g, xt);
#endif
    for (int c = 0; c < C; c++) /* row windows -> Xt */
        for (int i = 0; i < Hb; i++) {
            const ST *s = xt + (c * plane + (ptrdiff_t)i * Wb) * SVW;
            ST *o = Xt + ((ptrdiff_t)c * Hb + i) * xrow * SVW;
            for (int t = 0; t < TW; t++, s += 2 * SVW, o += 6 * SVW) {
                SV d0 = SN(ld)(s), d1 = SN(ld)(s + SVW), d2 = SN(ld)(s + 2 * SVW);
                SV d3 = SN(ld)(s + 3 * SVW), d4 = SN(ld)(s + 4 * SVW), d5 = SN(ld)(s + 5 * SVW);
                FC_W1_BT(d0, d1, d2, d3, d4, d5);
                SN(st)(o, d0), SN(st)(o + SVW, d1), SN(st)(o + 2 * SVW, d2);
                SN(st)(o + 3 * SVW, d3), SN(st)(o + 4 * SVW, d4), SN(st)(o + 5 * SVW, d5);
            }
        }
    const int nblk = (NPOS + FC_JB - 1) / FC_JB;
    for (int k0 = 0; k0 < K; k0 += FC_KB) {
        const int kn = K - k0 < FC_KB ? K - k0 : FC_KB;
        const ST *ub = up + (ptrdiff_t)(k0 / FC_KB) * 6 * C * R * FC_KB;
        for (int bi = 0; bi < nblk; bi++) {
            int pos[FC_JB];
            ptrdiff_t base[FC_JB];
#pragma GCC unroll 4
            for (int u = 0; u < FC_JB; u++) { /* windows past the last: the last again */
                pos[u] = bi * FC_JB + u < NPOS ? bi * FC_JB + u : NPOS - 1;
                base[u] = ((ptrdiff_t)(pos[u] / TW) * xrow + (pos[u] % TW) * 6) * SVW;
            }
            /* filter rows r that read only padding rows for every output row of the block are
             * skipped (the stride-1 backward-input's full correlation: C3 dx, 20 of 70 rows) */
            const int pmin = pos[0] / TW, pmax = pos[FC_JB - 1] / TW;
            const int r0 = g->ph - pmax > 0 ? g->ph - pmax : 0;
            const int r1 = g->ph + g->H - pmin < R ? g->ph + g->H - pmin : R;
            for (int e = 0; e < 6; e++) {
                SV acc[FC_KB][FC_JB];
#pragma GCC unroll 16
                for (int k = 0; k < FC_KB; k++)
#pragma GCC unroll 4
                    for (int u = 0; u < FC_JB; u++) acc[k][u] = (SV){0};
                const ST *we = ub + (ptrdiff_t)e * C * R * FC_KB;
                for (int c = 0; c < C; c++)
                    for (int r = r0; r < r1; r++) {
                        const ST *wc = we + ((ptrdiff_t)c * R + r) * FC_KB;
                        const ST *xp = Xt + (((ptrdiff_t)c * Hb + r) * xrow + e) * SVW;
                        SV xv[FC_JB];
#pragma GCC unroll 4
                        for (int u = 0; u < FC_JB; u++) xv[u] = SN(ld)(xp + base[u]);
#pragma GCC unroll 16
                        for (int k = 0; k < FC_KB; k++) {
                            const ST wv = wc[k];
#pragma GCC unroll 4
                            for (int u = 0; u < FC_JB; u++) acc[k][u] += wv * xv[u];
                        }
                    }
#pragma GCC unroll 16
                for (int k = 0; k < FC_KB; k++)
#pragma GCC unroll 4
                    for (int u = 0; u < FC_JB; u++) SN(st)(mb + ((ptrdiff_t)(e * FC_KB + k) * FC_JB + u) * SVW, acc[k][u]);
            }
            for (int u = 0; u < FC_JB; u++) { /* y[p][2t + j] = (A^T M)[j] */
                const int p = pos[u] / TW, t = pos[u] % TW;
                for (int k = 0; k < kn; k++) {
                    const ST *m = mb + ((ptrdiff_t)k * FC_JB + u) * SVW;
                    const ptrdiff_t es = (ptrdiff_t)FC_KB * FC_JB * SVW;
                    const SV m0 = SN(ld)(m), m1 = SN(ld)(m + es), m2 = SN(ld)(m + 2 * es);
                    const SV m3 = SN(ld)(m + 3 * es), m4 = SN(ld)(m + 4 * es), m5 = SN(ld)(m + 5 * es);
                    const SV y0 = m0 + (m1 + m2) + (m3 + m4), y1 = (m1 - m2) + 2 * (m3 - m4) + m5;
#ifdef FC_SM_TR16
                    ST *o = stg + ((ptrdiff_t)k * PQ16 + p * Q + 2 * t) * SVW;
                    SN(st)(o, y0);
                    if (2 * t + 1 < Q) SN(st)(o + SVW, y1);
#else
                    const ST bv = b ? b[k0 + k] : 0;
                    ST *yo = y + ((ptrdiff_t)n0 * K + k0 + k) * PQ + p * Q + 2 * t;
                    for (int l = 0; l < nl; l++) yo[(ptrdiff_t)l * K * PQ] = y0[l] + bv;
                    if (2 * t + 1 < Q)
                        for (int l = 0; l < nl; l++) yo[(ptrdiff_t)l * K * PQ + 1] = y1[l] + bv;
#endif
                }
            }
        }
#ifdef FC_SM_TR16
        SN(stage_out_)(stg, b, y, n0, nl, k0, kn, g);
#endif
    }
}

#undef FC_W1_BT
#endif /* FC_T */
