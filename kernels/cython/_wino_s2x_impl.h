/* Polyphase Winograd F(3x3, 4x4) forward for stride-2 convolutions with 5x5 .. 8x8 filters
 * (the ResNet stem's 7x7), float32, AVX-512F; see _conv_wino_s2x.pyx for the math.
 *
 * Phase planes, channel-last: Z[i][j][c'] = xpad[c][2i + p][2j + q], c' = (2p + q) C + c, 16 phase
 * channels per vector (Cp = 4C rounded up to 16).  Component (i, j) of a phase filter's transform
 * sees its last row (column) only in row i = 5 (column j = 5): where the phase filter's row a = 3
 * lies past the filter (2 * 3 + p >= R, e.g. p = 1 of a 7x7) those products are zero and skipped
 * (c' ranges per component; the stem: 15 % fewer products).  Tiles of 3 x 3 outputs read 6 x 6 phase
 * pixels 3 apart.  Points 0, 1, -1, 2, -2, inf:
 *   B^T (6x6) the one of F(4x4, 3x3) (FS2X_BT below);
 *   G (6x4) rows g(0)/4, -g(1)/6, -g(-1)/6, g(2)/24, g(-2)/24, g3 (g(z) = sum_r g_r z^r);
 *   A^T (3x6) rows (1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 1).
 * Work item: one image's band of tiles (3 output rows), in groups of FS2X_TG tiles:
 *   band packing (Zb: 6 phase rows), input transform (V[xi][tile][c'], 16 c' per vector),
 *   products M[xi][tile][k] = sum over c' of V . U (U[xi][c'][k] vectors over k; register
 *   block of 6 tiles x 4 vectors of 16 output channels), output transform (A^T M A + bias, 16
 *   output channels per vector) into the band's staging St[oy][x][k], then 16 x 16 transposes
 *   into y's rows.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FS2X_TB 6   /* tiles per register block */
#define FS2X_TG 12  /* tiles per group (2 register blocks) */

typedef struct {
    int N, C, H, W, K, R, S, P, Q, ph, pw;
    int th, tw;     /* tile rows / columns */
    int C4, Cp, Kp; /* 4C phase channels, rounded up to 16; K rounded up to 16 */
    int Wz, Qs;     /* band buffer columns (3 * tiles padded to a group + 3), staging columns */
    int lr[36][4];  /* live phase channels of component xi: [lr0, lr1) and [lr2, lr3) */
} fs2x_geo;

static void fs2x_setup(fs2x_geo *g, int N, int C, int H, int W, int K, int R, int S, int P, int Q, int ph, int pw) {
    g->N = N, g->C = C, g->H = H, g->W = W, g->K = K, g->R = R, g->S = S, g->P = P, g->Q = Q;
    g->ph = ph, g->pw = pw;
    g->th = (P + 2) / 3, g->tw = (Q + 2) / 3;
    g->C4 = 4 * C, g->Cp = (4 * C + 15) / 16 * 16, g->Kp = (K + 15) / 16 * 16;
    const int twp = (g->tw + FS2X_TB - 1) / FS2X_TB * FS2X_TB; /* tiles run in whole register blocks */
    g->Wz = 3 * twp + 3;
    g->Qs = (3 * g->tw + 15) / 16 * 16;
    for (int xi = 0; xi < 36; xi++) { /* phase classes 2p + q whose transformed filter can be nonzero */
        const int i = xi / 6, j = xi % 6;
        int live = 0, nr = 0;
        for (int p = 0; p < 2; p++)
            for (int q = 0; q < 2; q++)
                if ((i < 5 || 6 + p < R) && (j < 5 || 6 + q < S)) live |= 1 << (2 * p + q);
        g->lr[xi][0] = g->lr[xi][1] = g->lr[xi][2] = g->lr[xi][3] = 0;
        for (int cl = 0; cl < 4; cl++) {
            if (!(live >> cl & 1)) continue;
            if (nr > 0 && g->lr[xi][2 * nr - 1] == cl * C) g->lr[xi][2 * nr - 1] = (cl + 1) * C; /* extend */
            else g->lr[xi][2 * nr] = cl * C, g->lr[xi][2 * nr + 1] = (cl + 1) * C, nr++;
        }
    }
}

/* floats of work per thread */
static ptrdiff_t fs2x_work(const fs2x_geo *g) {
    return (ptrdiff_t)6 * g->Wz * g->Cp + (ptrdiff_t)36 * FS2X_TG * g->Cp + (ptrdiff_t)36 * FS2X_TG * g->Kp +
           (ptrdiff_t)3 * (g->Qs + 32) * g->Kp + 64;
}

