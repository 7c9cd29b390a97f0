/* Polyphase Winograd for stride-2 convolutions (float32, AVX-512F), for _conv_wino_s2.pyx.
 *
 * A stride-2 conv with an R x S <= 4 x 4 filter is a stride-1 conv of the four phases
 * Z_pq = xpad[:, :, p::2, q::2] (4C channels) with the filter zero-padded
 * to 4 x 4 and split the same way (2 x 2 per phase); up to 8 x 8, each phase filter is cut into
 * 2 x 2 blocks (u, v), conv'd with the phase image shifted by (2u, 2v): 4 nr ns sub-phases.  That stride-1 conv runs as Winograd
 * F(4x4, 2x2) (alpha 5, points 0, 1, -1, 2, inf): 25 products per 16 outputs per channel c'.
 *
 *   Wp[j][c'][t][48]  phase filter taps t (once per call), 48-column panels j of K
 *   B[b][c''][48]     = (G g G^T)[5 a + b] for one panel j and row a (per block, ws2_bpanels;
 *                       c'' runs over the live phase channels of the component, ws2_plan)
 *   V[xi][i][c''][8]  = (B^T d B)[xi] of the 5 x 5 phase tile d of tile 8 i + lane (A panels)
 *   M[xi][t][k]       = sum_c'' V . B  (8 x 48 register-blocked kernel, 8 x 16 / 8 x 32 tails)
 *   y tile (4 x 4)    = A^T M A + bias
 *
 * The input transform reads each tile's phase rows with masked contiguous loads (the padding
 * and the bottom / right edges read as zeros) and transposes them into 8 tiles x 2 phases per
 * vector; the output transform works on 16 output channels per vector, transposes and stores
 * 4-float rows into y (N, K, P, Q) with masks at the edges.
 * Compiled for AVX-512F only (target attribute); ws2_available() says whether the CPU has it. */
#include <stddef.h>
#include <string.h>
#include "_conv_gemm.h"

#if defined(FC_CG_TARGET)
#define WS2_OK 1
#define WS2_T FC_CG_TARGET

static int ws2_available(void) { return fc_cg_available(); }

typedef struct {
    int N, C, H, W, K, R, S, P, Q, ph, pw;
    int th, tw;   /* tiles per column / row */
    int nr, ns;   /* 2 x 2 blocks of the phase filters per column / row (1: R / S <= 4, 2: <= 8) */
    int nsp;      /* sub-phases per input channel: 4 nr ns (phase p, q and block u, v) */
    int Cp;       /* nsp C: the phase channels (GEMM depth at most) */
    int npan;     /* 48-column panels of K */
    int kg;       /* panels per output-channel group (M holds one group) */
} ws2_geo;

/* G (5 x 2) rows for points 0, 1, -1, 2, inf */
static const float WS2_G[5][2] = {{1, 0}, {1, 1}, {1, -1}, {1, 2}, {0, 1}};

/* Phase filters for output channels [k0, k1), k1 - k0 <= 16 inside one 48-panel (and the zero
 * columns K .. 48 npan - 1 when k1 == K): Wp[j][c'][t][48], j = k / 48, column k % 48, tap
 * t = 2 r2 + s2 of the 2 x 2 phase filter of c' = 4 c + 2 p + q (w[k][c][2 r2 + p][2 s2 + q], zero
 * outside R x S).  The Winograd filter transform (G g G^T) runs per block on one B panel at a
 * time (ws2_bpanel), so the 25-component U (13 MB for strided_3x3) never goes through memory. */
WS2_T static void ws2_filters(const float *w, float *Wp, const ws2_geo *g, int k0, int k1) {
    int R = g->R, S = g->S, kn = k1 - k0;
    ptrdiff_t wk = (ptrdiff_t)g->C * R * S;
    float *wb = Wp + (ptrdiff_t)(k0 / 48) * g->Cp * 4 * 48 + k0 % 48;
    int kz = k1 == g->K ? (48 - k1 % 48) % 48 : 0;  /* zero columns after k1 in its panel */
    for (int c = 0; c < g->C; c++)
        for (int sp = 0; sp < g->nsp; sp++)
            for (int t = 0; t < 4; t++) {
                int u = (sp >> 2) / g->ns, v = (sp >> 2) % g->ns;
                int r = 2 * (2 * u + (t >> 1)) + ((sp >> 1) & 1), s = 2 * (2 * v + (t & 1)) + (sp & 1);
                float *d = wb + ((ptrdiff_t)(c * g->nsp + sp) * 4 + t) * 48;
                if (r < R && s < S) {
                    const float *src = w + (ptrdiff_t)k0 * wk + ((ptrdiff_t)c * R + r) * S + s;
                    for (int l = 0; l < kn; l++) d[l] = src[l * wk];
                } else {
                    for (int l = 0; l < kn; l++) d[l] = 0.0f;
                }
                for (int l = kn; l < kn + kz; l++) d[l] = 0.0f;
            }
}

