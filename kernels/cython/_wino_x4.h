/* F(4x4, 3x3) float32 transforms in AVX-512 intrinsics, for _conv_winograd4x.pxi.
 *
 * Why: gcc vectorises the generic transforms of _wino_impl.h only in part (their per-tile
 * horizontal passes stay scalar: strided loads, stores through one pointer at several runtime
 * offsets), and a run there is at most one tile row, so on small planes (4 tiles per row on
 * res4 / CIFAR, 2 on res5) most lanes idle.  Here a run is up to 16 lanes of tiles at a stride
 * of 4 columns in a "strip" (6 rows for the input, 4 for the output): several tile rows (and
 * images) side by side, one unused "gap" lane between two segments (its 4 columns hold the
 * previous segment's last 2 columns and junk), and `keep` marks the lanes that are real tiles.
 * V and M hold only the kept lanes, in order (compress on store, expand on load).
 *
 * Needs _wino_impl.h included first (fcw_bgemm_f32 for row tails).
 * Functions are compiled for AVX-512F only (target attribute); fcw4x_available() says whether
 * the CPU has it, and the .pxi falls back to _wino_impl.h's generic clones otherwise.
 * The arithmetic is the same as _wino_impl.h's (same B^T and A^T, same operation order up to
 * FMA contraction), so both paths agree to float32 rounding. */
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#include <immintrin.h>
#define FCW4X_OK 1
#define FCW4X_T __attribute__((target("avx512f")))
#else
#define FCW4X_OK 0
#endif

#define FCW4X_SS 96 /* row stride of the strips: 16 lanes x 4 columns + 2, and room for whole-vector
                        stores past a segment (fcw4x_seg_in) */

static int fcw4x_available(void) {
#if FCW4X_OK
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#if FCW4X_OK
FCW4X_T static inline __mmask16 fcw4x_lanes(int n) {  /* the low n of 16 lanes, n clamped to 0 .. 16 */
    n = n < 0 ? 0 : n > 16 ? 16 : n;
    return (__mmask16)((1u << n) - 1u);
}

/* Columns -> lanes: e_b[j] = E[4j + b], b < 4, from the 64 floats at E (4x4 transposes of
 * 128-bit lanes, then within them). */
FCW4X_T static inline void fcw4x_deint(const float *E, __m512 *e0, __m512 *e1, __m512 *e2, __m512 *e3) {
    __m512 R0 = _mm512_loadu_ps(E), R1 = _mm512_loadu_ps(E + 16);
    __m512 R2 = _mm512_loadu_ps(E + 32), R3 = _mm512_loadu_ps(E + 48);
    __m512 v0 = _mm512_shuffle_f32x4(R0, R1, 0x44), v1 = _mm512_shuffle_f32x4(R2, R3, 0x44);
    __m512 v2 = _mm512_shuffle_f32x4(R0, R1, 0xEE), v3 = _mm512_shuffle_f32x4(R2, R3, 0xEE);
    __m512 u0 = _mm512_shuffle_f32x4(v0, v1, 0x88), u1 = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    __m512 u2 = _mm512_shuffle_f32x4(v2, v3, 0x88), u3 = _mm512_shuffle_f32x4(v2, v3, 0xDD);
    __m512 t0 = _mm512_unpacklo_ps(u0, u1), t1 = _mm512_unpackhi_ps(u0, u1);
    __m512 t2 = _mm512_unpacklo_ps(u2, u3), t3 = _mm512_unpackhi_ps(u2, u3);
    *e0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    *e1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    *e2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    *e3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
}

/* Lanes -> columns: Y[4j + c] = o_c[j] (the inverse of fcw4x_deint), 4 vectors R0..R3. */
FCW4X_T static inline void fcw4x_inter(__m512 o0, __m512 o1, __m512 o2, __m512 o3, __m512 *R) {
    __m512 t0 = _mm512_unpacklo_ps(o0, o1), t1 = _mm512_unpackhi_ps(o0, o1);
    __m512 t2 = _mm512_unpacklo_ps(o2, o3), t3 = _mm512_unpackhi_ps(o2, o3);
    __m512 u0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    __m512 u1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    __m512 u2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    __m512 u3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    __m512 v0 = _mm512_shuffle_f32x4(u0, u1, 0x44), v1 = _mm512_shuffle_f32x4(u2, u3, 0x44);
    __m512 v2 = _mm512_shuffle_f32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_f32x4(u2, u3, 0xEE);
    R[0] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    R[1] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    R[2] = _mm512_shuffle_f32x4(v2, v3, 0x88);
    R[3] = _mm512_shuffle_f32x4(v2, v3, 0xDD);
}

/* The 1-D input transform B^T d of six vectors. */
#define FCW4X_BT(d0, d1, d2, d3, d4, d5, o)                                                       \
    do {                                                                                          \
        const __m512 c4 = _mm512_set1_ps(4.0f), c5 = _mm512_set1_ps(5.0f), c2 = _mm512_set1_ps(2.0f); \
        o[0] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d0), _mm512_mul_ps(c5, d2)), d4);   \
        o[1] = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(-4.0f), _mm512_add_ps(d1, d2)),        \
                             _mm512_add_ps(d3, d4));                                             \
        o[2] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, _mm512_sub_ps(d1, d2)), d3), d4);   \
        o[3] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c2, _mm512_sub_ps(d3, d1)), d2), d4);   \
        o[4] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c2, _mm512_sub_ps(d1, d3)), d2), d4);   \
        o[5] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d1), _mm512_mul_ps(c5, d3)), d5);   \
    } while (0)

