/* Small-channel conv2d kernels (see _conv_small_impl.h) for ONE element type and ONE
 * instruction set: included with FC_T, FC_VB (vector bytes), FC_SFX, FC_ATTR and the
 * register blocks FC_KB x FC_JB (forward: filters x position vectors) and FC_BK x FC_BT
 * (backward-weight: filters x taps) defined.  Empty without FC_T (named by the .pyx only
 * as a build dependency).
 */
#ifdef FC_T
#define SN(name) FC_SM_CAT3(fc_sm_, name, FC_SFX)
typedef FC_T SN(v) __attribute__((vector_size(FC_VB)));
typedef FC_T SN(vu) __attribute__((vector_size(FC_VB), aligned(sizeof(FC_T))));
#define SV SN(v)
#define ST FC_T
#define SVW ((int)(FC_VB / sizeof(FC_T)))
#define SAI static inline __attribute__((always_inline)) FC_ATTR

SAI SV SN(ld)(const ST *p) { return *(const SN(vu) *)p; }
SAI void SN(st)(ST *p, SV v) { *(SN(vu) *)p = v; }

/* image planes (nc planes of H x W) into buffer planes of L elements: (i, j) = (i - ph, j - pw);
 * only input elements are written (the caller zeroed the buffer once) */
FC_ATTR static void SN(packx_)(const ST *restrict x, ST *restrict xb, int nc, const fc_smg *g) {
    for (int c = 0; c < nc; c++) {
        const ST *xp = x + (ptrdiff_t)c * g->H * g->W;
        ST *bp = xb + (ptrdiff_t)c * g->L + (ptrdiff_t)g->ph * g->Wb + g->pw;
        for (int i = 0; i < g->H; i++) {
            const ST *src = xp + (ptrdiff_t)i * g->W;
            ST *dst = bp + (ptrdiff_t)i * g->Wb;
            int q = 0;
            for (; q + SVW <= g->W; q += SVW) SN(st)(dst + q, SN(ld)(src + q));
            for (; q < g->W; q++) dst[q] = src[q];
        }
    }
}

/* wp[kblock][c][t][FC_KB] = w[k, c, t] (zero for k >= K) */
FC_ATTR static void SN(packw_)(const ST *restrict w, ST *restrict wp, const fc_smg *g) {
    const int RS = g->R * g->S, C = g->C;
    for (int k = 0; k < g->Kp; k++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < RS; t++)
                wp[(((ptrdiff_t)(k / FC_KB) * C + c) * RS + t) * FC_KB + k % FC_KB] =
                    k < g->K ? w[((ptrdiff_t)k * C + c) * RS + t] : 0;
}

/* forward of image x (C planes) into y (K planes of P x Q); xb: C * L, yb: FC_KB * jalloc */
FC_ATTR static void SN(fwd_)(const ST *x, const ST *wp, const ST *b, ST *y, const fc_smg *g, ST *xb, ST *yb) {
    const int C = g->C, RS = g->R * g->S, L = g->L, J = g->J, ja = fc_sm_jalloc(g);
    const int step = FC_JB * SVW;
    SN(packx_)(x, xb, C, g);
    for (int k0 = 0; k0 < g->K; k0 += FC_KB) {
        const ST *wb = wp + (ptrdiff_t)(k0 / FC_KB) * C * RS * FC_KB;
        for (int jb = 0;; jb += step) {
            int j0 = jb + step > J ? J - step : jb;
            if (j0 < 0) j0 = 0;
            SV acc[FC_KB][FC_JB];
#pragma GCC unroll 16
            for (int k = 0; k < FC_KB; k++)
#pragma GCC unroll 4
                for (int u = 0; u < FC_JB; u++) acc[k][u] = (SV){0};
            for (int c = 0; c < C; c++) {
                const ST *xc = xb + (ptrdiff_t)c * L + j0;
                const ST *wc = wb + (ptrdiff_t)c * RS * FC_KB;
                for (int t = 0; t < RS; t++) {
                    const ST *xp = xc + g->off[t];
                    SV xv[FC_JB];
#pragma GCC unroll 4
                    for (int u = 0; u < FC_JB; u++) xv[u] = SN(ld)(xp + u * SVW);
#pragma GCC unroll 16
                    for (int k = 0; k < FC_KB; k++) {
                        const ST wv = wc[t * FC_KB + k];
#pragma GCC unroll 4
                        for (int u = 0; u < FC_JB; u++) acc[k][u] += wv * xv[u];
                    }
                }
            }
#pragma GCC unroll 16
            for (int k = 0; k < FC_KB; k++)
#pragma GCC unroll 4
                for (int u = 0; u < FC_JB; u++) SN(st)(yb + (ptrdiff_t)k * ja + j0 + u * SVW, acc[k][u]);
            if (jb + step >= J) break;
        }
        const int kn = g->K - k0 < FC_KB ? g->K - k0 : FC_KB;
        for (int k = 0; k < kn; k++) {
            const ST bv = b ? b[k0 + k] : 0;
            ST *yk = y + (ptrdiff_t)(k0 + k) * g->P * g->Q;
            const ST *src = yb + (ptrdiff_t)k * ja;
            for (int p = 0; p < g->P; p++)
                for (int q = 0; q < g->Q; q++) yk[p * g->Q + q] = src[p * g->Wb + q] + bv;
        }
    }
}