/* Phases that matter per component: U[xi = 5 a + b] of phase (p, q) is zero unless some tap
 * (r2, s2) of the phase filter lies inside the R x S filter (2 r2 + p < R, 2 s2 + q < S) with
 * G[a][r2] G[b][s2] != 0 (G row 0 reads only tap 0, row 4 only tap 1).  For a 3x3 filter, rows
 * a = 4 / columns b = 4 see only phases p = 0 / q = 0, so the 25 products run over
 * 16 x 4C + 8 x 2C + C = 81 C phase channels instead of 100 C (19 % fewer multiplications).
 * V and the B panels of component xi hold only its live phase channels, c'' = c * nl + rank. */
typedef struct {
    int nl[25];        /* live sub-phases per component (0 .. nsp) */
    int rank[25][16];  /* rank of sub-phase sp among the live ones, -1 when dead */
} ws2_live;

static void ws2_plan(const ws2_geo *g, ws2_live *lv) {
    for (int xi = 0; xi < 25; xi++) {
        int a = xi / 5, b = xi % 5, n = 0;
        for (int sp = 0; sp < g->nsp; sp++) {
            int p = (sp >> 1) & 1, q = sp & 1, u = (sp >> 2) / g->ns, v = (sp >> 2) % g->ns, rok = 0, cok = 0;
            for (int r2 = 0; r2 < 2; r2++) rok |= WS2_G[a][r2] != 0.0f && 2 * (2 * u + r2) + p < g->R;
            for (int s2 = 0; s2 < 2; s2++) cok |= WS2_G[b][s2] != 0.0f && 2 * (2 * v + s2) + q < g->S;
            lv->rank[xi][sp] = rok && cok ? n++ : -1;
        }
        lv->nl[xi] = n;
    }
}

/* The five B panels of components xi = 5 a + b, b = 0 .. 4, for the 48-column panel j:
 * B[b][c'][col] = (G g G^T)[a][b] of the phase filters in Wp (first 16 nv columns), through the
 * separable form T = G[a] g (two vectors), B[b] = T G[b]^T (G rows 1 0 / 1 1 / 1 -1 / 1 2 / 0 1);
 * bs = the panels' stride. */
WS2_T static void ws2_bpanels(const float *Wp, float *B, ptrdiff_t bs, const ws2_geo *g, const ws2_live *lv,
                              int a, int j, int nv) {
    const float *src = Wp + (ptrdiff_t)j * g->Cp * 4 * 48;
    __m512 ga0 = _mm512_set1_ps(WS2_G[a][0]), ga1 = _mm512_set1_ps(WS2_G[a][1]), two = _mm512_set1_ps(2.0f);
    const int *nl = lv->nl + 5 * a;
    for (int cp = 0; cp < g->Cp; cp++, src += 4 * 48) {
        int c = cp / g->nsp, ph = cp % g->nsp;
        const int (*rk)[16] = lv->rank + 5 * a;
        float *d[5];
        int any = 0;
        for (int b = 0; b < 5; b++) {
            d[b] = rk[b][ph] >= 0 ? B + b * bs + (ptrdiff_t)(c * nl[b] + rk[b][ph]) * 48 : NULL;
            any |= d[b] != NULL;
        }
        if (!any) continue;
        for (int v = 0; v < nv; v++) {
            const float *sv = src + 16 * v;
            __m512 t0 = _mm512_fmadd_ps(ga0, _mm512_loadu_ps(sv), _mm512_mul_ps(ga1, _mm512_loadu_ps(sv + 96)));
            __m512 t1 = _mm512_fmadd_ps(ga0, _mm512_loadu_ps(sv + 48), _mm512_mul_ps(ga1, _mm512_loadu_ps(sv + 144)));
            if (d[0]) _mm512_storeu_ps(d[0] + 16 * v, t0);
            if (d[1]) _mm512_storeu_ps(d[1] + 16 * v, _mm512_add_ps(t0, t1));
            if (d[2]) _mm512_storeu_ps(d[2] + 16 * v, _mm512_sub_ps(t0, t1));
            if (d[3]) _mm512_storeu_ps(d[3] + 16 * v, _mm512_fmadd_ps(two, t1, t0));
            if (d[4]) _mm512_storeu_ps(d[4] + 16 * v, t1);
        }
    }
}