/* Input transform of a strip: lanes j < nl with tile origins r0 + 4j (6 rows W apart, columns
 * 0 .. 4nl+1 read, nothing past them); for the kept lanes, in order, v[xi * cs + i] = (B^T d B)[xi]. */
FCW4X_T static void fcw4x_in(const float *r0, ptrdiff_t W, float *v, ptrdiff_t cs, int nl, unsigned keep) {
    float E[6][80] __attribute__((aligned(64)));
    int ncol = 4 * nl + 2;
    for (int q = 0; q < (nl == 16 ? 80 : 64); q += 16) {  /* columns 64, 65: lane 15's only */
        __mmask16 m = fcw4x_lanes(ncol - q);
        __m512 d0 = _mm512_maskz_loadu_ps(m, r0 + q), d1 = _mm512_maskz_loadu_ps(m, r0 + W + q);
        __m512 d2 = _mm512_maskz_loadu_ps(m, r0 + 2 * W + q), d3 = _mm512_maskz_loadu_ps(m, r0 + 3 * W + q);
        __m512 d4 = _mm512_maskz_loadu_ps(m, r0 + 4 * W + q), d5 = _mm512_maskz_loadu_ps(m, r0 + 5 * W + q);
        __m512 o[6];
        FCW4X_BT(d0, d1, d2, d3, d4, d5, o);
        for (int a = 0; a < 6; a++) _mm512_store_ps(&E[a][q], o[a]);
    }
    __mmask16 km = (__mmask16)keep;
    int cnt = __builtin_popcount(keep & 0xFFFFu);
    int full = (unsigned)km == (unsigned)fcw4x_lanes(cnt);
    __mmask16 sm = fcw4x_lanes(cnt);
    for (int a = 0; a < 6; a++) {
        __m512 e0, e1, e2, e3, o[6];
        fcw4x_deint(E[a], &e0, &e1, &e2, &e3);
        __m512 nx = nl == 16 ? _mm512_load_ps(&E[a][64]) : _mm512_setzero_ps();  /* E[64], E[65] in lanes 0, 1 */
        __m512i ni = _mm512_castps_si512(nx), n1 = _mm512_alignr_epi32(ni, ni, 1);  /* E[65] in lane 0 */
        __m512 e4 = _mm512_castsi512_ps(_mm512_alignr_epi32(ni, _mm512_castps_si512(e0), 1));
        __m512 e5 = _mm512_castsi512_ps(_mm512_alignr_epi32(n1, _mm512_castps_si512(e1), 1));
        FCW4X_BT(e0, e1, e2, e3, e4, e5, o);
        float *va = v + (ptrdiff_t)(6 * a) * cs;
        for (int b = 0; b < 6; b++) {
            __m512 r = full ? o[b] : _mm512_maskz_compress_ps(km, o[b]);
            _mm512_mask_storeu_ps(va + (ptrdiff_t)b * cs, sm, r);
        }
    }
}

/* Output transform: for the kept lanes of nl (their M values in order at mp + xi * ks),
 * y0[a * Q + 4j + c] = (A^T M A)[a][c] + bv, rows a < 4, columns < 4nl written (junk in the
 * columns of unkept lanes). */
