/* expf for softmax arguments (x - rowmax <= 0), in plain C that gcc inlines and vectorises
 * inside an `omp simd` loop (_attn_impl.h, _loss_impl.h).  libmvec's vector expf costs a call
 * per 16 elements plus its special-case handling and cannot be fused with the max/sum work
 * around it: in the 8x8x256x64 attention forward it was ~40% of the time against ~60% for
 * both GEMMs.
 *
 * Cephes' expf: n = rint(x / ln2), r = x - n ln2 (two-part ln2), a degree-6 polynomial for
 * exp(r) on [-ln2/2, ln2/2] (~1 ulp; gcc -ffast-math may fold the two-part ln2 into one,
 * a few ulp for |x| ~ 80), then 2^n added to the result's exponent bits.  About 16 vector
 * operations per 16 floats with AVX-512.
 * Domain x <= 88 (exp(88) ~ 1.65e38; softmax arguments are <= 0).  Results below FLT_MIN
 * (x < -87.33) are 0, -inf gives 0, NaN gives NaN: on x86 the float->int conversion of NaN
 * is 0x80000000, whose << 23 is 0, so p's NaN bits pass unchanged; elsewhere an explicit
 * select.  Every ISA clone computes the same formula; FMA contraction (x86-64-v3 and up)
 * changes the last bits only. */
#ifndef FC_FAST_EXP_H
#define FC_FAST_EXP_H
#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float fc_expf_sm(float x) {
    const float lo = -87.33654f; /* log(FLT_MIN): n >= -126 below */
    float xc = x < lo ? lo : x;  /* NaN compares false: stays NaN */
    float n = __builtin_rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r + 1.0f;
    p = p * r + 1.0f; /* p in [0.7, 1.42]: exponent 126 or 127, + n in [-126, 127] stays normal */
    uint32_t pb;
    memcpy(&pb, &p, sizeof pb);
    pb += (uint32_t)(int32_t)n << 23;
    float y;
    memcpy(&y, &pb, sizeof y);
    y = x < lo ? 0.0f : y;
#if !defined(__x86_64__) && !defined(__i386__)
    y = x != x ? x : y;
#endif
    return y;
}

#endif