/* 1-D B^T (points 0, 1, -1, 2, inf) */
#define WS2_BT(d0, d1, d2, d3, d4, o0, o1, o2, o3, o4)                                     \
    {                                                                                       \
        __m512 h_ = _mm512_set1_ps(0.5f), s3_ = _mm512_set1_ps(1.0f / 3.0f);               \
        __m512 s6_ = _mm512_set1_ps(1.0f / 6.0f), two_ = _mm512_set1_ps(2.0f);             \
        __m512 d31_ = _mm512_sub_ps(d3, d1);                                                \
        o0 = _mm512_fmadd_ps(h_, d31_, _mm512_sub_ps(d0, d2));                             \
        o1 = _mm512_fmadd_ps(h_, _mm512_sub_ps(d2, d3), d1);                               \
        o2 = _mm512_fmsub_ps(h_, d2, _mm512_fmadd_ps(s3_, d1, _mm512_mul_ps(s6_, d3)));    \
        o3 = _mm512_mul_ps(s6_, d31_);                                                      \
        o4 = _mm512_fmsub_ps(two_, _mm512_sub_ps(d1, d3), _mm512_sub_ps(d2, d4));          \
    }

/* 1-D A^T (4 x 5) */
#define WS2_AT(m0, m1, m2, m3, m4, o0, o1, o2, o3)                                          \
    {                                                                                       \
        __m512 sp_ = _mm512_add_ps(m1, m2), sm_ = _mm512_sub_ps(m1, m2);                   \
        o0 = _mm512_add_ps(_mm512_add_ps(m0, sp_), m3);                                    \
        o1 = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), m3, sm_);                               \
        o2 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), m3, sp_);                               \
        o3 = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), m3, sm_), m4);            \
    }

/* Input transform of tiles [t0, t0 + nt) (nt <= 8 * npb; missing lanes of the last panel are
 * zero) into V (panels of 8 tiles: V[xi][i][c'][8], component stride vs). */
#define WS2_MAXP 64 /* tile panels per block at most */
/* B^T d B of one vector of tiles (8 tiles x phase columns q = 0 / 1 of sub-phase pair sp, sp + 1,
 * channel c, tile panel i) into V: the live half or halves per component. */
WS2_T static inline void ws2_in_store(__m512 d[5][5], float *V, ptrdiff_t vs, const ws2_geo *g,
                                      const ws2_live *lv, int i, int c, int sp) {
    __m512 t[5][5];
    for (int b = 0; b < 5; b++)
        WS2_BT(d[0][b], d[1][b], d[2][b], d[3][b], d[4][b], t[0][b], t[1][b], t[2][b], t[3][b], t[4][b]);
    for (int a = 0; a < 5; a++) {
        __m512 o[5];
        WS2_BT(t[a][0], t[a][1], t[a][2], t[a][3], t[a][4], o[0], o[1], o[2], o[3], o[4]);
        for (int b = 0; b < 5; b++) {
            /* lanes 0-7: phase (p, 0), 8-15: (p, 1); store the live half or halves */
            int xi = 5 * a + b, r0 = lv->rank[xi][sp], r1 = lv->rank[xi][sp + 1];
            float *o0 = V + xi * vs + (ptrdiff_t)i * lv->nl[xi] * g->C * 8 + (ptrdiff_t)c * lv->nl[xi] * 8;
            if (r0 >= 0 && r1 >= 0) _mm512_storeu_ps(o0 + r0 * 8, o[b]);
            else if (r0 >= 0) _mm256_storeu_ps(o0 + r0 * 8, _mm512_castps512_ps256(o[b]));
            else if (r1 >= 0) _mm256_storeu_ps(o0 + r1 * 8, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(o[b]), 1)));
        }
    }
}

