// Flat-index decomposition.  64-bit division costs several times a 32-bit
// one, so kernels whose whole index space fits 32 bits (checked once per
// launch: a uniform branch) split indices with unsigned 32-bit arithmetic.
#ifndef FASTCONV_INDEX_CUH
#define FASTCONV_INDEX_CUH

__device__ __forceinline__ bool fits32(long long total) {
#ifdef FASTCONV_FORCE_INDEX64  // testing: exercise the 64-bit path on small shapes
    return false;
#else
    return total <= 0xFFFFFFFFLL;
#endif
}

// x = rest * A + a
__device__ __forceinline__ void split1(long long x, int A, bool small, int& a, long long& rest) {
    if (small) {
        const unsigned u = (unsigned)x, t = u / (unsigned)A;
        a = (int)(u - t * (unsigned)A);
        rest = t;
    } else {
        const long long t = x / A;
        a = (int)(x - t * A);
        rest = t;
    }
}

// x = (rest * B + b) * A + a
__device__ __forceinline__ void split2(long long x, int A, int B, bool small, int& a, int& b, long long& rest) {
    long long t;
    split1(x, A, small, a, t);
    split1(t, B, small, b, rest);
}

// (i / inner) % C
__device__ __forceinline__ int mid_index(long long i, long long inner, int C, bool small) {
    if (small) return (int)(((unsigned)i / (unsigned)inner) % (unsigned)C);
    return (int)((i / inner) % C);
}

#endif  // FASTCONV_INDEX_CUH
