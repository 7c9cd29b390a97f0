// Batch norm (two-pass statistics, one block per channel, deterministic),
// layer norm (a block per row), dropout (counter-based hash RNG).
typedef long long i64;
#include "index.cuh"
#include "reduce.cuh"

__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }

// x viewed as (outer, C, inner).  One block per channel c:
// mean = sum(x)/count; var = sum((x-mean)^2)/count (biased); invstd = 1/sqrt(var+eps);
// running stats (if has_running) updated with the unbiased variance.
template <typename T>
__global__ void bn_stats(const T* __restrict__ x, T* __restrict__ mean, T* __restrict__ invstd,
                         T* __restrict__ rmean, T* __restrict__ rvar, i64 outer, int C, i64 inner,
                         T eps, T momentum, int has_running) {
    __shared__ T sh[33];
    const int c = blockIdx.x;
    const i64 count = outer * inner;
    T s = T(0);
    for (i64 o = 0; o < outer; ++o) {
        const T* row = x + (o * C + c) * inner;
        for (i64 i = threadIdx.x; i < inner; i += blockDim.x) s += row[i];
    }
    const T mu = block_reduce<T, false>(s, sh) / T(count);
    T q = T(0);
    for (i64 o = 0; o < outer; ++o) {
        const T* row = x + (o * C + c) * inner;
        for (i64 i = threadIdx.x; i < inner; i += blockDim.x) {
            const T d = row[i] - mu;
            q += d * d;
        }
    }
    const T var = block_reduce<T, false>(q, sh) / T(count);
    if (threadIdx.x == 0) {
        mean[c] = mu;
        invstd[c] = T(1) / d_sqrt(var + eps);
        if (has_running) {
            const T unbiased = var * (T(count) / T(count - 1));
            rmean[c] = rmean[c] * (T(1) - momentum) + momentum * mu;
            rvar[c] = rvar[c] * (T(1) - momentum) + momentum * unbiased;
        }
    }
}

// y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c]  (gamma/beta may be null)
template <typename T>
__global__ void bn_apply(const T* __restrict__ x, T* __restrict__ y, const T* __restrict__ mean,
                         const T* __restrict__ invstd, const T* __restrict__ gamma, const T* __restrict__ beta,
                         i64 n, int C, i64 inner) {
    const bool small = fits32(n);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const int c = mid_index(i, inner, C, small);
        T scale = invstd[c];
        if (gamma != nullptr) scale *= gamma[c];
        T v = (x[i] - mean[c]) * scale;
        if (beta != nullptr) v += beta[c];
        y[i] = v;
    }
}

// Per channel: sum_dy = sum(dy), sum_dy_xhat = sum(dy * (x - mean) * invstd).
template <typename T>
__global__ void bn_bwd_reduce(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                              const T* __restrict__ invstd, T* __restrict__ sum_dy, T* __restrict__ sum_dy_xhat,
                              i64 outer, int C, i64 inner) {
    __shared__ T sh[33];
    const int c = blockIdx.x;
    const T mu = mean[c], is = invstd[c];
    T a = T(0), b = T(0);
    for (i64 o = 0; o < outer; ++o) {
        const i64 base = (o * C + c) * inner;
        for (i64 i = threadIdx.x; i < inner; i += blockDim.x) {
            const T g = dy[base + i];
            a += g;
            b += g * ((x[base + i] - mu) * is);
        }
    }
    a = block_reduce<T, false>(a, sh);
    b = block_reduce<T, false>(b, sh);
    if (threadIdx.x == 0) { sum_dy[c] = a; sum_dy_xhat[c] = b; }
}

// training: dx = (dy - sum_dy/count - xhat * sum_dy_xhat/count) * invstd * gamma
// eval:     dx = dy * invstd * gamma
template <typename T>
__global__ void bn_bwd_dx(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                          const T* __restrict__ invstd, const T* __restrict__ gamma, const T* __restrict__ sum_dy,
                          const T* __restrict__ sum_dy_xhat, T* __restrict__ dx, i64 n, int C, i64 inner, T count,
                          int training) {
    const bool small = fits32(n);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const int c = mid_index(i, inner, C, small);
        T g = invstd[c];
        if (gamma != nullptr) g *= gamma[c];
        if (training) {
            const T xhat = (x[i] - mean[c]) * invstd[c];
            dx[i] = (dy[i] - sum_dy[c] / count - xhat * (sum_dy_xhat[c] / count)) * g;
        } else {
            dx[i] = dy[i] * g;
        }
    }
}