/* zero the padding border of the C lane-interleaved buffer planes (Hb x Wb vectors each) */
FC_ATTR static void SN(zero_border_)(ST *xt, const fc_smg *g) {
    const int Wb = g->Wb, top = g->ph, bot = g->Hb - g->ph - g->H, left = g->pw, right = Wb - g->pw - g->W;
    const ptrdiff_t plane = (ptrdiff_t)g->Hb * Wb, vb = SVW * sizeof(ST);
    if (top <= 0 && bot <= 0 && left <= 0 && right <= 0) return;
    for (int c = 0; c < g->C; c++) {
        ST *p = xt + c * plane * SVW;
        if (top > 0) memset(p, 0, (size_t)top * Wb * vb);
        if (bot > 0) memset(p + (ptrdiff_t)(g->ph + g->H) * Wb * SVW, 0, (size_t)bot * Wb * vb);
        for (int i = g->ph; i < g->ph + g->H; i++) {
            if (left > 0) memset(p + (ptrdiff_t)i * Wb * SVW, 0, (size_t)left * vb);
            if (right > 0) memset(p + ((ptrdiff_t)i * Wb + g->pw + g->W) * SVW, 0, (size_t)right * vb);
        }
    }
}

/* images n0 .. n0 + nl - 1 into lane-interleaved buffer planes (lanes >= nl: zero; the padding
 * border zeroed here too) */
FC_ATTR static void SN(packxt_)(const ST *x, int n0, int nl, const fc_smg *g, ST *xt) {
    const int C = g->C, Wb = g->Wb;
    SN(zero_border_)(xt, g);
    const ptrdiff_t hw = (ptrdiff_t)g->H * g->W, plane = (ptrdiff_t)g->Hb * Wb;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < g->H; i++)
            for (int j = 0; j < g->W; j++) {
                ST *d = xt + ((c * plane + (ptrdiff_t)(i + g->ph) * Wb + j + g->pw)) * SVW;
                const ST *s = x + ((ptrdiff_t)n0 * C + c) * hw + (ptrdiff_t)i * g->W + j;
                int l = 0;
                for (; l < nl; l++) d[l] = s[l * C * hw];
                for (; l < SVW; l++) d[l] = 0;
            }
}

#ifdef FC_SM_TR16
/* AVX-512 float32: 16 x 16 transposes instead of one scalar lane store or load per element
 * (the lane scatter of the forward's output and the lane gather of its packing were ~25 % of
 * LeNet C3's forward): fc_tr16 of _tr16.h. */
/* packxt_ by transposes: 16 positions of the 16 images' planes at a time */
FC_ATTR static void SN(packxt16_)(const ST *x, int n0, int nl, const fc_smg *g, ST *xt) {
    const int C = g->C, W = g->W, Wb = g->Wb, hw = g->H * g->W;
    const ptrdiff_t plane = (ptrdiff_t)g->Hb * Wb;
    SN(zero_border_)(xt, g);
    for (int c = 0; c < C; c++) {
        const ST *src = x + ((ptrdiff_t)n0 * C + c) * hw;
        ST *dst = xt + c * plane * 16;
        for (int pos = 0, i0 = 0, j0 = 0; pos < hw; pos += 16) {
            const int n = hw - pos < 16 ? hw - pos : 16;
            const __mmask16 mk = (__mmask16)(n == 16 ? 0xffff : (1u << n) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int l = 0; l < 16; l++)
                r[l] = l < nl ? _mm512_maskz_loadu_ps(mk, src + (ptrdiff_t)l * C * hw + pos) : _mm512_setzero_ps();
            fc_tr16(r);
            for (int e = 0; e < n; e++) {  /* (i0, j0): input row and column of position pos + e */
                _mm512_storeu_ps(dst + ((ptrdiff_t)(i0 + g->ph) * Wb + j0 + g->pw) * 16, r[e]);
                if (++j0 == W) j0 = 0, i0++;
            }
        }
    }
}
#endif