/* Input transform of tiles [t0, t0 + nt) (nt <= 8 * WS2_MAXP; missing lanes of the last panel are
 * zero) into V (panels of 8 tiles: V[xi][i][c''][8], component stride vs).  Per phase-channel pair
 * (c, p, u, q = 0 / 1) and panel: the columns of each tile's 5 phase rows are one masked
 * contiguous load (zeros outside x; 10 columns, or 14 when ns = 2: blocks v = 0 and 1 share the
 * load, v = 1 reads columns 4 .. 13), two rows of 8 tiles a 16 x 16 transpose into columns
 * (AVX-512 gathers here ran 4x slower). */
WS2_T static void ws2_inputs(const float *x, float *V, ptrdiff_t vs, const ws2_geo *g, const ws2_live *lv,
                             ptrdiff_t t0, int nt) {
    int npb = (nt + 7) / 8, ncols = g->ns == 2 ? 14 : 10;
    ptrdiff_t hw = (ptrdiff_t)g->H * g->W;
    int tpi = g->th * g->tw;
    ptrdiff_t off[WS2_MAXP][8];  /* x offset of the tile's first (padded) row and column, image n */
    int rb[WS2_MAXP][8];         /* first row (may be < 0); dead lanes: far outside */
    __mmask16 cm[WS2_MAXP][8];   /* the tile's ncols columns that lie inside x */
    for (int i = 0; i < npb; i++)
        for (int l = 0; l < 8; l++) {
            ptrdiff_t t = t0 + 8 * i + l;
            if (8 * i + l < nt) {
                int n = (int)(t / tpi), r = (int)(t % tpi);
                int r0 = 8 * (r / g->tw) - g->ph, c0 = 8 * (r % g->tw) - g->pw;
                unsigned m = 0;
                for (int j = 0; j < ncols; j++)
                    if (c0 + j >= 0 && c0 + j < g->W) m |= 1u << j;
                cm[i][l] = (__mmask16)m;
                rb[i][l] = r0;
                off[i][l] = (ptrdiff_t)n * g->C * hw + (ptrdiff_t)r0 * g->W + c0;
            } else {
                rb[i][l] = -1000000;
                cm[i][l] = 0;
                off[i][l] = 0;
            }
        }
    for (int cp = 0; cp < g->Cp; cp += 2) {
        /* lanes 0-7: phase channel cp, lanes 8-15: cp + 1; c' = nsp c + sp, sub-phase
         * sp = 4 (u ns + v) + 2 p + q, so both are channel c, phase row p, block (u, v) and phase
         * columns q = 0 and 1: x rows 2 (4 u + a) + p, columns 2 (4 v + b) + q of the tile */
        int c = cp / g->nsp, sp = cp % g->nsp, p = (sp >> 1) & 1, u = (sp >> 2) / g->ns, v = (sp >> 2) % g->ns;
        if (v == 1) continue;  /* done with v = 0 */
        int pr = p + 4 * u;  /* row offset of the sub-phase */
        const float *xc = x + (ptrdiff_t)c * hw + (ptrdiff_t)pr * g->W;
        /* the rows of the next pair (next phase row or channel), fetched one panel ahead */
        int cn = cp + 2 * g->ns < g->Cp ? cp + 2 * g->ns : cp, spn = cn % g->nsp;
        const float *xn = x + (ptrdiff_t)(cn / g->nsp) * hw
                          + (ptrdiff_t)(((spn >> 1) & 1) + 4 * ((spn >> 2) / g->ns)) * g->W;
        for (int i = 0; i < npb; i++) {
            for (int l = 0; l < 8; l++)  /* (prefetching: strided_3x3 1-thread ratio 1.32 -> 1.37) */
                for (int aa = 0; aa < 5; aa++)
                    _mm_prefetch((const char *)(xn + off[i][l] + (ptrdiff_t)(2 * aa) * g->W), _MM_HINT_T0);
            __m512 d[2][5][5];
            for (int a = 0; a < 5; a += 2) {
                __m512 r[16];
                for (int h = 0; h < 2; h++) {
                    int aa = a + h;
                    for (int l = 0; l < 8; l++) {
                        int row = rb[i][l] + pr + 2 * aa;
                        r[8 * h + l] = (aa < 5 && row >= 0 && row < g->H)
                                       ? _mm512_maskz_loadu_ps(cm[i][l], xc + off[i][l] + (ptrdiff_t)(2 * aa) * g->W)
                                       : _mm512_setzero_ps();
                    }
                }
                fc_tr16(r);  /* r[j]: column j of the tiles' rows a (lanes 0-7) and a + 1 (8-15) */
                for (int vv = 0; vv < g->ns; vv++)
                    for (int b = 0; b < 5; b++) {
                        int j = 2 * b + 4 * vv;
                        d[vv][a][b] = _mm512_shuffle_f32x4(r[j], r[j + 1], 0x44);
                        if (a + 1 < 5) d[vv][a + 1][b] = _mm512_shuffle_f32x4(r[j], r[j + 1], 0xEE);
                    }
            }
            for (int vv = 0; vv < g->ns; vv++)
                ws2_in_store(d[vv], V, vs, g, lv, i, c, sp + 4 * vv);
        }
    }
}