/* U[(xi * Cp + c') * Kp + k] = (G w_pq[k, c] G^T)[xi], c' = (2p + q) C + c, w_pq[a][b] = w[2a + p][2b + q]
 * (zero past R x S); zero for c' >= 4C or k >= K.  Filters k0 .. k1 - 1. */
static void fs2x_filters(const float *w, float *U, const fs2x_geo *g, int k0, int k1) {
    const int C = g->C, R = g->R, S = g->S, Cp = g->Cp, Kp = g->Kp;
    for (int k = k0; k < k1; k++)
        for (int cq = 0; cq < Cp; cq++) {
            float gg[4][4], t[6][4], u[6][6];
            const int c = cq % C, p = cq / C / 2, q = (cq / C) % 2;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) {
                    const int r = 2 * a + p, s = 2 * b + q;
                    gg[a][b] = (k < g->K && c < C && r < R && s < S) ? w[(((ptrdiff_t)k * C + c) * R + r) * S + s] : 0.f;
                }
            for (int b = 0; b < 4; b++) { /* t = G gg, column b */
                const float a0 = gg[0][b], a1 = gg[1][b], a2 = gg[2][b], a3 = gg[3][b];
                const float e = a0 + a2, o = a1 + a3, e2 = a0 + 4 * a2, o2 = 2 * a1 + 8 * a3;
                t[0][b] = a0 / 4, t[1][b] = -(e + o) / 6, t[2][b] = -(e - o) / 6;
                t[3][b] = (e2 + o2) / 24, t[4][b] = (e2 - o2) / 24, t[5][b] = a3;
            }
            for (int i = 0; i < 6; i++) { /* u = t G^T, row i */
                const float a0 = t[i][0], a1 = t[i][1], a2 = t[i][2], a3 = t[i][3];
                const float e = a0 + a2, o = a1 + a3, e2 = a0 + 4 * a2, o2 = 2 * a1 + 8 * a3;
                u[i][0] = a0 / 4, u[i][1] = -(e + o) / 6, u[i][2] = -(e - o) / 6;
                u[i][3] = (e2 + o2) / 24, u[i][4] = (e2 - o2) / 24, u[i][5] = a3;
            }
            for (int xi = 0; xi < 36; xi++) U[((ptrdiff_t)xi * Cp + cq) * Kp + k] = u[xi / 6][xi % 6];
        }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include "_tr16.h"
#define FS2X_ATTR __attribute__((target("avx512f")))
#define FS2X_AI static inline __attribute__((always_inline)) FS2X_ATTR

static int fs2x_available(void) { return __builtin_cpu_supports("avx512f"); }

/* B^T of 6 vectors, in place */
#define FS2X_BT(d0, d1, d2, d3, d4, d5)                                                        \
    do {                                                                                       \
        const __m512 a_ = _mm512_fnmadd_ps(_mm512_set1_ps(4.f), d2, d4);                       \
        const __m512 b_ = _mm512_fnmadd_ps(_mm512_set1_ps(4.f), d1, d3);                       \
        const __m512 c_ = _mm512_sub_ps(d4, d2), e_ = _mm512_mul_ps(_mm512_set1_ps(2.f), _mm512_sub_ps(d3, d1)); \
        const __m512 t0_ = _mm512_add_ps(_mm512_fmsub_ps(_mm512_set1_ps(4.f), d0, _mm512_mul_ps(_mm512_set1_ps(5.f), d2)), d4); \
        const __m512 t5_ = _mm512_add_ps(_mm512_fmsub_ps(_mm512_set1_ps(4.f), d1, _mm512_mul_ps(_mm512_set1_ps(5.f), d3)), d5); \
        d0 = t0_, d1 = _mm512_add_ps(a_, b_), d2 = _mm512_sub_ps(a_, b_);                      \
        d3 = _mm512_add_ps(c_, e_), d4 = _mm512_sub_ps(c_, e_), d5 = t5_;                      \
    } while (0)

/* A^T of 6 vectors -> 3 */
#define FS2X_AT(v, o0, o1, o2)                                                                 \
    do {                                                                                       \
        const __m512 p12 = _mm512_add_ps(v[1], v[2]), m12 = _mm512_sub_ps(v[1], v[2]);         \
        const __m512 p34 = _mm512_add_ps(v[3], v[4]), m34 = _mm512_sub_ps(v[3], v[4]);         \
        o0 = _mm512_add_ps(_mm512_add_ps(v[0], p12), p34);                                     \
        o1 = _mm512_fmadd_ps(_mm512_set1_ps(2.f), m34, m12);                                   \
        o2 = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(4.f), p34, p12), v[5]);              \
    } while (0)

