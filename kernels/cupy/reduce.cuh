// Deterministic warp / block reductions (fixed shuffle and tree order).
#ifndef FASTCONV_REDUCE_CUH
#define FASTCONV_REDUCE_CUH
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// NaN-propagating max
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) { return (b > a || b != b) ? b : a; }

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum/max, result broadcast to all threads.  blockDim.x a multiple of 32, <= 1024.
template <typename T, bool MAX>
__device__ T block_reduce(T v, T* sh) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();  // sh may still be read from a previous call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        T t = lane < nw ? sh[lane] : sh[0];
        if (!MAX && lane >= nw) t = T(0);
        t = MAX ? warp_max(t) : warp_sum(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

#endif  // FASTCONV_REDUCE_CUH
