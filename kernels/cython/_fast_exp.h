/* expf in plain C that gcc inlines and vectorises inside an `omp simd` loop, for the
 * softmax passes (_attn_impl.h, _loss_impl.h).  libmvec's vector expf costs a call per 16
 * elements plus its special-case checks and cannot be fused with the max/sum work around it:
 * in the 8x8x256x64 attention forward it was ~40% of the time against ~60% for both GEMMs.
 *
 * Cephes' expf: n = rint(x / ln2), r = x - n ln2 (two-part ln2), a degree-6 polynomial
 * for exp(r) on [-ln2/2, ln2/2] (~1 ulp), times 2^n built in the exponent bits, split in
 * two factors so that n from -150 to 128 (denormal results and exp(88.72) ~ FLT_MAX) stays
 * in range.  x < -104 gives 0 (exp(-104) is below the smallest denormal), x > 88.7228 +inf,
 * -inf 0, NaN NaN.  Every
 * ISA clone computes the same formula; only FMA contraction (x86-64-v3 and up) changes the
 * last bit. */
#ifndef FC_FAST_EXP_H
#define FC_FAST_EXP_H
#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float fc_bits_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline float fc_expf(float x) {
    const float lo = -104.0f, hi = 88.72283f;
    float xc = x < lo ? lo : x; /* NaN compares false: stays NaN */
    xc = xc > hi ? hi : xc;
    float n = __builtin_rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* p * 2^i1 by adding to p's exponent bits (p in [0.7, 1.5]), then * 2^i2 as a real
     * multiply, which rounds to a denormal or overflows correctly.  Integer bits, not a
     * second float factor: -ffast-math would reassociate p * s1 * s2 into p * (s1 * s2). */
    int32_t i = (int32_t)n, i1 = i >> 1, i2 = i - i1; /* n in [-150, 128]: each half in range */
    uint32_t pb;
    memcpy(&pb, &p, sizeof pb);
    float y = fc_bits_f32(pb + ((uint32_t)i1 << 23)) * fc_bits_f32((uint32_t)(i2 + 127) << 23);
    y = x < lo ? 0.0f : y;
    y = x != x ? x : y; /* NaN: the exponent arithmetic above may have made p's bits finite */
    y = x > hi ? (float)INFINITY : y;
    return y;
}

#endif