#ifdef FC_SM_TR16
/* output staging (filter k0 + k: PQ16 positions x 16 image lanes) -> y rows of 16 positions per
 * image, + bias (staging positions past PQ are never read into y: masked stores) */
FC_ATTR static void SN(stage_out_)(const ST *stg, const ST *b, ST *y, int n0, int nl, int k0, int kn,
                                   const fc_smg *g) {
    const int PQ = g->P * g->Q, PQ16 = (PQ + 15) / 16 * 16;
    for (int k = 0; k < kn; k++) {
        const __m512 bv = _mm512_set1_ps(b ? b[k0 + k] : 0.f);
        const ST *sk = stg + (ptrdiff_t)k * PQ16 * SVW;
        for (int m0 = 0; m0 < PQ; m0 += 16) {
            const __mmask16 mk = (__mmask16)(PQ - m0 >= 16 ? 0xffff : (1u << (PQ - m0)) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(sk + (ptrdiff_t)(m0 + i) * 16);
            fc_tr16(r);
            ST *yo = y + ((ptrdiff_t)n0 * g->K + k0 + k) * PQ + m0;
            for (int l = 0; l < nl; l++)
                _mm512_mask_storeu_ps(yo + (ptrdiff_t)l * g->K * PQ, mk, _mm512_add_ps(r[l], bv));
        }
    }
}
#endif

/* Batch-vector forward: lanes run over SVW images n0 .. (lanes past N: zero images, not
 * stored), so no position is wasted.  xt: C * Hb * Wb vectors (image buffer (i, j) per
 * lane; the padding border zeroed by the packing) + the output staging of fc_sm_nv_extra. */
FC_ATTR static void SN(fwd_nv_)(const ST *x, const ST *wp, const ST *b, ST *y, int n0, const fc_smg *g, ST *xt) {
    const int C = g->C, RS = g->R * g->S, PQ = g->P * g->Q, Q = g->Q, Wb = g->Wb;
    const int nl = g->N - n0 < SVW ? g->N - n0 : SVW;
    const ptrdiff_t plane = (ptrdiff_t)g->Hb * Wb;
#ifdef FC_SM_TR16
    SN(packxt16_)(x, n0, nl, g, xt);
    ST *stg = xt + C * plane * SVW; /* output staging: FC_KB planes of PQ16 lane vectors */
    const int PQ16 = (PQ + 15) / 16 * 16;
#else
    SN(packxt_)(x, n0, nl, g, xt);
#endif
    for (int k0 = 0; k0 < g->K; k0 += FC_KB) {
        const ST *wb = wp + (ptrdiff_t)(k0 / FC_KB) * C * RS * FC_KB;
        const int kn = g->K - k0 < FC_KB ? g->K - k0 : FC_KB;
        /* blocks of FC_JB positions: within one output row when Q >= FC_JB (the last one
         * overlapping) when there are padding rows, so that filter rows reading only
         * padding are skipped; else
         * consecutive positions over rows (clamped to the last: repeats store equal values) */
        const int rowwise = Q >= FC_JB && g->ph > 0, qblk = (Q + FC_JB - 1) / FC_JB;
        const int nblk = rowwise ? g->P * qblk : (PQ + FC_JB - 1) / FC_JB;
        for (int bi = 0; bi < nblk; bi++) {
            int m[FC_JB], t0 = 0, t1 = RS;
            ptrdiff_t base[FC_JB];
            SV acc[FC_KB][FC_JB];
            if (rowwise) {
                const int p = bi / qblk, q0 = (bi % qblk) * FC_JB < Q - FC_JB ? (bi % qblk) * FC_JB : Q - FC_JB;
                const int rlo = g->ph - p > 0 ? g->ph - p : 0, rhi = g->ph + g->H - p < g->R ? g->ph + g->H - p : g->R;
                t0 = rlo * g->S;
                t1 = rhi > rlo ? rhi * g->S : t0;
                for (int u = 0; u < FC_JB; u++) m[u] = p * Q + q0 + u;
            } else {
                for (int u = 0; u < FC_JB; u++) m[u] = bi * FC_JB + u < PQ ? bi * FC_JB + u : PQ - 1;
            }
#pragma GCC unroll 4
            for (int u = 0; u < FC_JB; u++) base[u] = (ptrdiff_t)((m[u] / Q) * Wb + m[u] % Q) * SVW;
#pragma GCC unroll 16
            for (int k = 0; k < FC_KB; k++)
#pragma GCC unroll 4
                for (int u = 0; u < FC_JB; u++) acc[k][u] = (SV){0};
            for (int c = 0; c < C; c++) {
                const ST *xc = xt + c * plane * SVW;
                const ST *wc = wb + ((ptrdiff_t)c * RS + t0) * FC_KB;
                for (int t = t0; t < t1; t++, wc += FC_KB) {
                    const ST *xp = xc + (ptrdiff_t)g->off[t] * SVW;
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
            }
#ifdef FC_SM_TR16
            for (int k = 0; k < kn; k++)
#pragma GCC unroll 4
                for (int u = 0; u < FC_JB; u++) SN(st)(stg + ((ptrdiff_t)k * PQ16 + m[u]) * SVW, acc[k][u]);
#else
            for (int k = 0; k < kn; k++) {
                const ST bv = b ? b[k0 + k] : 0;
                for (int u = 0; u < FC_JB; u++) {
                    ST *yo = y + ((ptrdiff_t)n0 * g->K + k0 + k) * PQ + m[u];
                    for (int l = 0; l < nl; l++) yo[(ptrdiff_t)l * g->K * PQ] = acc[k][u][l] + bv;
                }
            }
#endif
        }
#ifdef FC_SM_TR16
        SN(stage_out_)(stg, b, y, n0, nl, k0, kn, g);
#endif
    }
}

SAI double SN(hsum)(SV a) {
    double s = 0;
    for (int l = 0; l < SVW; l++) s += a[l];
    return s;
}

/* out[k, c, t] (K * C * R * S doubles) = dw of images n0 .. n0 + nb - 1 (x, dy: whole arrays);
 * xb: FC_SM_NB * C * L, dyb: FC_SM_NB * Kp * J, both zeroed once by the caller */
FC_ATTR static void SN(bww_)(const ST *x, const ST *dy, int n0, int nb, const fc_smg *g, ST *xb, ST *dyb,
                             double *out) {
    const int C = g->C, K = g->K, Kp = g->Kp, RS = g->R * g->S, L = g->L, J = g->J;
    const ptrdiff_t pq = (ptrdiff_t)g->P * g->Q;
    for (int i = 0; i < nb; i++) {
        SN(packx_)(x + (ptrdiff_t)(n0 + i) * C * g->H * g->W, xb + (ptrdiff_t)i * C * L, C, g);
        for (int k = 0; k < K; k++) {
            const ST *src = dy + ((ptrdiff_t)(n0 + i) * K + k) * pq;
            ST *dst = dyb + ((ptrdiff_t)i * Kp + k) * J;
            for (int p = 0; p < g->P; p++)
                for (int q = 0; q < g->Q; q++) dst[p * g->Wb + q] = src[p * g->Q + q];
        }
    }
    for (ptrdiff_t e = 0; e < (ptrdiff_t)K * C * RS; e++) out[e] = 0;
    for (int c = 0; c < C; c++)
        for (int k0 = 0; k0 < K; k0 += FC_BK)
            for (int t0 = 0; t0 < RS; t0 += FC_BT) {
                SV acc[FC_BK][FC_BT];
                int off[FC_BT];
#pragma GCC unroll 8
                for (int t = 0; t < FC_BT; t++) off[t] = g->off[t0 + t];
#pragma GCC unroll 8
                for (int k = 0; k < FC_BK; k++)
#pragma GCC unroll 8
                    for (int t = 0; t < FC_BT; t++) acc[k][t] = (SV){0};
                for (int i = 0; i < nb; i++) {
                    const ST *d = dyb + ((ptrdiff_t)i * Kp + k0) * J;
                    const ST *xc = xb + ((ptrdiff_t)i * C + c) * L;
                    for (int e = 0; e < J; e += SVW) {
                        SV dv[FC_BK];
#pragma GCC unroll 8
                        for (int k = 0; k < FC_BK; k++) dv[k] = SN(ld)(d + (ptrdiff_t)k * J + e);
#pragma GCC unroll 8
                        for (int t = 0; t < FC_BT; t++) {
                            const SV xv = SN(ld)(xc + off[t] + e);
#pragma GCC unroll 8
                            for (int k = 0; k < FC_BK; k++) acc[k][t] += dv[k] * xv;
                        }
                    }
                }
                for (int k = 0; k < FC_BK && k0 + k < K; k++)
                    for (int t = 0; t < FC_BT && t0 + t < RS; t++)
                        out[((ptrdiff_t)(k0 + k) * C + c) * RS + t0 + t] = SN(hsum)(acc[k][t]);
            }
}


/* Batch-vector backward-weight: out[k, c, t] = dw of images n0 .. n0 + SVW - 1 (lanes past
 * N zero).  xt: C * Hb * Wb vectors, dyt: K * P * Q vectors. */
FC_ATTR static void SN(bww_nv_)(const ST *x, const ST *dy, int n0, const fc_smg *g, ST *xt, ST *dyt, double *out) {
    const int C = g->C, K = g->K, RS = g->R * g->S, P = g->P, Q = g->Q, Wb = g->Wb, PQ = P * Q;
    const int nl = g->N - n0 < SVW ? g->N - n0 : SVW;
    const ptrdiff_t plane = (ptrdiff_t)g->Hb * Wb;
#ifdef FC_SM_TR16
    SN(packxt16_)(x, n0, nl, g, xt);
    fc_smg gd = *g; /* dy's K planes of P x Q, unpadded, packed the same way */
    gd.C = K, gd.H = gd.Hb = P, gd.W = gd.Wb = Q, gd.ph = gd.pw = 0;
    SN(packxt16_)(dy, n0, nl, &gd, dyt);
#else
    SN(packxt_)(x, n0, nl, g, xt);
    for (int k = 0; k < K; k++)
        for (int m = 0; m < PQ; m++) {
            ST *d = dyt + ((ptrdiff_t)k * PQ + m) * SVW;
            const ST *s = dy + ((ptrdiff_t)n0 * K + k) * PQ + m;
            int l = 0;
            for (; l < nl; l++) d[l] = s[(ptrdiff_t)l * K * PQ];
            for (; l < SVW; l++) d[l] = 0;
        }
#endif
    for (int c = 0; c < C; c++)
        for (int k0 = 0; k0 < K; k0 += FC_BK)
            for (int t0 = 0; t0 < RS; t0 += FC_BT) {
                SV acc[FC_BK][FC_BT];
                ptrdiff_t off[FC_BT];
                const ST *dk[FC_BK];
#pragma GCC unroll 8
                for (int t = 0; t < FC_BT; t++) off[t] = (ptrdiff_t)g->off[t0 + t] * SVW;
#pragma GCC unroll 8
                for (int k = 0; k < FC_BK; k++) {
                    dk[k] = dyt + (ptrdiff_t)(k0 + k < K ? k0 + k : K - 1) * PQ * SVW;
#pragma GCC unroll 8
                    for (int t = 0; t < FC_BT; t++) acc[k][t] = (SV){0};
                }
                const ST *xc = xt + c * plane * SVW;
                for (int p = 0; p < P; p++) {
                    const ST *xr = xc + (ptrdiff_t)p * Wb * SVW;
                    const ptrdiff_t mr = (ptrdiff_t)p * Q * SVW;
                    for (int q = 0; q < Q; q++) {
                        SV dv[FC_BK];
#pragma GCC unroll 8
                        for (int k = 0; k < FC_BK; k++) dv[k] = SN(ld)(dk[k] + mr + q * SVW);
#pragma GCC unroll 8
                        for (int t = 0; t < FC_BT; t++) {
                            const SV xv = SN(ld)(xr + off[t] + q * SVW);
#pragma GCC unroll 8
                            for (int k = 0; k < FC_BK; k++) acc[k][t] += dv[k] * xv;
                        }
                    }
                }
                for (int k = 0; k < FC_BK && k0 + k < K; k++)
                    for (int t = 0; t < FC_BT && t0 + t < RS; t++)
                        out[((ptrdiff_t)(k0 + k) * C + c) * RS + t0 + t] = SN(hsum)(acc[k][t]);
            }
}

#include "_conv_small_w1.h"

#undef SN
#undef SV
#undef ST
#undef SVW
#undef SAI
#endif /* FC_T */
