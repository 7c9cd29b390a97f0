// Element-wise activations (16-byte vector loads when every pointer is
// aligned: the host picks VEC) and row-wise softmax / log-softmax.
typedef long long i64;
#include "index.cuh"
#include "reduce.cuh"

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_erf(float x) { return erff(x); }
__device__ __forceinline__ double d_erf(double x) { return erf(x); }
__device__ __forceinline__ float d_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double d_abs(double x) { return fabs(x); }

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327
#define GELU_C 0.044715

// ---- unary forward ops: y = f(x, a) -------------------------------------------
struct ReluF { template <typename T> __device__ static T f(T x, T) { return x < T(0) ? T(0) : x; } };
struct LeakyF { template <typename T> __device__ static T f(T x, T a) { return x > T(0) ? x : x * a; } };
struct SigmoidF {
    template <typename T> __device__ static T f(T x, T) {
        T e = d_exp(-d_abs(x));
        return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
};
struct TanhF { template <typename T> __device__ static T f(T x, T) { return d_tanh(x); } };
struct GeluErfF {
    template <typename T> __device__ static T f(T x, T) { return T(0.5) * x * (T(1) + d_erf(x * T(INV_SQRT_2))); }
};
struct GeluTanhF {
    template <typename T> __device__ static T f(T x, T) {
        T inner = T(SQRT_2_OVER_PI) * (x + T(GELU_C) * x * x * x);
        return T(0.5) * x * (T(1) + d_tanh(inner));
    }
};

// ---- binary backward ops: dx = g(dy, s, a), s = saved x or y -------------------
struct ReluB { template <typename T> __device__ static T f(T dy, T y, T) { return y <= T(0) ? T(0) : dy; } };
struct LeakyB { template <typename T> __device__ static T f(T dy, T x, T a) { return x > T(0) ? dy : dy * a; } };
struct SigmoidB { template <typename T> __device__ static T f(T dy, T y, T) { return dy * y * (T(1) - y); } };
struct TanhB { template <typename T> __device__ static T f(T dy, T y, T) { return dy * (T(1) - y * y); } };
struct GeluErfB {
    template <typename T> __device__ static T f(T dy, T x, T) {
        T cdf = T(0.5) * (T(1) + d_erf(x * T(INV_SQRT_2)));
        T pdf = T(INV_SQRT_2PI) * d_exp(T(-0.5) * x * x);
        return dy * (cdf + x * pdf);
    }
};
struct GeluTanhB {
    template <typename T> __device__ static T f(T dy, T x, T) {
        T x2 = x * x;
        T th = d_tanh(T(SQRT_2_OVER_PI) * (x + T(GELU_C) * x2 * x));
        T dinner = T(SQRT_2_OVER_PI) * (T(1) + T(3 * GELU_C) * x2);
        return dy * (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * dinner);
    }
};

template <typename T>
struct __align__(16) Pack { T v[16 / sizeof(T)]; };

template <typename T, typename Op, bool VEC>
__global__ void ew_unary(const T* __restrict__ x, T* __restrict__ y, i64 n, T a) {
    const i64 tid = blockIdx.x * (i64)blockDim.x + threadIdx.x, stride = (i64)gridDim.x * blockDim.x;
    i64 done = 0;
    if (VEC) {
        const int L = 16 / sizeof(T);
        const i64 nv = n / L;
        const Pack<T>* xv = reinterpret_cast<const Pack<T>*>(x);
        Pack<T>* yv = reinterpret_cast<Pack<T>*>(y);
        for (i64 i = tid; i < nv; i += stride) {
            Pack<T> p = xv[i];
#pragma unroll
            for (int k = 0; k < L; ++k) p.v[k] = Op::f(p.v[k], a);
            yv[i] = p;
        }
        done = nv * L;
    }
    for (i64 i = done + tid; i < n; i += stride) y[i] = Op::f(x[i], a);
}

template <typename T, typename Op, bool VEC>
__global__ void ew_binary(const T* __restrict__ dy, const T* __restrict__ s, T* __restrict__ dx, i64 n, T a) {
    const i64 tid = blockIdx.x * (i64)blockDim.x + threadIdx.x, stride = (i64)gridDim.x * blockDim.x;
    i64 done = 0;
    if (VEC) {
        const int L = 16 / sizeof(T);
        const i64 nv = n / L;
        const Pack<T>* gv = reinterpret_cast<const Pack<T>*>(dy);
        const Pack<T>* sv = reinterpret_cast<const Pack<T>*>(s);
        Pack<T>* ov = reinterpret_cast<Pack<T>*>(dx);
        for (i64 i = tid; i < nv; i += stride) {
            Pack<T> g = gv[i], q = sv[i];
#pragma unroll
            for (int k = 0; k < L; ++k) g.v[k] = Op::f(g.v[k], q.v[k], a);
            ov[i] = g;
        }
        done = nv * L;
    }
    for (i64 i = done + tid; i < n; i += stride) dx[i] = Op::f(dy[i], s[i], a);
}

// ---- prelu: weight (C,) on axis 1 (x viewed as outer x C x inner) or (1,) ----
template <typename T>
__global__ void prelu_fwd(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, i64 n, int C,
                          i64 inner, int shared) {
    const bool small = fits32(n);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const T a = shared ? w[0] : w[mid_index(i, inner, C, small)];
        const T v = x[i];
        y[i] = v > T(0) ? v : v * a;
    }
}

template <typename T>
__global__ void prelu_bwd_dx(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                             T* __restrict__ dx, i64 n, int C, i64 inner, int shared) {
    const bool small = fits32(n);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const T a = shared ? w[0] : w[mid_index(i, inner, C, small)];
        dx[i] = x[i] > T(0) ? dy[i] : dy[i] * a;
    }
}

