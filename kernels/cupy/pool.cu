// Pooling: one thread per output (forward) or per input pixel (backward,
// gather formulation: deterministic, no atomics).  64-bit element indices.
typedef long long i64;
#include "index.cuh"

#define GRID_STRIDE(idx, total) \
    for (i64 idx = blockIdx.x * (i64)blockDim.x + threadIdx.x; idx < (total); idx += (i64)gridDim.x * blockDim.x)

template <typename T>
__device__ __forceinline__ bool is_nan(T v) { return v != v; }

// -inf without math.h (NVRTC compiles without the host headers)
template <typename T>
__device__ __forceinline__ T neg_inf() { return -(T)__int_as_float(0x7f800000); }

// Max pooling with PyTorch's semantics: strict '>' (first maximum wins), a NaN
// always replaces the current best, the index starts at the first in-plane tap.
template <typename T>
__global__ void maxpool_fwd(const T* __restrict__ x, T* __restrict__ y, i64* __restrict__ arg,
                            int NC, int H, int W, int P, int Q, int kh, int kw, int sh, int sw,
                            int ph, int pw, int dh, int dw) {
    const i64 total = (i64)NC * P * Q;
    const bool small = fits32(total);
    GRID_STRIDE(idx, total) {
        int q, p;
        i64 nc;
        split2(idx, Q, P, small, q, p, nc);
        const T* xp = x + nc * (i64)H * W;
        int hs = p * sh - ph, ws = q * sw - pw;
        const int he = min(hs + (kh - 1) * dh + 1, H), we = min(ws + (kw - 1) * dw + 1, W);
        if (hs < 0) hs += ((-hs + dh - 1) / dh) * dh;
        if (ws < 0) ws += ((-ws + dw - 1) / dw) * dw;
        T best = neg_inf<T>();
        i64 bi = (i64)hs * W + ws;
        for (int h = hs; h < he; h += dh) {
            for (int w = ws; w < we; w += dw) {
                const T v = xp[(i64)h * W + w];
                if (v > best || is_nan(v)) { best = v; bi = (i64)h * W + w; }
            }
        }
        y[idx] = best;
        arg[idx] = bi;
    }
}

// Geometry-free backward, deterministic, as a gather.  The windows are not
// known, so their extent is taken from the argmax itself:
// 1. bounds: per output row p the min/max input row its argmaxes hit (rlo/rhi),
//    per output column q the min/max input column (clo/chi)  [integer atomics:
//    order-independent];
// 2. ranges: input row h can only receive from output rows
//    p in [min{p: rhi[p] >= h}, max{p: rlo[p] <= h}] (columns alike);
// 3. gather: each input pixel sums dy over those (p, q) whose argmax is it, in order.
// With the geometry known (keywords), the host computes the ranges from the windows instead.
// Exact for any argmax (no window assumption); for real windows the ranges are
// at most the window overlap.
// bounds: grid (P, ceil(NC/ncchunk)), blockDim >= 32; thread t handles columns t, t+blockDim, ...
__global__ void maxpool_bounds(const i64* __restrict__ arg, int* __restrict__ rlo, int* __restrict__ rhi,
                               int* __restrict__ clo, int* __restrict__ chi, int NC, int W, int HW, int P, int Q,
                               int ncchunk) {
    const int p = blockIdx.x;
    const int nc0 = blockIdx.y * ncchunk, nc1 = min(NC, nc0 + ncchunk);
    int rmin = 0x7fffffff, rmax = -1;
    for (int q = threadIdx.x; q < Q; q += blockDim.x) {
        int cmin = 0x7fffffff, cmax = -1;
        for (int nc = nc0; nc < nc1; ++nc) {
            const i64 t = arg[((i64)nc * P + p) * Q + q];
            if (t < 0 || t >= HW) continue;  // a window without input: no gradient
            const int r = (int)(t / W), c = (int)(t - (i64)r * W);
            rmin = min(rmin, r); rmax = max(rmax, r);
            cmin = min(cmin, c); cmax = max(cmax, c);
        }
        if (cmax >= 0) { atomicMin(clo + q, cmin); atomicMax(chi + q, cmax); }
    }
    if (rmax >= 0) { atomicMin(rlo + p, rmin); atomicMax(rhi + p, rmax); }
}