/* Zb[i'][j][c'] for the band's 6 phase rows 3 ti .. 3 ti + 5 (zero outside the padded input) */
FS2X_ATTR static void fs2x_pack(const float *x, float *Zb, const fs2x_geo *g, int n, int ti) {
    const int C = g->C, H = g->H, W = g->W, Wz = g->Wz, Cp = g->Cp;
    memset(Zb, 0, sizeof(float) * (size_t)6 * Wz * Cp);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < 6; i++)
            for (int p = 0; p < 2; p++) {
                const int ir = 2 * (3 * ti + i) + p - g->ph;
                if (ir < 0 || ir >= H) continue;
                const float *src = x + (((ptrdiff_t)n * C + c) * H + ir) * W;
                float *dst = Zb + (ptrdiff_t)i * Wz * Cp + 2 * p * C + c;
                /* j, q: input column 2j + q - pw in [0, W) */
                for (int j = 0; j < Wz; j++) {
                    const int ic = 2 * j - g->pw;
                    if (ic >= 0 && ic < W) dst[(ptrdiff_t)j * Cp] = src[ic];
                    if (ic + 1 >= 0 && ic + 1 < W) dst[(ptrdiff_t)j * Cp + C] = src[ic + 1];
                }
            }
}

/* fs2x_pack for Cp = 16 (C <= 4): per phase row and 16 columns, the 4C rows (c, p, q) of 16
 * columns (even / odd input columns split by permutes) transposed into 16 column vectors of the
 * channel-last layout; every vector written whole (zeros included), no memset. */
FS2X_ATTR static void fs2x_pack16(const float *x, float *Zb, const fs2x_geo *g, int n, int ti) {
    const int C = g->C, H = g->H, W = g->W, Wz = g->Wz;
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int i = 0; i < 6; i++)
        for (int j0 = 0; j0 < Wz; j0 += 16) {
            __m512 r[16];
            for (int e = 0; e < 16; e++) r[e] = _mm512_setzero_ps();
            const int ic0 = 2 * j0 - g->pw; /* input column of (j0, q = 0) */
            for (int p = 0; p < 2; p++) {
                const int ir = 2 * (3 * ti + i) + p - g->ph;
                if (ir < 0 || ir >= H) continue;
                for (int c = 0; c < C; c++) {
                    const float *src = x + (((ptrdiff_t)n * C + c) * H + ir) * W;
                    __m512 h[2];
                    for (int hh = 0; hh < 2; hh++) { /* input columns ic0 + 16 hh .. + 15, inside [0, W) */
                        const int a0 = ic0 + 16 * hh;
                        const int lo = a0 < 0 ? -a0 : 0, hi = W - a0 < 16 ? W - a0 : 16;
                        const __mmask16 mk = hi <= lo ? 0 : (__mmask16)((0xffffu >> (16 - hi)) & (0xffffu << lo));
                        h[hh] = _mm512_maskz_loadu_ps(mk, src + a0);
                    }
                    r[2 * p * C + c] = _mm512_permutex2var_ps(h[0], ev, h[1]);
                    r[(2 * p + 1) * C + c] = _mm512_permutex2var_ps(h[0], od, h[1]);
                }
            }
            fc_tr16(r);
            float *dst = Zb + ((ptrdiff_t)i * Wz + j0) * 16;
            for (int e = 0; e < 16 && j0 + e < Wz; e++) _mm512_storeu_ps(dst + (ptrdiff_t)e * 16, r[e]);
        }
}

