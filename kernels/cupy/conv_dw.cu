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

// ---- tiled kernels for square KS x KS filters (KS = 3 or 5) ---------------------
// Forward, stride ST (1 or 2), dilation 1: one block (256 threads = 32 columns x 8
// thread rows) computes a 32 x 32 output tile of one (n, k) plane; the input
// tile plus halo is staged in shared memory by coalesced row loads; each thread
// keeps the KS*KS weights in registers and computes DW_ROWS = 4 outputs down a
// column, reusing every staged input row it reads for all outputs it touches.
// flip = 1 reads the filter reversed: with stride 1, mult 1 and padding
// KS-1-ph this computes backward-input (dx = dy correlated with flipped w).
// grid = (N*K, tiles_h*tiles_w).  Summation order per output: r, then s (fixed).
#define DW_TW 32
#define DW_TH 32
#define DW_ROWS 4
template <typename T, int KS, int ST>
__global__ void __launch_bounds__(256) dw_fwd_tile(const T* __restrict__ x, const T* __restrict__ w,
                                                   const T* __restrict__ bias, T* __restrict__ y, int C, int H, int W,
                                                   int K, int P, int Q, int ph, int pw, int flip, int act) {
    constexpr int IH = (DW_TH - 1) * ST + KS, IW = (DW_TW - 1) * ST + KS;
    __shared__ T xs[IH][IW + 1];
    const int plane = blockIdx.x;  // nb*K + k
    const int k = plane % K, nb = plane / K;
    const int c = k / (K / C);
    const int tiles_w = (Q + DW_TW - 1) / DW_TW;
    const int p0 = (blockIdx.y / tiles_w) * DW_TH, q0 = (blockIdx.y % tiles_w) * DW_TW;
    const int ih0 = p0 * ST - ph, iw0 = q0 * ST - pw;
    const T* xp = x + ((i64)nb * C + c) * (i64)H * W;
    const int lane = threadIdx.x % 32, row = threadIdx.x / 32;
    for (int r = row; r < IH; r += 8) {
        const int h = ih0 + r;
        const bool hok = (unsigned)h < (unsigned)H;
        for (int s = lane; s < IW; s += 32) {
            const int ww = iw0 + s;
            xs[r][s] = (hok && (unsigned)ww < (unsigned)W) ? xp[(i64)h * W + ww] : T(0);
        }
    }
    T wr[KS * KS];
    const T* wp = w + (i64)k * KS * KS;
#pragma unroll
    for (int i = 0; i < KS * KS; ++i) wr[i] = wp[flip ? KS * KS - 1 - i : i];
    __syncthreads();

    T acc[DW_ROWS];
#pragma unroll
    for (int i = 0; i < DW_ROWS; ++i) acc[i] = T(0);
    const int tr = row * DW_ROWS * ST;  // first staged row of this thread
#pragma unroll
    for (int ir = 0; ir < (DW_ROWS - 1) * ST + KS; ++ir) {
        T xv[KS];
#pragma unroll
        for (int s = 0; s < KS; ++s) xv[s] = xs[tr + ir][lane * ST + s];
#pragma unroll
        for (int i = 0; i < DW_ROWS; ++i) {
            const int r = ir - i * ST;  // compile-time after unrolling
            if (r >= 0 && r < KS) {
#pragma unroll
                for (int s = 0; s < KS; ++s) acc[i] += xv[s] * wr[r * KS + s];
            }
        }
    }
    const int q = q0 + lane;
    if (q >= Q) return;
    const T bv = bias != nullptr ? bias[k] : T(0);
    T* yp = y + (i64)plane * P * Q;
#pragma unroll
    for (int i = 0; i < DW_ROWS; ++i) {
        const int p = p0 + row * DW_ROWS + i;
        if (p < P) {
            T v = acc[i] + bv;
            if (act == 1) v = v < T(0) ? T(0) : v;
            yp[(i64)p * Q + q] = v;
        }
    }
}