/* c (8 x 16 NV, row stride ldc) = a (panel [kd][8]) . b ([kd][ldb], first 16 NV columns) */
#define WS2_ROW(i)                                                                          \
    {                                                                                       \
        __m512 av = _mm512_set1_ps(a[i]);                                                   \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                         \
        if (NV > 1) c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                             \
        if (NV > 2) c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2);                             \
    }
#define WS2_ST(i)                                                                           \
    {                                                                                       \
        _mm512_storeu_ps(c + (i) * ldc, c##i##0);                                           \
        if (NV > 1) _mm512_storeu_ps(c + (i) * ldc + 16, c##i##1);                          \
        if (NV > 2) _mm512_storeu_ps(c + (i) * ldc + 32, c##i##2);                          \
    }
#define WS2_KERNEL(NVV)                                                                                 \
    WS2_T static void ws2_kernel##NVV(int kd, const float *restrict a, const float *restrict b, int ldb,\
                                      float *restrict c, ptrdiff_t ldc) {                               \
        const int NV = NVV;                                                                             \
        FC_ZERO(0) FC_ZERO(1) FC_ZERO(2) FC_ZERO(3) FC_ZERO(4) FC_ZERO(5) FC_ZERO(6) FC_ZERO(7)         \
        for (int k = 0; k < kd; k++) {                                                                  \
            __m512 b0 = _mm512_loadu_ps(b), b1 = b0, b2 = b0;                                           \
            if (NV > 1) b1 = _mm512_loadu_ps(b + 16);                                                   \
            if (NV > 2) b2 = _mm512_loadu_ps(b + 32);                                                   \
            WS2_ROW(0) WS2_ROW(1) WS2_ROW(2) WS2_ROW(3) WS2_ROW(4) WS2_ROW(5) WS2_ROW(6) WS2_ROW(7)     \
            a += 8;                                                                                     \
            b += ldb;                                                                                   \
        }                                                                                               \
        WS2_ST(0) WS2_ST(1) WS2_ST(2) WS2_ST(3) WS2_ST(4) WS2_ST(5) WS2_ST(6) WS2_ST(7)                 \
    }
WS2_KERNEL(1)
WS2_KERNEL(2)
WS2_KERNEL(3)

/* Products for the output-channel group of panels [j0, j0 + nj): M[xi][t][k - 48 j0] for the npb
 * tile panels of the block (ldm = 48 nj, component stride ms).  The last panel of K runs only
 * its 16-column vectors that hold channels < K (K = 256: 5 1/3 panels). */
WS2_T static void ws2_products(const float *V, ptrdiff_t vs, const float *Wp, float *B, float *M, ptrdiff_t ms,
                               const ws2_geo *g, const ws2_live *lv, int npb, int j0, int nj) {
    ptrdiff_t ldm = 48 * nj, bs = (ptrdiff_t)g->Cp * 48 + 16;
    for (int j = 0; j < nj; j++) {
        int rem = g->K - 48 * (j0 + j), nv = rem >= 48 ? 3 : (rem + 15) / 16;
        for (int ra = 0; ra < 5; ra++) {
            ws2_bpanels(Wp, B, bs, g, lv, ra, j0 + j, nv);
            for (int rb = 0; rb < 5; rb++) {
                int xi = 5 * ra + rb, kd = g->C * lv->nl[xi];
                const float *b = B + rb * bs;
                for (int i = 0; i < npb; i++) {
                    const float *a = V + xi * vs + (ptrdiff_t)i * kd * 8;
                    float *c = M + xi * ms + (ptrdiff_t)i * 8 * ldm + j * 48;
                    if (nv == 3) ws2_kernel3(kd, a, b, 48, c, ldm);
                    else if (nv == 2) ws2_kernel2(kd, a, b, 48, c, ldm);
                    else ws2_kernel1(kd, a, b, 48, c, ldm);
                }
            }
        }
    }
}

/* The 4 x 4 output tiles (+ bias) of 16 channels k0 + kk + l of block tile tt: o[l] row-major. */
WS2_T static inline void ws2_out_tile(const float *M, ptrdiff_t ms, ptrdiff_t ldm, const float *bias, int tt,
                                      int k0, int kk, int kn, __m512 o[16]) {
    const float *mt = M + (ptrdiff_t)tt * ldm;
    __mmask16 km = kn - kk >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (kn - kk)) - 1u);
    __m512 s[4][5];
    for (int a = 0; a < 5; a++) {
        const float *m = mt + (ptrdiff_t)(a * 5) * ms + kk;
        __m512 m0 = _mm512_loadu_ps(m), m1 = _mm512_loadu_ps(m + ms), m2 = _mm512_loadu_ps(m + 2 * ms);
        __m512 m3 = _mm512_loadu_ps(m + 3 * ms), m4 = _mm512_loadu_ps(m + 4 * ms);
        /* rows of A^T applied along b: s[.][a] = A^T (row a of M) */
        WS2_AT(m0, m1, m2, m3, m4, s[0][a], s[1][a], s[2][a], s[3][a]);
    }
    __m512 bv = bias ? _mm512_maskz_loadu_ps(km, bias + k0 + kk) : _mm512_setzero_ps();
    for (int j = 0; j < 4; j++) {  /* o[4 i + j]: output (i, j) of the tile, 16 channels */
        __m512 o0, o1, o2, o3;
        WS2_AT(s[j][0], s[j][1], s[j][2], s[j][3], s[j][4], o0, o1, o2, o3);
        o[j] = _mm512_add_ps(o0, bv);
        o[4 + j] = _mm512_add_ps(o1, bv);
        o[8 + j] = _mm512_add_ps(o2, bv);
        o[12 + j] = _mm512_add_ps(o3, bv);
    }
    fc_tr16(o);  /* o[l]: the 4 x 4 tile of channel k0 + kk + l, row-major */
}