FCW4X_T static void fcw4x_out(const float *mp, ptrdiff_t ks, float *y0, ptrdiff_t Q, int nl, unsigned keep,
                             float bv) {
    __mmask16 km = (__mmask16)keep;
    int cnt = __builtin_popcount(keep & 0xFFFFu);
    __mmask16 lm = fcw4x_lanes(cnt);
    int full = (unsigned)km == (unsigned)lm;
    __m512 S[4][6];
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c8 = _mm512_set1_ps(8.0f);
    for (int b = 0; b < 6; b++) {
        __m512 m[6];
        for (int r = 0; r < 6; r++) {
            __m512 t = _mm512_maskz_loadu_ps(lm, mp + (ptrdiff_t)(6 * r + b) * ks);
            m[r] = full ? t : _mm512_maskz_expand_ps(km, t);
        }
        __m512 p12 = _mm512_add_ps(m[1], m[2]), m12 = _mm512_sub_ps(m[1], m[2]);
        __m512 p34 = _mm512_add_ps(m[3], m[4]), m34 = _mm512_sub_ps(m[3], m[4]);
        S[0][b] = _mm512_add_ps(_mm512_add_ps(m[0], p12), p34);
        S[1][b] = _mm512_add_ps(m12, _mm512_mul_ps(c2, m34));
        S[2][b] = _mm512_add_ps(p12, _mm512_mul_ps(c4, p34));
        S[3][b] = _mm512_add_ps(_mm512_add_ps(m12, _mm512_mul_ps(c8, m34)), m[5]);
    }
    const __m512 vb = _mm512_set1_ps(bv);
    int ncol = 4 * nl;
    for (int a = 0; a < 4; a++) {
        __m512 *s = S[a], R[4];
        __m512 p12 = _mm512_add_ps(s[1], s[2]), m12 = _mm512_sub_ps(s[1], s[2]);
        __m512 p34 = _mm512_add_ps(s[3], s[4]), m34 = _mm512_sub_ps(s[3], s[4]);
        __m512 o0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], p12), p34), vb);
        __m512 o1 = _mm512_add_ps(_mm512_add_ps(m12, _mm512_mul_ps(c2, m34)), vb);
        __m512 o2 = _mm512_add_ps(_mm512_add_ps(p12, _mm512_mul_ps(c4, p34)), vb);
        __m512 o3 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m12, _mm512_mul_ps(c8, m34)), s[5]), vb);
        fcw4x_inter(o0, o1, o2, o3, R);
        float *yr = y0 + (ptrdiff_t)a * Q;
        for (int q = 0; q < 4 && 16 * q < ncol; q++)
            _mm512_mask_storeu_ps(yr + 16 * q, fcw4x_lanes(ncol - 16 * q), R[q]);
    }
}

/* F(2x2, 3x3) counterparts for backward-weight (F(2x2) is what res4 / res5 take there): input
 * tiles 4x4 at a stride of 2 columns (lanes: tile origins r0 + 2j, columns < 2nl+2 read), and
 * 2x2 dy tiles; B^T rows (1,0,-1,0) (0,1,1,0) (0,-1,1,0) (0,1,0,-1), A rows (1,0) (1,1) (1,-1)
 * (0,-1), as fcw_in2 / fcw_dy2 of _wino_impl.h. */
FCW4X_T static inline void fcw2x_deint(const float *E, __m512 *ev, __m512 *od) {
    const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __m512 L0 = _mm512_loadu_ps(E), L1 = _mm512_loadu_ps(E + 16);
    *ev = _mm512_permutex2var_ps(L0, ie, L1);
    *od = _mm512_permutex2var_ps(L0, io, L1);
}

FCW4X_T static inline void fcw4x_put(float *p, ptrdiff_t cs, int nb, const __m512 *o, __mmask16 km, int full,
                                     __mmask16 sm) {
    for (int b = 0; b < nb; b++)
        _mm512_mask_storeu_ps(p + (ptrdiff_t)b * cs, sm, full ? o[b] : _mm512_maskz_compress_ps(km, o[b]));
}

