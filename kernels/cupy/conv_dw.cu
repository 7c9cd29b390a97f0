// Direct depthwise convolution (groups == C, K = C * mult): forward,
// backward-input (gather) and backward-weight (one block per filter tap,
// fixed-order reduction, deterministic).  64-bit element indices.
typedef long long i64;
#include "index.cuh"

template <typename T>
__global__ void dw_fwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                       int sh, int sw, int ph, int pw, int dh, int dw, int act) {
    const int mult = K / C;
    const i64 total = (i64)N * K * P * Q;
    const bool small = fits32(total);
    for (i64 idx = blockIdx.x * (i64)blockDim.x + threadIdx.x; idx < total; idx += (i64)gridDim.x * blockDim.x) {
        int q, p, k;
        i64 t, nb;
        split2(idx, Q, P, small, q, p, t);
        split1(t, K, small, k, nb);
        const int c = k / mult;
        const T* xp = x + (nb * C + c) * (i64)H * W;
        const T* wp = w + (i64)k * R * S;
        const int h0 = p * sh - ph, w0 = q * sw - pw;
        T s = T(0);
        for (int r = 0; r < R; ++r) {
            const int h = h0 + r * dh;
            if ((unsigned)h >= (unsigned)H) continue;
            for (int ss = 0; ss < S; ++ss) {
                const int ww = w0 + ss * dw;
                if ((unsigned)ww >= (unsigned)W) continue;
                s += xp[(i64)h * W + ww] * wp[r * S + ss];
            }
        }
        if (bias != nullptr) s += bias[k];
        if (act == 1) s = s < T(0) ? T(0) : s;
        y[idx] = s;
    }
}

template <typename T>
__global__ void dw_bwd_input(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                             int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                             int sh, int sw, int ph, int pw, int dh, int dw) {
    const int mult = K / C;
    const i64 total = (i64)N * C * H * W;
    const bool small = fits32(total);
    for (i64 idx = blockIdx.x * (i64)blockDim.x + threadIdx.x; idx < total; idx += (i64)gridDim.x * blockDim.x) {
        int iw, ih, c;
        i64 t, nb;
        split2(idx, W, H, small, iw, ih, t);
        split1(t, C, small, c, nb);
        T s = T(0);
        for (int m = 0; m < mult; ++m) {
            const int k = c * mult + m;
            const T* dyp = dy + (nb * K + k) * (i64)P * Q;
            const T* wp = w + (i64)k * R * S;
            for (int r = 0; r < R; ++r) {
                const int tp = ih + ph - r * dh;
                if (tp < 0) break;  // tp decreases with r
                const int p = tp / sh;
                if (p * sh != tp || p >= P) continue;
                for (int ss = 0; ss < S; ++ss) {
                    const int tq = iw + pw - ss * dw;
                    if (tq < 0) break;
                    const int q = tq / sw;
                    if (q * sw != tq || q >= Q) continue;
                    s += dyp[(i64)p * Q + q] * wp[r * S + ss];
                }
            }
        }
        dx[idx] = s;
    }
}

// One block (256 threads) per (k, r, s); dw has shape (K, 1, R, S).
template <typename T>
__global__ void __launch_bounds__(256) dw_bwd_weight(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dwt,
                                                     int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                                     int sh, int sw, int ph, int pw, int dh, int dw) {
    __shared__ T red[256];
    const int mult = K / C;
    const int tap = blockIdx.x;  // k * R * S + r * S + s
    const int k = tap / (R * S);
    const int rs = tap - k * R * S;
    const int r = rs / S, ss = rs - r * S;
    const int c = k / mult;
    const i64 PQ = (i64)P * Q;
    T acc = T(0);
    for (int nb = 0; nb < N; ++nb) {
        const T* dyp = dy + ((i64)nb * K + k) * PQ;
        const T* xp = x + ((i64)nb * C + c) * (i64)H * W;
        for (i64 i = threadIdx.x; i < PQ; i += 256) {
            const int p = (int)(i / Q), q = (int)(i - (i64)p * Q);
            const int h = p * sh - ph + r * dh, w = q * sw - pw + ss * dw;
            if ((unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W) acc += dyp[i] * xp[(i64)h * W + w];
        }
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) dwt[tap] = red[0];
}

#ifdef FASTCONV_NVCC_CHECK
#define DW_ARGS int, int, int, int, int, int, int, int, int, int, int, int, int, int, int
template __global__ void dw_fwd<float>(const float*, const float*, const float*, float*, DW_ARGS, int);
template __global__ void dw_fwd<double>(const double*, const double*, const double*, double*, DW_ARGS, int);
template __global__ void dw_bwd_input<float>(const float*, const float*, float*, DW_ARGS);
template __global__ void dw_bwd_input<double>(const double*, const double*, double*, DW_ARGS);
template __global__ void dw_bwd_weight<float>(const float*, const float*, float*, DW_ARGS);
template __global__ void dw_bwd_weight<double>(const double*, const double*, double*, DW_ARGS);
#endif