/* V[(xi * TG + u) * Cp + c'] for tiles tj0 .. tj0 + nu - 1 of the band */
FS2X_ATTR static void fs2x_input(const float *Zb, float *V, const fs2x_geo *g, int tj0, int nu) {
    const int Wz = g->Wz, Cp = g->Cp;
    for (int u = 0; u < nu; u++)
        for (int cv = 0; cv < Cp; cv += 16) {
            const float *d = Zb + (ptrdiff_t)(3 * (tj0 + u)) * Cp + cv;
            __m512 t[6][6];
            for (int s = 0; s < 6; s++) {
                __m512 d0 = _mm512_loadu_ps(d + ((ptrdiff_t)0 * Wz + s) * Cp);
                __m512 d1 = _mm512_loadu_ps(d + ((ptrdiff_t)1 * Wz + s) * Cp);
                __m512 d2 = _mm512_loadu_ps(d + ((ptrdiff_t)2 * Wz + s) * Cp);
                __m512 d3 = _mm512_loadu_ps(d + ((ptrdiff_t)3 * Wz + s) * Cp);
                __m512 d4 = _mm512_loadu_ps(d + ((ptrdiff_t)4 * Wz + s) * Cp);
                __m512 d5 = _mm512_loadu_ps(d + ((ptrdiff_t)5 * Wz + s) * Cp);
                FS2X_BT(d0, d1, d2, d3, d4, d5);
                t[0][s] = d0, t[1][s] = d1, t[2][s] = d2, t[3][s] = d3, t[4][s] = d4, t[5][s] = d5;
            }
            for (int r = 0; r < 6; r++) {
                FS2X_BT(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5]);
                for (int s = 0; s < 6; s++)
                    _mm512_storeu_ps(V + ((ptrdiff_t)(6 * r + s) * FS2X_TG + u) * Cp + cv, t[r][s]);
            }
        }
}

/* M[xi][u0 .. u0 + 5][k0 .. k0 + 16 KV) = sum over live c' of V[xi][u][c'] U[xi][c'][k] */
FS2X_AI void fs2x_mm(const float *V, const float *U, float *M, const fs2x_geo *g, int xi, int u0, int k0, const int KV) {
    const int Cp = g->Cp, Kp = g->Kp;
    __m512 acc[FS2X_TB][4];
    for (int u = 0; u < FS2X_TB; u++)
        for (int v = 0; v < KV; v++) acc[u][v] = _mm512_setzero_ps();
    const float *vp = V + ((ptrdiff_t)xi * FS2X_TG + u0) * Cp;
    for (int rg = 0; rg < 4; rg += 2) {
        const float *up = U + ((ptrdiff_t)xi * Cp + g->lr[xi][rg]) * Kp + k0;
        for (int c = g->lr[xi][rg]; c < g->lr[xi][rg + 1]; c++, up += Kp) {
            __m512 uv[4];
            for (int v = 0; v < KV; v++) uv[v] = _mm512_loadu_ps(up + 16 * v);
            for (int u = 0; u < FS2X_TB; u++) {
                const __m512 b = _mm512_set1_ps(vp[(ptrdiff_t)u * Cp + c]);
                for (int v = 0; v < KV; v++) acc[u][v] = _mm512_fmadd_ps(b, uv[v], acc[u][v]);
            }
        }
    }
    float *mp = M + ((ptrdiff_t)xi * FS2X_TG + u0) * Kp + k0;
    for (int u = 0; u < FS2X_TB; u++)
        for (int v = 0; v < KV; v++) _mm512_storeu_ps(mp + (ptrdiff_t)u * Kp + 16 * v, acc[u][v]);
}

/* products of tiles 0 .. nu - 1 of the group (nu a multiple of FS2X_TB) */
FS2X_ATTR static void fs2x_products(const float *V, const float *U, float *M, const fs2x_geo *g, int nu) {
    const int Kp = g->Kp;
    for (int xi = 0; xi < 36; xi++)
        for (int u0 = 0; u0 < nu; u0 += FS2X_TB) {
            int k0 = 0;
            for (; k0 + 64 <= Kp; k0 += 64) fs2x_mm(V, U, M, g, xi, u0, k0, 4);
            switch ((Kp - k0) / 16) {
            case 3: fs2x_mm(V, U, M, g, xi, u0, k0, 3); break;
            case 2: fs2x_mm(V, U, M, g, xi, u0, k0, 2); break;
            case 1: fs2x_mm(V, U, M, g, xi, u0, k0, 1); break;
            default: break;
            }
        }
}

