// Implicit-GEMM convolution (FP32/FP64 SIMT) plus the small reductions used by
// the backward pass.  See conv_common.cuh for the three GEMM views.
#include "conv_common.cuh"

// 16 bytes of T: shared-memory fragments are read with one 128-bit load.
template <typename T>
struct __align__(16) Vec16 { T v[16 / sizeof(T)]; };

// out = act(A * B + bias); TM x TN results per thread in groups of V = 16/sizeof(T)
// consecutive rows/columns: row i -> (i/V)*(BM*V/TM) + ty*V + i%V (columns alike),
// so each fragment is TM/V (TN/V) 128-bit shared loads, broadcast (A) or
// consecutive (B) across a warp: no bank conflicts.
// MODE 2: grid.z = G * splits, split s reduces k in [s*ksplit, (s+1)*ksplit).
// MODE 1: one launch per stride phase; `ksplit` = the phase's tap count and
// `act` = the phase index a*sw + b (the ReLU flag is MODE 0 only).
template <typename T, int BM, int BN, int TM, int TN, int MODE>
__global__ void __launch_bounds__(CONV_THREADS, 2)  // <= 128 registers: two blocks per SM
conv_gemm(const T* __restrict__ a_src, const T* __restrict__ b_src, const T* __restrict__ bias,
          const int* __restrict__ tab, T* __restrict__ out, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
          int sh, int sw, int ph, int pw, int dh, int dw, int G, int ksplit, int act) {
    static_assert((BM / TM) * (BN / TN) == CONV_THREADS, "tile / thread mismatch");
    constexpr int V = 16 / sizeof(T);
    static_assert(TM % V == 0 && TN % V == 0, "fragments must be whole 16-byte vectors");
    constexpr int RSTEP = BM * V / TM, CSTEP = BN * V / TN;  // distance between a thread's vector groups
    __shared__ __align__(16) T As[2][CONV_BK][BM + CONV_PAD];
    __shared__ __align__(16) T Bs[2][CONV_BK][BN + CONV_PAD];

    ConvGeo g = make_geo(N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G);
    if (MODE == 1) set_phase(g, act, ksplit);
    int grp = blockIdx.z, split = 0;
    if (MODE == 2) { grp = blockIdx.z % G; split = blockIdx.z / G; }
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * BN;

    TileLoader<T, BM, BN, MODE> ld;
    ld.init(a_src, b_src, tab, g, grp, m0, n0);
    int kbeg = 0, kend = ld.Kd;
    if (MODE == 2) {
        kbeg = split * ksplit;
        kend = min(ld.Kd, kbeg + ksplit);
    }

    const int tx = threadIdx.x % (BN / TN);
    const int ty = threadIdx.x / (BN / TN);
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    if (kbeg < kend) {
        ld.fetch(kbeg, m0, kend);
        ld.store(As[0], Bs[0]);
        __syncthreads();
        int buf = 0;
        for (int k0 = kbeg; k0 < kend; k0 += CONV_BK) {
            const bool more = k0 + CONV_BK < kend;
            if (more) ld.fetch(k0 + CONV_BK, m0, kend);
#pragma unroll
            for (int kk = 0; kk < CONV_BK; ++kk) {
                T a[TM], b[TN];
#pragma unroll
                for (int q = 0; q < TM / V; ++q) {
                    const Vec16<T> t = *reinterpret_cast<const Vec16<T>*>(&As[buf][kk][q * RSTEP + ty * V]);
#pragma unroll
                    for (int v = 0; v < V; ++v) a[q * V + v] = t.v[v];
                }
#pragma unroll
                for (int q = 0; q < TN / V; ++q) {
                    const Vec16<T> t = *reinterpret_cast<const Vec16<T>*>(&Bs[buf][kk][q * CSTEP + tx * V]);
#pragma unroll
                    for (int v = 0; v < V; ++v) b[q * V + v] = t.v[v];
                }
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
            }
            if (more) ld.store(As[buf ^ 1], Bs[buf ^ 1]);
            __syncthreads();
            buf ^= 1;
        }
    }

    // Epilogue: bias, activation, bounds-checked store.
    i64 coff[TN];
    bool cok[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
        int n = n0 + (j / V) * CSTEP + tx * V + j % V;
        cok[j] = n < ld.Nn;
        coff[j] = cok[j] ? col_offset<MODE>(g, n) : 0;
    }
    T* o = out;
    if (MODE == 2) o += (i64)split * g.K * ((i64)g.Cg * g.RS);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int m = m0 + (i / V) * RSTEP + ty * V + i % V;
        if (m >= ld.M) continue;
        T bv = T(0);
        if (MODE == 0 && bias != nullptr) bv = bias[(i64)grp * g.Kg + m];
        const i64 roff = row_offset<MODE>(g, grp, m);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            if (!cok[j]) continue;
            T v = acc[i][j] + bv;
            if (MODE == 0 && act == 1) v = v < T(0) ? T(0) : v;  // NaN passes
            o[roff + coff[j]] = v;
        }
    }
}