/* Output transform of tiles [t0, t0 + nt) for output channels [k0, k0 + kn) (M columns 0 .. kn-1,
 * row stride ldm, component stride ms) into y, + bias.  Four side-by-side tiles of one tile row
 * whose 16 columns lie inside y and start a 64-byte line (in the first row of channel k0; the
 * quads' start follows y's alignment: one to three single tiles first) go out as whole 16-float
 * rows, streamed where aligned (y is written once and not read back here; the stem's 128-bit
 * stores stalled on it: 1-thread 1.15 -> 1.5; unaligned 16-float rows gained nothing), other
 * tiles as 4-float rows (masked at the right edge). */
WS2_T static void ws2_outputs(const float *M, ptrdiff_t ms, ptrdiff_t ldm, const float *bias, float *y,
                              const ws2_geo *g, ptrdiff_t t0, int nt, int k0, int kn) {
    int tpi = g->th * g->tw;
    ptrdiff_t pq = (ptrdiff_t)g->P * g->Q;
    int streamed = 0;
    for (int tt = 0; tt < nt;) {
        ptrdiff_t t = t0 + tt;
        int n = (int)(t / tpi), r = (int)(t % tpi);
        int tj = r % g->tw, p0 = 4 * (r / g->tw), q0 = 4 * tj;
        int ra = g->P - p0 < 4 ? g->P - p0 : 4, rq = g->Q - q0 < 4 ? g->Q - q0 : 4;
        float *yt = y + (ptrdiff_t)n * g->K * pq + (ptrdiff_t)p0 * g->Q + q0;
        if (tt + 4 <= nt && tj + 4 <= g->tw && q0 + 16 <= g->Q
            && ((size_t)(yt + (ptrdiff_t)k0 * pq) & 63) == 0) {  /* four tiles, whole 64-byte rows */
            for (int kk = 0; kk < kn; kk += 16) {
                float buf[4][16][16] __attribute__((aligned(64)));
                for (int e = 0; e < 4; e++) {
                    __m512 o[16];
                    ws2_out_tile(M, ms, ldm, bias, tt + e, k0, kk, kn, o);
                    for (int l = 0; l < 16; l++) _mm512_store_ps(buf[e][l], o[l]);
                }
                int nl = kn - kk < 16 ? kn - kk : 16;
                for (int l = 0; l < nl; l++) {
                    float *yl = yt + (ptrdiff_t)(k0 + kk + l) * pq;
                    for (int i = 0; i < ra; i++) {
                        __m512 v = _mm512_castps128_ps512(_mm_load_ps(buf[0][l] + 4 * i));
                        v = _mm512_insertf32x4(v, _mm_load_ps(buf[1][l] + 4 * i), 1);
                        v = _mm512_insertf32x4(v, _mm_load_ps(buf[2][l] + 4 * i), 2);
                        v = _mm512_insertf32x4(v, _mm_load_ps(buf[3][l] + 4 * i), 3);
                        float *d = yl + (ptrdiff_t)i * g->Q;
                        if (((size_t)d & 63) == 0) {
                            _mm512_stream_ps(d, v);
                            streamed = 1;
                        } else {
                            _mm512_storeu_ps(d, v);
                        }
                    }
                }
            }
            tt += 4;
            continue;
        }
        for (int kk = 0; kk < kn; kk += 16) {
            __m512 o[16];
            ws2_out_tile(M, ms, ldm, bias, tt, k0, kk, kn, o);
            int nl = kn - kk < 16 ? kn - kk : 16;
            __mmask16 qm = (__mmask16)((1u << rq) - 1u);
            for (int l = 0; l < nl; l++) {
                float *yl = yt + (ptrdiff_t)(k0 + kk + l) * pq;
                /* row i is lanes 4i .. 4i + 3: 128-bit stores (masked stores of the whole vector at
                 * yl + i Q - 4 i only at the right edge: they were the stem's hottest instructions) */
                if (rq == 4) {
                    _mm_storeu_ps(yl, _mm512_castps512_ps128(o[l]));
                    if (ra > 1) _mm_storeu_ps(yl + g->Q, _mm512_extractf32x4_ps(o[l], 1));
                    if (ra > 2) _mm_storeu_ps(yl + 2 * (ptrdiff_t)g->Q, _mm512_extractf32x4_ps(o[l], 2));
                    if (ra > 3) _mm_storeu_ps(yl + 3 * (ptrdiff_t)g->Q, _mm512_extractf32x4_ps(o[l], 3));
                } else {
                    for (int i = 0; i < ra; i++)
                        _mm512_mask_storeu_ps(yl + (ptrdiff_t)i * g->Q - 4 * i, (__mmask16)(qm << (4 * i)), o[l]);
                }
            }
        }
        tt++;
    }
    if (streamed) _mm_sfence();
}

