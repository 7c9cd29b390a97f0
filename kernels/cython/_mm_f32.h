/* Float32 GEMM without packing for the RNN cells and the attention (AVX-512; callers check
 * fc_has_avx512 at run time and use BLAS otherwise). */
#ifndef FC_MM_F32_H
#define FC_MM_F32_H
#include <stddef.h>

/* ---- GEMMs without packing (AVX-512, float32) --------------------------------------------
 * fc_mm_f32: C[r, n] (+)= sum_k A1[r*sr1 + k*sk1] B1[k*ldb1 + n] + sum_k A2[r*sr2 + k*sk2] B2[k*ldb2 + n]
 * for rows r in [r0, r1) and columns n < ncols (row stride ldc; acc: add to C).  A is read as
 * broadcast operands through strides (W as given, or d^T for dW = d^T x), B as vectors, the
 * two products summed in the same registers of 8-row x 32-column tiles.  OpenBLAS spends ~20%
 * of the LSTM 64x256x512 forward re-packing the 6 MB of weights on every call; here they
 * stream straight from memory.  Row tails clamp to the last row (computed, not stored),
 * column tails use masked loads and stores.  Used only where the CPU has AVX-512 (checked at
 * run time, fc_has_avx512); otherwise and for float64 the caller uses BLAS. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
static int fc_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

/* 16 named accumulators (an array of them was kept in memory by GCC: 2.5x slower) */
#define FC_MM_ROW(i)                                                                               \
    { __m512 av = _mm512_set1_ps(a##i[ko]);                                                        \
      c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1); }
#define FC_MM_LOOP(P, B, LDB, K, SK, LOAD0, LOAD1)                                                 \
    {   const float *a0 = P[0], *a1 = P[1], *a2 = P[2], *a3 = P[3], *a4 = P[4], *a5 = P[5],       \
                    *a6 = P[6], *a7 = P[7];                                                        \
        for (ptrdiff_t k = 0; k < (K); k++) {                                                      \
            const float *b = (B) + k * (LDB) + n;                                                  \
            ptrdiff_t ko = k * (SK);                                                               \
            __m512 b0 = LOAD0, b1 = LOAD1;                                                         \
            FC_MM_ROW(0) FC_MM_ROW(1) FC_MM_ROW(2) FC_MM_ROW(3)                                    \
            FC_MM_ROW(4) FC_MM_ROW(5) FC_MM_ROW(6) FC_MM_ROW(7)                                    \
        }                                                                                          \
    }
#define FC_MM_TILE(LOAD0, LOAD1)                                                                   \
    {   __m512 o[16];                                                                              \
        for (int i = 0; i < 8; i++) {                                                              \
            int ld_ = acc && i < mr;                                                               \
            o[2 * i] = ld_ ? _mm512_maskz_loadu_ps(m0, C + (r + i) * ldc + n) : _mm512_setzero_ps(); \
            o[2 * i + 1] = ld_ ? _mm512_maskz_loadu_ps(m1, C + (r + i) * ldc + n + 16) : _mm512_setzero_ps(); \
        }                                                                                          \
        __m512 c00 = o[0], c01 = o[1], c10 = o[2], c11 = o[3], c20 = o[4], c21 = o[5], c30 = o[6], \
               c31 = o[7], c40 = o[8], c41 = o[9], c50 = o[10], c51 = o[11], c60 = o[12],          \
               c61 = o[13], c70 = o[14], c71 = o[15];                                              \
        FC_MM_LOOP(p1, B1, ldb1, K1, sk1, LOAD0, LOAD1)                                            \
        FC_MM_LOOP(p2, B2, ldb2, K2, sk2, LOAD0, LOAD1)                                            \
        o[0] = c00; o[1] = c01; o[2] = c10; o[3] = c11; o[4] = c20; o[5] = c21; o[6] = c30;        \
        o[7] = c31; o[8] = c40; o[9] = c41; o[10] = c50; o[11] = c51; o[12] = c60; o[13] = c61;    \
        o[14] = c70; o[15] = c71;                                                                  \
        for (int i = 0; i < mr; i++) {                                                             \
            _mm512_mask_storeu_ps(C + (r + i) * ldc + n, m0, o[2 * i]);                            \
            _mm512_mask_storeu_ps(C + (r + i) * ldc + n + 16, m1, o[2 * i + 1]);                   \
        }                                                                                          \
    }

__attribute__((target("avx512f"))) static void fc_mm_f32(
        const float *A1, ptrdiff_t sr1, ptrdiff_t sk1, const float *B1, ptrdiff_t ldb1, ptrdiff_t K1,
        const float *A2, ptrdiff_t sr2, ptrdiff_t sk2, const float *B2, ptrdiff_t ldb2, ptrdiff_t K2,
        float *C, ptrdiff_t ldc, ptrdiff_t ncols, ptrdiff_t r0, ptrdiff_t r1, int acc) {
    for (ptrdiff_t r = r0; r < r1; r += 8) {
        ptrdiff_t mr = r1 - r < 8 ? r1 - r : 8;
        const float *p1[8], *p2[8];
        for (int i = 0; i < 8; i++) {
            ptrdiff_t rr = r + (i < mr ? i : mr - 1);
            p1[i] = A1 + rr * sr1;
            p2[i] = A2 + rr * sr2;
        }
        for (ptrdiff_t n = 0; n < ncols; n += 32) {
            ptrdiff_t nr = ncols - n;
            __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
            __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1);
            if (nr >= 32)
                FC_MM_TILE(_mm512_loadu_ps(b), _mm512_loadu_ps(b + 16))
            else
                FC_MM_TILE(_mm512_maskz_loadu_ps(m0, b), _mm512_maskz_loadu_ps(m1, b + 16))
        }
    }
}
#else
static int fc_has_avx512(void) { return 0; }
static void fc_mm_f32(const float *A1, ptrdiff_t sr1, ptrdiff_t sk1, const float *B1, ptrdiff_t ldb1,
        ptrdiff_t K1, const float *A2, ptrdiff_t sr2, ptrdiff_t sk2, const float *B2, ptrdiff_t ldb2,
        ptrdiff_t K2, float *C, ptrdiff_t ldc, ptrdiff_t ncols, ptrdiff_t r0, ptrdiff_t r1, int acc) {
    (void)A1; (void)sr1; (void)sk1; (void)B1; (void)ldb1; (void)K1; (void)A2; (void)sr2; (void)sk2;
    (void)B2; (void)ldb2; (void)K2; (void)C; (void)ldc; (void)ncols; (void)r0; (void)r1; (void)acc;
}
#endif
#endif /* FC_MM_F32_H */