// Backward-weight for KS x KS filters, any stride/dilation/multiplier: block
// (k, split) accumulates all KS*KS taps of filter k over images
// [split*nper, min(N, (split+1)*nper)) (each thread a fixed pixel subset, then
// a fixed-order tree per tap) into ws[split][k][tap]; the host sums the splits
// in order (sum_splits in conv.cu).  Deterministic.  blockDim.x must be 256.
template <typename T, int KS>
__global__ void __launch_bounds__(256) dw_bwd_weight_tile(const T* __restrict__ dy, const T* __restrict__ x,
                                                          T* __restrict__ ws, int N, int C, int H, int W, int K, int P,
                                                          int Q, int sh, int sw, int ph, int pw, int dh, int dw, int nper) {
    __shared__ T red[256];
    const int k = blockIdx.x, split = blockIdx.y;
    const int c = k / (K / C);
    const int PQ = P * Q;
    T acc[KS * KS];
#pragma unroll
    for (int i = 0; i < KS * KS; ++i) acc[i] = T(0);
    const int nend = min(N, (split + 1) * nper);
    for (int nb = split * nper; nb < nend; ++nb) {
        const T* dyp = dy + ((i64)nb * K + k) * PQ;
        const T* xp = x + ((i64)nb * C + c) * (i64)H * W;
        for (int pq = threadIdx.x; pq < PQ; pq += 256) {
            const int p = pq / Q, q = pq - p * Q;
            const T g = dyp[pq];
            const int h0 = p * sh - ph, w0 = q * sw - pw;
#pragma unroll
            for (int r = 0; r < KS; ++r) {
                const int h = h0 + r * dh;
                const bool hok = (unsigned)h < (unsigned)H;
#pragma unroll
                for (int s = 0; s < KS; ++s) {
                    const int ww = w0 + s * dw;
                    if (hok && (unsigned)ww < (unsigned)W) acc[r * KS + s] += g * xp[(i64)h * W + ww];
                }
            }
        }
    }
    T* out = ws + ((i64)split * K + k) * (KS * KS);
#pragma unroll  // acc[t] must stay in registers (a runtime index would put acc in local memory)
    for (int t = 0; t < KS * KS; ++t) {
        red[threadIdx.x] = acc[t];
        __syncthreads();
        for (int m = 128; m > 0; m >>= 1) {
            if (threadIdx.x < m) red[threadIdx.x] += red[threadIdx.x + m];
            __syncthreads();
        }
        if (threadIdx.x == 0) out[t] = red[0];
        __syncthreads();
    }
}

#ifdef FASTCONV_NVCC_CHECK
#define DW_ARGS int, int, int, int, int, int, int, int, int, int, int, int, int, int, int
template __global__ void dw_fwd<float>(const float*, const float*, const float*, float*, DW_ARGS, int);
template __global__ void dw_fwd<double>(const double*, const double*, const double*, double*, DW_ARGS, int);
template __global__ void dw_bwd_input<float>(const float*, const float*, float*, DW_ARGS);
template __global__ void dw_bwd_input<double>(const double*, const double*, double*, DW_ARGS);
template __global__ void dw_bwd_weight<float>(const float*, const float*, float*, DW_ARGS);
template __global__ void dw_bwd_weight<double>(const double*, const double*, double*, DW_ARGS);
#define DW_TILE_INST(T, KS, ST) template __global__ void dw_fwd_tile<T, KS, ST>(const T*, const T*, const T*, T*, \
    int, int, int, int, int, int, int, int, int, int);
DW_TILE_INST(float, 3, 1) DW_TILE_INST(float, 3, 2) DW_TILE_INST(float, 5, 1) DW_TILE_INST(float, 5, 2)
DW_TILE_INST(double, 3, 1) DW_TILE_INST(double, 3, 2) DW_TILE_INST(double, 5, 1) DW_TILE_INST(double, 5, 2)
#define DW_BWT_INST(T, KS) template __global__ void dw_bwd_weight_tile<T, KS>(const T*, const T*, T*, \
    int, int, int, int, int, int, int, int, int, int, int, int, int, int);
DW_BWT_INST(float, 3) DW_BWT_INST(float, 5) DW_BWT_INST(double, 3) DW_BWT_INST(double, 5)
#endif