/* One block of tiles [t0, t0 + nt): V and M are this thread's workspaces. */
WS2_T static void ws2_block(const float *x, const float *Wp, const float *bias, float *y, float *V, float *M,
                            float *B, const ws2_geo *g, ptrdiff_t t0, int nt) {
    int npb = (nt + 7) / 8;
    ptrdiff_t vs = (ptrdiff_t)npb * 8 * g->Cp + 16;
    ptrdiff_t ms_full = (ptrdiff_t)npb * 8 * 48 * g->kg + 16;
    ws2_live lv;
    ws2_plan(g, &lv);
    ws2_inputs(x, V, vs, g, &lv, t0, nt);
    for (int j0 = 0; j0 < g->npan; j0 += g->kg) {
        int nj = g->npan - j0 < g->kg ? g->npan - j0 : g->kg;
        ptrdiff_t ldm = 48 * nj;
        ws2_products(V, vs, Wp, B, M, ms_full, g, &lv, npb, j0, nj);
        int k0 = 48 * j0, kn = g->K - k0 < 48 * nj ? g->K - k0 : 48 * nj;
        ws2_outputs(M, ms_full, ldm, bias, y, g, t0, nt, k0, kn);
    }
}
#else
#define WS2_OK 0
static int ws2_available(void) { return 0; }
typedef struct {
    int N, C, H, W, K, R, S, P, Q, ph, pw, th, tw, nr, ns, nsp, Cp, npan, kg;
} ws2_geo;
static void ws2_filters(const float *w, float *Wp, const ws2_geo *g, int k0, int k1) {
    (void)w; (void)Wp; (void)g; (void)k0; (void)k1;
}
static void ws2_block(const float *x, const float *Wp, const float *bias, float *y, float *V, float *M,
                      float *B, const ws2_geo *g, ptrdiff_t t0, int nt) {
    (void)x; (void)Wp; (void)bias; (void)y; (void)V; (void)M; (void)B; (void)g; (void)t0; (void)nt;
}
#endif
