// Fused softmax cross-entropy: one warp per row computes log-softmax, the
// per-row loss (class weights, ignore_index, label smoothing as in
// torch.nn.functional.cross_entropy) and the per-row target weight; the
// backward is one pass over (N, C).
typedef long long i64;
#include "reduce.cuh"

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }

template <typename T>
__global__ void ce_fwd(const T* __restrict__ logits, const i64* __restrict__ target, const T* __restrict__ weight,
                       T* __restrict__ logp, T* __restrict__ loss_row, T* __restrict__ wt_row, i64 N, int K,
                       T ls, i64 ignore_index) {
    const i64 row = blockIdx.x * (i64)(blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;  // whole warps
    const int lane = threadIdx.x % 32;
    const T* x = logits + row * K;
    T* lp = logp + row * K;
    T m = -(T)__int_as_float(0x7f800000);
    for (int i = lane; i < K; i += 32) m = nan_max(m, x[i]);
    m = warp_max(m);
    T s = T(0);
    for (int i = lane; i < K; i += 32) s += d_exp(x[i] - m);
    const T lse = d_log(warp_sum(s));
    T smooth = T(0);
    for (int i = lane; i < K; i += 32) {
        const T v = x[i] - m - lse;
        lp[i] = v;
        smooth -= (weight != nullptr ? weight[i] : T(1)) * v;
    }
    smooth = warp_sum(smooth);
    if (lane == 0) {
        const i64 t = target[row];
        const bool valid = t != ignore_index;
        T wt = T(0), loss = T(0);
        if (valid) {
            wt = weight != nullptr ? weight[t] : T(1);
            loss = -wt * (x[t] - m - lse);
        }
        if (ls > T(0)) loss = (T(1) - ls) * loss + (valid ? smooth : T(0)) * (ls / T(K));
        loss_row[row] = loss;
        wt_row[row] = wt;
    }
}

// dlogits[r, c] = g[r] * (p * coef[r] - (c == t) (1-ls) wt[r] - ls/K w[c]),  p = exp(logp)
template <typename T>
__global__ void ce_bwd(const T* __restrict__ logp, const i64* __restrict__ target, const T* __restrict__ weight,
                       const T* __restrict__ g, const T* __restrict__ coef, const T* __restrict__ wt,
                       T* __restrict__ dlogits, i64 N, int K, T ls, i64 ignore_index) {
    const i64 total = N * K;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const i64 r = i / K;
        const int c = (int)(i - r * K);
        const i64 t = target[r];
        T d = d_exp(logp[i]) * coef[r];
        if (t != ignore_index && t == c) d -= (T(1) - ls) * wt[r];
        if (ls > T(0)) d -= (ls / T(K)) * (weight != nullptr ? weight[c] : T(1));
        dlogits[i] = d * g[r];
    }
}

#ifdef FASTCONV_NVCC_CHECK
template __global__ void ce_fwd<float>(const float*, const i64*, const float*, float*, float*, float*, i64, int, float, i64);
template __global__ void ce_fwd<double>(const double*, const i64*, const double*, double*, double*, double*, i64, int, double, i64);
template __global__ void ce_bwd<float>(const float*, const i64*, const float*, const float*, const float*, const float*, float*, i64, int, float, i64);
template __global__ void ce_bwd<double>(const double*, const i64*, const double*, const double*, const double*, const double*, double*, i64, int, double, i64);
#endif