FCW4X_T static void fcw2x_in(const float *r0, ptrdiff_t W, float *v, ptrdiff_t cs, int nl, unsigned keep) {
    float E[4][48] __attribute__((aligned(64)));
    int ncol = 2 * nl + 2;
    for (int q = 0; q < 48; q += 16) {
        __mmask16 m = fcw4x_lanes(ncol - q);
        __m512 d0 = _mm512_maskz_loadu_ps(m, r0 + q), d1 = _mm512_maskz_loadu_ps(m, r0 + W + q);
        __m512 d2 = _mm512_maskz_loadu_ps(m, r0 + 2 * W + q), d3 = _mm512_maskz_loadu_ps(m, r0 + 3 * W + q);
        _mm512_store_ps(&E[0][q], _mm512_sub_ps(d0, d2));
        _mm512_store_ps(&E[1][q], _mm512_add_ps(d1, d2));
        _mm512_store_ps(&E[2][q], _mm512_sub_ps(d2, d1));
        _mm512_store_ps(&E[3][q], _mm512_sub_ps(d1, d3));
    }
    __mmask16 km = (__mmask16)keep, sm = fcw4x_lanes(__builtin_popcount(keep & 0xFFFFu));
    int full = (unsigned)km == (unsigned)sm;
    for (int a = 0; a < 4; a++) {
        __m512 e0, e1, o[4];
        fcw2x_deint(E[a], &e0, &e1);
        __m512i ni = _mm512_castps_si512(_mm512_load_ps(&E[a][32])), n1 = _mm512_alignr_epi32(ni, ni, 1);
        __m512 e2 = _mm512_castsi512_ps(_mm512_alignr_epi32(ni, _mm512_castps_si512(e0), 1));
        __m512 e3 = _mm512_castsi512_ps(_mm512_alignr_epi32(n1, _mm512_castps_si512(e1), 1));
        o[0] = _mm512_sub_ps(e0, e2);
        o[1] = _mm512_add_ps(e1, e2);
        o[2] = _mm512_sub_ps(e2, e1);
        o[3] = _mm512_sub_ps(e1, e3);
        fcw4x_put(v + (ptrdiff_t)(4 * a) * cs, cs, 4, o, km, full, sm);
    }
}

FCW4X_T static void fcw2x_dy(const float *y0, ptrdiff_t Q, float *d, ptrdiff_t ks, int nl, unsigned keep) {
    float E[4][32] __attribute__((aligned(64)));
    int ncol = 2 * nl;
    for (int q = 0; q < 32; q += 16) {
        __mmask16 m = fcw4x_lanes(ncol - q);
        __m512 a = _mm512_maskz_loadu_ps(m, y0 + q), b = _mm512_maskz_loadu_ps(m, y0 + Q + q);
        _mm512_store_ps(&E[0][q], a);
        _mm512_store_ps(&E[1][q], _mm512_add_ps(a, b));
        _mm512_store_ps(&E[2][q], _mm512_sub_ps(a, b));
        _mm512_store_ps(&E[3][q], _mm512_sub_ps(_mm512_setzero_ps(), b));
    }
    __mmask16 km = (__mmask16)keep, sm = fcw4x_lanes(__builtin_popcount(keep & 0xFFFFu));
    int full = (unsigned)km == (unsigned)sm;
    for (int r = 0; r < 4; r++) {
        __m512 s0, s1, o[4];
        fcw2x_deint(E[r], &s0, &s1);
        o[0] = s0;
        o[1] = _mm512_add_ps(s0, s1);
        o[2] = _mm512_sub_ps(s0, s1);
        o[3] = _mm512_sub_ps(_mm512_setzero_ps(), s1);
        fcw4x_put(d + (ptrdiff_t)(4 * r) * ks, ks, 4, o, km, full, sm);
    }
}

/* The component products M_xi (K x nb) = U_xi (K x C) . V_xi (C x nb) (layouts as fcw_bgemm's in
 * _wino_impl.h), register block 8 rows x 2 vectors (16 accumulators; fcw_bgemm's 4 x 2 reads
 * each V row twice as often); rows past the last multiple of 8 go to fcw_bgemm_f32. */