// lo/hi (length P) -> for each input row h (length H): first[h] = min{p: hi[p] >= h}, last[h] = max{p: lo[p] <= h}
__global__ void maxpool_ranges(const int* __restrict__ lo, const int* __restrict__ hi, int* __restrict__ first,
                               int* __restrict__ last, int P, int H) {
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= H) return;
    int f = P, l = -1;
    for (int p = 0; p < P; ++p) {
        if (hi[p] >= h && f == P) f = p;
        if (lo[p] <= h) l = p;
    }
    first[h] = f;
    last[h] = l;
}

template <typename T>
__global__ void maxpool_bwd_ranges(const T* __restrict__ dy, const i64* __restrict__ arg, T* __restrict__ dx,
                                   const int* __restrict__ pf, const int* __restrict__ pl,
                                   const int* __restrict__ qf, const int* __restrict__ ql,
                                   int NC, int H, int W, int P, int Q) {
    const i64 total = (i64)NC * H * W;
    const bool small = fits32(total);
    GRID_STRIDE(idx, total) {
        int w, h;
        i64 nc;
        split2(idx, W, H, small, w, h, nc);
        const i64 me = (i64)h * W + w;
        const i64 base = nc * (i64)P * Q;
        const int p1 = pl[h], q0 = qf[w], q1 = ql[w];
        T s = T(0);
        for (int p = pf[h]; p <= p1; ++p)
            for (int q = q0; q <= q1; ++q) {
                const i64 o = base + (i64)p * Q + q;
                if (arg[o] == me) s += dy[o];
            }
        dx[idx] = s;
    }
}

// Geometry-free backward with atomics (order of additions not fixed).
template <typename T>
__global__ void maxpool_bwd_atomic(const T* __restrict__ dy, const i64* __restrict__ arg, T* __restrict__ dx,
                                   int NC, int HW, int PQ) {
    GRID_STRIDE(idx, (i64)NC * PQ) {
        const i64 t = arg[idx];
        if (t >= 0 && t < HW) atomicAdd(dx + (idx / PQ) * (i64)HW + t, dy[idx]);
    }
}

// PyTorch's divisor: window clipped to the padded input (count_include_pad) or to the input.
__device__ __forceinline__ int avg_divisor(int p, int q, int H, int W, int kh, int kw, int sh, int sw,
                                           int ph, int pw, int include_pad, int& hs, int& he, int& ws, int& we) {
    hs = p * sh - ph; ws = q * sw - pw;
    he = min(hs + kh, H + ph); we = min(ws + kw, W + pw);
    const int padded = (he - hs) * (we - ws);
    hs = max(hs, 0); ws = max(ws, 0);
    he = min(he, H); we = min(we, W);
    return include_pad ? padded : (he - hs) * (we - ws);
}

template <typename T>
__global__ void avgpool_fwd(const T* __restrict__ x, T* __restrict__ y, int NC, int H, int W, int P, int Q,
                            int kh, int kw, int sh, int sw, int ph, int pw, int include_pad) {
    const i64 total = (i64)NC * P * Q;
    const bool small = fits32(total);
    GRID_STRIDE(idx, total) {
        int q, p;
        i64 nc;
        split2(idx, Q, P, small, q, p, nc);
        const T* xp = x + nc * (i64)H * W;
        int hs, he, ws, we;
        const int div = avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad, hs, he, ws, we);
        T s = T(0);
        for (int h = hs; h < he; ++h)
            for (int w = ws; w < we; ++w) s += xp[(i64)h * W + w];
        y[idx] = s / T(div);
    }
}

template <typename T>
__global__ void avgpool_bwd(const T* __restrict__ dy, T* __restrict__ dx, int NC, int H, int W, int P, int Q,
                            int kh, int kw, int sh, int sw, int ph, int pw, int include_pad) {
    const i64 total = (i64)NC * H * W;
    const bool small = fits32(total);
    GRID_STRIDE(idx, total) {
        int w, h;
        i64 nc;
        split2(idx, W, H, small, w, h, nc);
        const int p0 = (h + ph < kh) ? 0 : (h + ph - kh) / sh + 1;
        const int p1 = min((h + ph) / sh + 1, P);
        const int q0 = (w + pw < kw) ? 0 : (w + pw - kw) / sw + 1;
        const int q1 = min((w + pw) / sw + 1, Q);
        const T* dyp = dy + nc * (i64)P * Q;
        T s = T(0);
        for (int p = p0; p < p1; ++p)
            for (int q = q0; q < q1; ++q) {
                int hs, he, ws, we;
                const int div = avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad, hs, he, ws, we);
                if (h >= hs && h < he && w >= ws && w < we) s += dyp[(i64)p * Q + q] / T(div);
            }
        dx[idx] = s;
    }
}