/* A^T M A + bias of tiles tj0 .. (< tw) into the staging St[oy][x][k] */
FS2X_ATTR static void fs2x_output(const float *M, const float *bias, float *St, const fs2x_geo *g, int tj0) {
    const int Kp = g->Kp, Qs = g->Qs;
    for (int u = 0; u < FS2X_TG && tj0 + u < g->tw; u++)
        for (int k0 = 0; k0 < Kp; k0 += 16) {
            const __mmask16 bm = (__mmask16)(g->K - k0 >= 16 ? 0xffff : g->K > k0 ? (1u << (g->K - k0)) - 1 : 0);
            const __m512 bv = bias ? _mm512_maskz_loadu_ps(bm, bias + k0) : _mm512_setzero_ps();
            __m512 s[3][6];
            for (int j = 0; j < 6; j++) {
                __m512 m[6];
                for (int i = 0; i < 6; i++) m[i] = _mm512_loadu_ps(M + ((ptrdiff_t)(6 * i + j) * FS2X_TG + u) * Kp + k0);
                FS2X_AT(m, s[0][j], s[1][j], s[2][j]);
            }
            for (int a = 0; a < 3; a++) {
                __m512 o0, o1, o2;
                FS2X_AT(s[a], o0, o1, o2);
                float *o = St + ((ptrdiff_t)a * (Qs + 32) + 16 + 3 * (tj0 + u)) * Kp + k0;
                _mm512_storeu_ps(o, _mm512_add_ps(o0, bv));
                _mm512_storeu_ps(o + Kp, _mm512_add_ps(o1, bv));
                _mm512_storeu_ps(o + 2 * Kp, _mm512_add_ps(o2, bv));
            }
        }
}

/* staging St[oy][16 + x][k] -> y[n][k][3 ti + oy][x] (rows < P, x < Q, k < K).  Blocks of 16 x
 * start where y's rows reach a 64-byte line (St has 16 columns of slack either side); whole
 * aligned blocks are streamed (y is written once and is larger than the caches on the shapes
 * this runs: no read-for-ownership), the row ends masked. */
FS2X_ATTR static void fs2x_store(const float *St, float *y, const fs2x_geo *g, int n, int ti) {
    const int K = g->K, P = g->P, Q = g->Q, Kp = g->Kp, Qs2 = g->Qs + 32;
    for (int a = 0; a < 3 && 3 * ti + a < P; a++)
        for (int k0 = 0; k0 < K; k0 += 16) {
            float *yr = y + (((ptrdiff_t)n * K + k0) * P + 3 * ti + a) * Q;
            const int mis = (int)(((uintptr_t)yr >> 2) & 15);
            for (int x0 = mis ? -mis : 0; x0 < Q; x0 += 16) {
                const int lo = x0 < 0 ? -x0 : 0, hi = Q - x0 < 16 ? Q - x0 : 16;
                const __mmask16 mk = (__mmask16)((0xffffu >> (16 - hi)) & (0xffffu << lo));
                __m512 r[16];
                for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(St + ((ptrdiff_t)a * Qs2 + 16 + x0 + i) * Kp + k0);
                fc_tr16(r);
                for (int kk = 0; kk < 16 && k0 + kk < K; kk++) {
                    float *yo = yr + (ptrdiff_t)kk * P * Q + x0;
                    if (mk == 0xffff && ((uintptr_t)yo & 63) == 0) _mm512_stream_ps(yo, r[kk]);
                    else _mm512_mask_storeu_ps(yo, mk, r[kk]);
                }
            }
        }
    _mm_sfence();
}

/* one work item: image n, tile row ti */
FS2X_ATTR static void fs2x_band(const float *x, const float *U, const float *bias, float *y, float *work,
                                const fs2x_geo *g, int n, int ti) {
    float *Zb = work, *V = Zb + (ptrdiff_t)6 * g->Wz * g->Cp, *M = V + (ptrdiff_t)36 * FS2X_TG * g->Cp;
    float *St = M + (ptrdiff_t)36 * FS2X_TG * g->Kp;
    if (g->Cp == 16)
        fs2x_pack16(x, Zb, g, n, ti);
    else
        fs2x_pack(x, Zb, g, n, ti);
    for (int tj0 = 0; tj0 < g->tw; tj0 += FS2X_TG) {
        /* whole register blocks of tiles (those past tw read the band's zero columns) */
        const int left = g->tw - tj0 < FS2X_TG ? g->tw - tj0 : FS2X_TG;
        const int nu = (left + FS2X_TB - 1) / FS2X_TB * FS2X_TB;
        fs2x_input(Zb, V, g, tj0, nu);
        fs2x_products(V, U, M, g, nu);
        fs2x_output(M, bias, St, g, tj0);
    }
    fs2x_store(St, y, g, n, ti);
}
#else
static int fs2x_available(void) { return 0; }
static void fs2x_band(const float *x, const float *U, const float *bias, float *y, float *work, const fs2x_geo *g,
                      int n, int ti) {
    (void)x, (void)U, (void)bias, (void)y, (void)work, (void)g, (void)n, (void)ti;
}
#endif