FCW4X_T static void fcw4x_bgemm(int na, int K, int C, int nb, const float *U, ptrdiff_t us, const float *V,
                                ptrdiff_t vs, float *M, ptrdiff_t ms) {
    int K8 = K - K % 8;
    for (int xi = 0; xi < na; xi++) {
        const float *u = U + xi * us, *v = V + xi * vs;
        float *m = M + xi * ms;
        for (int k = 0; k < K8; k += 8) {
            const float *u0 = u + (ptrdiff_t)k * C;
            for (int i = 0; i < nb; i += 32) {
                __mmask16 m0 = fcw4x_lanes(nb - i), m1 = fcw4x_lanes(nb - i - 16);
                __m512 a[8][2];
                for (int r = 0; r < 8; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
                const float *vp = v + i;
                if (m1 == (__mmask16)0xFFFF) {
                    for (int c = 0; c < C; c++, vp += nb) {
                        __m512 v0 = _mm512_loadu_ps(vp), v1 = _mm512_loadu_ps(vp + 16);
                        for (int r = 0; r < 8; r++) {
                            __m512 b = _mm512_set1_ps(u0[(ptrdiff_t)r * C + c]);
                            a[r][0] = _mm512_fmadd_ps(b, v0, a[r][0]);
                            a[r][1] = _mm512_fmadd_ps(b, v1, a[r][1]);
                        }
                    }
                } else {
                    for (int c = 0; c < C; c++, vp += nb) {
                        __m512 v0 = _mm512_maskz_loadu_ps(m0, vp), v1 = _mm512_maskz_loadu_ps(m1, vp + 16);
                        for (int r = 0; r < 8; r++) {
                            __m512 b = _mm512_set1_ps(u0[(ptrdiff_t)r * C + c]);
                            a[r][0] = _mm512_fmadd_ps(b, v0, a[r][0]);
                            a[r][1] = _mm512_fmadd_ps(b, v1, a[r][1]);
                        }
                    }
                }
                float *mp = m + (ptrdiff_t)k * nb + i;
                for (int r = 0; r < 8; r++, mp += nb) {
                    _mm512_mask_storeu_ps(mp, m0, a[r][0]);
                    _mm512_mask_storeu_ps(mp + 16, m1, a[r][1]);
                }
            }
        }
    }
    if (K8 < K)
        fcw_bgemm_f32(na, K - K8, C, nb, U + (ptrdiff_t)K8 * C, us, V, vs, M + (ptrdiff_t)K8 * nb, ms);
}

/* One segment into an input strip: rows h0 .. h0+nrows-1 (6 for x, 4 for dy) and columns w0 .. w0+ncol-1 of an H x W
 * plane, zero outside it, to dst (rows FCW4X_SS apart).  Whole vectors are stored, so up to 15
 * columns past the segment get junk: segments are filled left to right, and the strip rows have
 * room for it (masked stores cost more here). */
FCW4X_T static void fcw4x_seg_in(const float *plane, int H, int W, int h0, int w0, int ncol, float *dst, int nrows) {
    __mmask16 ok[5];  /* lanes l of chunk q with 0 <= w0 + 16q + l < W and 16q + l < ncol */
    int nq = (ncol + 15) / 16;
    for (int q = 0; q < nq; q++) {
        int c0 = w0 + 16 * q, lo = c0 < 0 ? -c0 : 0, hi = W - c0, hn = ncol - 16 * q;
        ok[q] = (__mmask16)(fcw4x_lanes(hi < hn ? hi : hn) & ~fcw4x_lanes(lo));
    }
    for (int a = 0; a < nrows; a++) {
        int ih = h0 + a;
        float *d = dst + a * FCW4X_SS;
        if (ih >= 0 && ih < H) {
            const float *src = plane + (ptrdiff_t)ih * W + w0;
            for (int q = 0; q < nq; q++) _mm512_storeu_ps(d + 16 * q, _mm512_maskz_loadu_ps(ok[q], src + 16 * q));
        } else {
            for (int q = 0; q < nq; q++) _mm512_storeu_ps(d + 16 * q, _mm512_setzero_ps());
        }
    }
}

/* One segment out of an output strip: rows p0 .. p0+3 (those < P), columns q0 .. q0+ncol-1
 * (those < Q) of a P x Q plane from src (rows FCW4X_SS apart). */
FCW4X_T static void fcw4x_seg_out(const float *src, float *plane, int P, int Q, int p0, int q0, int ncol) {
    int nc = ncol < Q - q0 ? ncol : Q - q0;
    for (int a = 0; a < 4 && p0 + a < P; a++) {
        float *d = plane + (ptrdiff_t)(p0 + a) * Q + q0;
        const float *s = src + a * FCW4X_SS;
        for (int q = 0; q < nc; q += 16) {
            __mmask16 m = fcw4x_lanes(nc - q);
            _mm512_mask_storeu_ps(d + q, m, _mm512_maskz_loadu_ps(m, s + q));
        }
    }
}
/* Backward-weight: for the kept lanes j < nl of 4x4 dy tiles at y0 + 4j (4 rows Q apart, columns
 * < 4nl read), in order, d[xi * ks + i] = (A dY A^T)[xi]; A rows (1,0,0,0) (1,1,1,1) (1,-1,1,-1)
 * (1,2,4,8) (1,-2,4,-8) (0,0,0,1). */
FCW4X_T static void fcw4x_dy(const float *y0, ptrdiff_t Q, float *d, ptrdiff_t ks, int nl, unsigned keep) {
    float E[6][64] __attribute__((aligned(64)));
    int ncol = 4 * nl;
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c8 = _mm512_set1_ps(8.0f);
    for (int q = 0; q < 64; q += 16) {
        __mmask16 m = fcw4x_lanes(ncol - q);
        __m512 a = _mm512_maskz_loadu_ps(m, y0 + q), b = _mm512_maskz_loadu_ps(m, y0 + Q + q);
        __m512 e = _mm512_maskz_loadu_ps(m, y0 + 2 * Q + q), f = _mm512_maskz_loadu_ps(m, y0 + 3 * Q + q);
        __m512 pe = _mm512_add_ps(a, e), pf = _mm512_add_ps(b, f), qe = _mm512_fmadd_ps(c4, e, a);
        __m512 qf = _mm512_fmadd_ps(c8, f, _mm512_mul_ps(c2, b));
        _mm512_store_ps(&E[0][q], a);
        _mm512_store_ps(&E[1][q], _mm512_add_ps(pe, pf));
        _mm512_store_ps(&E[2][q], _mm512_sub_ps(pe, pf));
        _mm512_store_ps(&E[3][q], _mm512_add_ps(qe, qf));
        _mm512_store_ps(&E[4][q], _mm512_sub_ps(qe, qf));
        _mm512_store_ps(&E[5][q], f);
    }
    __mmask16 km = (__mmask16)keep;
    int cnt = __builtin_popcount(keep & 0xFFFFu);
    __mmask16 sm = fcw4x_lanes(cnt);
    int full = (unsigned)km == (unsigned)sm;
    for (int r = 0; r < 6; r++) {
        __m512 a, b, e, f, o[6];
        fcw4x_deint(E[r], &a, &b, &e, &f);
        __m512 pe = _mm512_add_ps(a, e), pf = _mm512_add_ps(b, f), qe = _mm512_fmadd_ps(c4, e, a);
        __m512 qf = _mm512_fmadd_ps(c8, f, _mm512_mul_ps(c2, b));
        o[0] = a;
        o[1] = _mm512_add_ps(pe, pf);
        o[2] = _mm512_sub_ps(pe, pf);
        o[3] = _mm512_add_ps(qe, qf);
        o[4] = _mm512_sub_ps(qe, qf);
        o[5] = f;
        float *dr = d + (ptrdiff_t)(6 * r) * ks;
        for (int c = 0; c < 6; c++)
            _mm512_mask_storeu_ps(dr + (ptrdiff_t)c * ks, sm, full ? o[c] : _mm512_maskz_compress_ps(km, o[c]));
    }
}

/* Prefetch rows r0 .. r1-1 (clamped to 0 .. H-1) of an H x W plane into L2. */
static inline void fcw4x_prefetch_rows(const float *plane, int H, int W, int r0, int r1) {
    if (r0 < 0) r0 = 0;
    if (r1 > H) r1 = H;
    if (r1 <= r0) return;
    const char *p = (const char *)(plane + (ptrdiff_t)r0 * W), *e = (const char *)(plane + (ptrdiff_t)r1 * W);
    for (; p < e; p += 64) _mm_prefetch(p, _MM_HINT_T1);
}
#else
static inline void fcw4x_prefetch_rows(const float *plane, int H, int W, int r0, int r1) {}
static void fcw4x_in(const float *r0, ptrdiff_t W, float *v, ptrdiff_t cs, int nl, unsigned keep) {}
static void fcw4x_out(const float *mp, ptrdiff_t ks, float *y0, ptrdiff_t Q, int nl, unsigned keep, float bv) {}
static void fcw4x_seg_in(const float *plane, int H, int W, int h0, int w0, int ncol, float *dst, int nrows) {}
static void fcw4x_dy(const float *y0, ptrdiff_t Q, float *d, ptrdiff_t ks, int nl, unsigned keep) {}
static void fcw2x_in(const float *r0, ptrdiff_t W, float *v, ptrdiff_t cs, int nl, unsigned keep) {}
static void fcw2x_dy(const float *y0, ptrdiff_t Q, float *d, ptrdiff_t ks, int nl, unsigned keep) {}
static void fcw4x_bgemm(int na, int K, int C, int nb, const float *U, ptrdiff_t us, const float *V,
                        ptrdiff_t vs, float *M, ptrdiff_t ms) {}
static void fcw4x_seg_out(const float *src, float *plane, int P, int Q, int p0, int q0, int ncol) {}
#endif