// Adaptive bins [floor(i*L/O), ceil((i+1)*L/O)).
__device__ __forceinline__ int bin_lo(int i, int L, int O) { return (int)(((i64)i * L) / O); }
__device__ __forceinline__ int bin_hi(int i, int L, int O) { return (int)(((i64)(i + 1) * L + O - 1) / O); }

template <typename T>
__global__ void adaptive_avg_fwd(const T* __restrict__ x, T* __restrict__ y, int NC, int H, int W, int OH, int OW) {
    const i64 total = (i64)NC * OH * OW;
    const bool small = fits32(total);
    GRID_STRIDE(idx, total) {
        int j, i;
        i64 nc;
        split2(idx, OW, OH, small, j, i, nc);
        const T* xp = x + nc * (i64)H * W;
        const int hs = bin_lo(i, H, OH), he = bin_hi(i, H, OH);
        const int ws = bin_lo(j, W, OW), we = bin_hi(j, W, OW);
        T s = T(0);
        for (int h = hs; h < he; ++h)
            for (int w = ws; w < we; ++w) s += xp[(i64)h * W + w];
        y[idx] = s / T((he - hs) * (we - ws));
    }
}

template <typename T>
__global__ void adaptive_avg_bwd(const T* __restrict__ dy, T* __restrict__ dx, int NC, int H, int W, int OH, int OW) {
    const i64 total = (i64)NC * H * W;
    const bool small = fits32(total);
    GRID_STRIDE(idx, total) {
        int w, h;
        i64 nc;
        split2(idx, W, H, small, w, h, nc);
        const T* dyp = dy + nc * (i64)OH * OW;
        // bins that can contain h: [floor(h*OH/H), ceil((h+1)*OH/H))
        const int i0 = (int)(((i64)h * OH) / H), i1 = min(OH, (int)(((i64)(h + 1) * OH + H - 1) / H));
        const int j0 = (int)(((i64)w * OW) / W), j1 = min(OW, (int)(((i64)(w + 1) * OW + W - 1) / W));
        T s = T(0);
        for (int i = i0; i < i1; ++i) {
            const int hs = bin_lo(i, H, OH), he = bin_hi(i, H, OH);
            if (h < hs || h >= he) continue;
            for (int j = j0; j < j1; ++j) {
                const int ws = bin_lo(j, W, OW), we = bin_hi(j, W, OW);
                if (w < ws || w >= we) continue;
                s += dyp[(i64)i * OW + j] / T((he - hs) * (we - ws));
            }
        }
        dx[idx] = s;
    }
}

#ifdef FASTCONV_NVCC_CHECK
#define POOL_ARGS int, int, int, int, int, int, int, int, int, int, int, int, int
#define AVG_ARGS int, int, int, int, int, int, int, int, int, int, int, int
#define INST(T)                                                                                 \
    template __global__ void maxpool_fwd<T>(const T*, T*, i64*, POOL_ARGS);                      \
    template __global__ void maxpool_bwd_ranges<T>(const T*, const i64*, T*, const int*, const int*, const int*, \
                                                   const int*, int, int, int, int, int);                        \
    template __global__ void maxpool_bwd_atomic<T>(const T*, const i64*, T*, int, int, int);     \
    template __global__ void avgpool_fwd<T>(const T*, T*, AVG_ARGS);                             \
    template __global__ void avgpool_bwd<T>(const T*, T*, AVG_ARGS);                             \
    template __global__ void adaptive_avg_fwd<T>(const T*, T*, int, int, int, int, int);         \
    template __global__ void adaptive_avg_bwd<T>(const T*, T*, int, int, int, int, int);
INST(float)
INST(double)
#endif