// dweight[c] = sum over outer, inner of (x <= 0 ? x * dy : 0); one block per c.
template <typename T>
__global__ void prelu_bwd_dw(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dw, i64 outer,
                             int C, i64 inner) {
    __shared__ T sh[33];
    const int c = blockIdx.x;
    T s = T(0);
    for (i64 o = 0; o < outer; ++o) {
        const i64 base = (o * C + c) * inner;
        for (i64 i = threadIdx.x; i < inner; i += blockDim.x) {
            const T v = x[base + i];
            if (!(v > T(0))) s += v * dy[base + i];
        }
    }
    s = block_reduce<T, false>(s, sh);
    if (threadIdx.x == 0) dw[c] = s;
}

// ---- softmax / log-softmax over the last axis (rows of length D) -------------
// One warp per row (blockDim 256 = 8 rows) when D is small, one block per row otherwise.
template <typename T, bool LOG>
__device__ __forceinline__ void softmax_row(const T* __restrict__ x, T* __restrict__ y, i64 D, int lane, int width,
                                            T* sh) {
    T m = -(T)__int_as_float(0x7f800000);
    for (i64 i = lane; i < D; i += width) m = nan_max(m, x[i]);
    m = sh ? block_reduce<T, true>(m, sh) : warp_max(m);
    T s = T(0);
    for (i64 i = lane; i < D; i += width) s += d_exp(x[i] - m);
    s = sh ? block_reduce<T, false>(s, sh) : warp_sum(s);
    if (LOG) {
        const T ls = d_log(s);
        for (i64 i = lane; i < D; i += width) y[i] = x[i] - m - ls;
    } else {
        const T inv = T(1) / s;
        for (i64 i = lane; i < D; i += width) y[i] = d_exp(x[i] - m) * inv;
    }
}

template <typename T, bool LOG>
__global__ void softmax_fwd_warp(const T* __restrict__ x, T* __restrict__ y, i64 rows, i64 D) {
    const i64 row = blockIdx.x * (i64)(blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;  // whole warps exit together
    softmax_row<T, LOG>(x + row * D, y + row * D, D, threadIdx.x % 32, 32, (T*)nullptr);
}

template <typename T, bool LOG>
__global__ void softmax_fwd_block(const T* __restrict__ x, T* __restrict__ y, i64 rows, i64 D) {
    __shared__ T sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
        softmax_row<T, LOG>(x + row * D, y + row * D, D, threadIdx.x, blockDim.x, sh);
}

// softmax:     dx = y * (dy - sum(dy * y))
// log-softmax: dx = dy - exp(y) * sum(dy)
template <typename T, bool LOG>
__device__ __forceinline__ void softmax_bwd_row(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                                i64 D, int lane, int width, T* sh) {
    T s = T(0);
    for (i64 i = lane; i < D; i += width) s += LOG ? dy[i] : dy[i] * y[i];
    s = sh ? block_reduce<T, false>(s, sh) : warp_sum(s);
    for (i64 i = lane; i < D; i += width) dx[i] = LOG ? dy[i] - d_exp(y[i]) * s : y[i] * (dy[i] - s);
}

template <typename T, bool LOG>
__global__ void softmax_bwd_warp(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, i64 rows, i64 D) {
    const i64 row = blockIdx.x * (i64)(blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    softmax_bwd_row<T, LOG>(dy + row * D, y + row * D, dx + row * D, D, threadIdx.x % 32, 32, (T*)nullptr);
}

template <typename T, bool LOG>
__global__ void softmax_bwd_block(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, i64 rows, i64 D) {
    __shared__ T sh[33];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
        softmax_bwd_row<T, LOG>(dy + row * D, y + row * D, dx + row * D, D, threadIdx.x, blockDim.x, sh);
}

#ifdef FASTCONV_NVCC_CHECK
#define UN(T, OP, V) template __global__ void ew_unary<T, OP, V>(const T*, T*, i64, T);
#define BI(T, OP, V) template __global__ void ew_binary<T, OP, V>(const T*, const T*, T*, i64, T);
#define ALL(T, V) UN(T, ReluF, V) UN(T, LeakyF, V) UN(T, SigmoidF, V) UN(T, TanhF, V) UN(T, GeluErfF, V) \
    UN(T, GeluTanhF, V) BI(T, ReluB, V) BI(T, LeakyB, V) BI(T, SigmoidB, V) BI(T, TanhB, V)             \
    BI(T, GeluErfB, V) BI(T, GeluTanhB, V)
ALL(float, true) ALL(float, false) ALL(double, true) ALL(double, false)
#define SM(T, L)                                                                              \
    template __global__ void softmax_fwd_warp<T, L>(const T*, T*, i64, i64);                  \
    template __global__ void softmax_fwd_block<T, L>(const T*, T*, i64, i64);                 \
    template __global__ void softmax_bwd_warp<T, L>(const T*, const T*, T*, i64, i64);        \
    template __global__ void softmax_bwd_block<T, L>(const T*, const T*, T*, i64, i64);
SM(float, true) SM(float, false) SM(double, true) SM(double, false)
template __global__ void prelu_fwd<float>(const float*, const float*, float*, i64, int, i64, int);
template __global__ void prelu_fwd<double>(const double*, const double*, double*, i64, int, i64, int);
template __global__ void prelu_bwd_dx<float>(const float*, const float*, const float*, float*, i64, int, i64, int);
template __global__ void prelu_bwd_dx<double>(const double*, const double*, const double*, double*, i64, int, i64, int);
template __global__ void prelu_bwd_dw<float>(const float*, const float*, float*, i64, int, i64);
template __global__ void prelu_bwd_dw<double>(const double*, const double*, double*, i64, int, i64);
#endif