// dw[i] = sum over s of ws[s*n + i], s in increasing order (deterministic split-K).
template <typename T>
__global__ void sum_splits(const T* __restrict__ ws, T* __restrict__ out, long long n, int splits) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T s = T(0);
        for (int k = 0; k < splits; ++k) s += ws[(long long)k * n + i];
        out[i] = s;
    }
}

// db partial sums: block (k, split) sums dy[n, k, :] over images n in
// [split*nper, min(N, (split+1)*nper)) with the (n, pq) pairs flattened over the
// threads (all 256 busy even when P*Q is small), then a fixed-order tree;
// out[split*K + k].  The host sums the splits in order (sum_splits):
// deterministic.  blockDim.x must be 256.
template <typename T>
__global__ void __launch_bounds__(256) bias_grad(const T* __restrict__ dy, T* __restrict__ out, int N, int K,
                                                 long long PQ, int nper) {
    __shared__ T red[256];
    const int k = blockIdx.x, split = blockIdx.y;
    const int n0 = split * nper, n1 = min(N, n0 + nper);
    const long long cnt = n1 > n0 ? (long long)(n1 - n0) * PQ : 0;
    const bool small = cnt <= 0x7fffffffLL;  // uniform: 32-bit division
    T s = T(0);
    for (long long i = threadIdx.x; i < cnt; i += 256) {
        long long n, pq;
        if (small) {
            const unsigned u = (unsigned)i, d = (unsigned)PQ, t = u / d;
            n = t; pq = u - t * d;
        } else {
            n = i / PQ; pq = i - n * PQ;
        }
        s += dy[((long long)(n0 + n) * K + k) * PQ + pq];
    }
    red[threadIdx.x] = s;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[(long long)split * K + k] = red[0];
}

#ifdef FASTCONV_NVCC_CHECK
// nvcc compile check: instantiate what the Python side asks NVRTC for.
#define INST(T, BM, BN, TM, TN, MODE) \
    template __global__ void conv_gemm<T, BM, BN, TM, TN, MODE>(const T*, const T*, const T*, const int*, T*, int, int, int, \
        int, int, int, int, int, int, int, int, int, int, int, int, int, int, int);
INST(float, 128, 128, 8, 8, 0) INST(float, 128, 128, 8, 8, 1) INST(float, 128, 128, 8, 8, 2)
INST(float, 64, 64, 4, 4, 0) INST(float, 64, 64, 4, 4, 1) INST(float, 64, 64, 4, 4, 2)
INST(double, 64, 64, 4, 4, 0) INST(double, 64, 64, 4, 4, 1) INST(double, 64, 64, 4, 4, 2)
INST(float, 32, 128, 4, 4, 0) INST(float, 32, 128, 4, 4, 1) INST(float, 32, 128, 4, 4, 2)
INST(double, 32, 128, 4, 4, 0) INST(double, 32, 128, 4, 4, 1) INST(double, 32, 128, 4, 4, 2)
template __global__ void sum_splits<float>(const float*, float*, long long, int);
template __global__ void sum_splits<double>(const double*, double*, long long, int);
template __global__ void bias_grad<float>(const float*, float*, int, int, long long, int);
template __global__ void bias_grad<double>(const double*, double*, int, int, long long, int);
#endif