// ---- layer norm: rows of length D, one block per row ---------------------------
template <typename T>
__global__ void ln_fwd(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                       T* __restrict__ y, T* __restrict__ mean, T* __restrict__ rstd, i64 rows, i64 D, T eps) {
    __shared__ T sh[33];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * D;
        T* yr = y + r * D;
        T s = T(0);
        for (i64 i = threadIdx.x; i < D; i += blockDim.x) s += xr[i];
        const T mu = block_reduce<T, false>(s, sh) / T(D);
        T q = T(0);
        for (i64 i = threadIdx.x; i < D; i += blockDim.x) { const T d = xr[i] - mu; q += d * d; }
        const T rs = T(1) / d_sqrt(block_reduce<T, false>(q, sh) / T(D) + eps);
        for (i64 i = threadIdx.x; i < D; i += blockDim.x) {
            T v = (xr[i] - mu) * rs;
            if (gamma != nullptr) v *= gamma[i];
            if (beta != nullptr) v += beta[i];
            yr[i] = v;
        }
        if (threadIdx.x == 0) { mean[r] = mu; rstd[r] = rs; }
    }
}

// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma
template <typename T>
__global__ void ln_bwd_dx(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gamma,
                          const T* __restrict__ mean, const T* __restrict__ rstd, T* __restrict__ dx, i64 rows, i64 D) {
    __shared__ T sh[33];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * D;
        const T* gr = dy + r * D;
        const T mu = mean[r], rs = rstd[r];
        T a = T(0), b = T(0);
        for (i64 i = threadIdx.x; i < D; i += blockDim.x) {
            const T dxh = gamma != nullptr ? gr[i] * gamma[i] : gr[i];
            a += dxh;
            b += dxh * ((xr[i] - mu) * rs);
        }
        a = block_reduce<T, false>(a, sh) / T(D);
        b = block_reduce<T, false>(b, sh) / T(D);
        for (i64 i = threadIdx.x; i < D; i += blockDim.x) {
            const T dxh = gamma != nullptr ? gr[i] * gamma[i] : gr[i];
            dx[r * D + i] = rs * (dxh - a - ((xr[i] - mu) * rs) * b);
        }
    }
}

// dgamma[j] = sum_r dy[r, j] * xhat[r, j]; dbeta[j] = sum_r dy[r, j]; one thread per column,
// rows in order (deterministic; consecutive threads read consecutive columns).
template <typename T>
__global__ void ln_bwd_params(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
                              const T* __restrict__ rstd, T* __restrict__ dgamma, T* __restrict__ dbeta, i64 rows, i64 D) {
    for (i64 j = blockIdx.x * (i64)blockDim.x + threadIdx.x; j < D; j += (i64)gridDim.x * blockDim.x) {
        T a = T(0), b = T(0);
        for (i64 r = 0; r < rows; ++r) {
            const T g = dy[r * D + j];
            a += g * ((x[r * D + j] - mean[r]) * rstd[r]);
            b += g;
        }
        dgamma[j] = a;
        dbeta[j] = b;
    }
}

// ---- dropout: keep element i when uniform(seed, i) >= p ------------------------
__device__ __forceinline__ unsigned long long splitmix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

template <typename T>
__global__ void dropout_fwd(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ mask, i64 n,
                            unsigned long long seed, double p, T scale) {
    const unsigned long long key = splitmix64(seed);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const double u = (double)(splitmix64(key ^ (unsigned long long)i) >> 11) * (1.0 / 9007199254740992.0);
        const T m = u >= p ? scale : T(0);
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

#ifdef FASTCONV_NVCC_CHECK
#define INST(T)                                                                                               \
    template __global__ void bn_stats<T>(const T*, T*, T*, T*, T*, i64, int, i64, T, T, int);                 \
    template __global__ void bn_apply<T>(const T*, T*, const T*, const T*, const T*, const T*, i64, int, i64); \
    template __global__ void bn_bwd_reduce<T>(const T*, const T*, const T*, const T*, T*, T*, i64, int, i64); \
    template __global__ void bn_bwd_dx<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, \
                                          T*, i64, int, i64, T, int);                                        \
    template __global__ void ln_fwd<T>(const T*, const T*, const T*, T*, T*, T*, i64, i64, T);               \
    template __global__ void ln_bwd_dx<T>(const T*, const T*, const T*, const T*, const T*, T*, i64, i64);   \
    template __global__ void ln_bwd_params<T>(const T*, const T*, const T*, const T*, T*, T*, i64, i64);     \
    template __global__ void dropout_fwd<T>(const T*, T*, T*, i64, unsigned long long, double, T);
INST(float)
INST(double)
#endif
