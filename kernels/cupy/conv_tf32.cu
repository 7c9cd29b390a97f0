// TF32 tensor-core implicit-GEMM forward convolution (opt-in: fastconv.config.allow_tf32).
// Same tiles and loaders as conv.cu (conv_common.cuh); the inner product uses
// WMMA m16n16k8 with precision::tf32 (inputs rounded to TF32, FP32 accumulate).
// 8 warps in a 2 x 4 grid; each warp owns a 64 x 32 piece of the 128 x 128
// block tile = 4 x 2 accumulator fragments.
#include <mma.h>
#include "conv_common.cuh"

using namespace nvcuda;

#define TF_BM 128
#define TF_BN 128

__global__ void __launch_bounds__(CONV_THREADS)
conv_fwd_tf32(const float* __restrict__ w, const float* __restrict__ x, const float* __restrict__ bias,
              const int* __restrict__ tab, float* __restrict__ out, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
              int sh, int sw, int ph, int pw, int dh, int dw, int G, int act) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    // WMMA pointers must be 256-bit aligned: row lengths (BM+PAD)*4 = 528 bytes and
    // fragment offsets (multiples of 16 floats) keep every fragment base 32-byte aligned.
    __shared__ __align__(128) float As[2][CONV_BK][TF_BM + CONV_PAD];
    __shared__ __align__(128) float Bs[2][CONV_BK][TF_BN + CONV_PAD];
    __shared__ __align__(128) float stage[CONV_THREADS / 32][16 * 16];

    const ConvGeo g = make_geo(N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G);
    const int grp = blockIdx.z;
    const int m0 = blockIdx.y * TF_BM;
    const int n0 = blockIdx.x * TF_BN;
    TileLoader<float, TF_BM, TF_BN, 0> ld;
    ld.init(w, x, tab, g, grp, m0, n0);
    const int kend = ld.Kd;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / 4, wn = warp % 4;  // warp tile origin: (wm*64, wn*32)

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    ld.fetch(0, m0, kend);
    ld.store(As[0], Bs[0]);
    __syncthreads();
    int buf = 0;
    for (int k0 = 0; k0 < kend; k0 += CONV_BK) {
        const bool more = k0 + CONV_BK < kend;
        if (more) ld.fetch(k0 + CONV_BK, m0, kend);
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa[4];
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            // A(m, k) stored at As[k][m]: column-major with leading dimension BM+PAD
            wmma::load_matrix_sync(fa[i], &As[buf][0][wm * 64 + i * 16], TF_BM + CONV_PAD);
#pragma unroll
            for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
        }
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            // B(k, n) stored at Bs[k][n]: row-major with leading dimension BN+PAD
            wmma::load_matrix_sync(fb[j], &Bs[buf][0][wn * 32 + j * 16], TF_BN + CONV_PAD);
#pragma unroll
            for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        if (more) ld.store(As[buf ^ 1], Bs[buf ^ 1]);
        __syncthreads();
        buf ^= 1;
    }

    // Epilogue through a per-warp 16x16 staging tile: bias, activation, bounds checks.
    float* st = stage[warp];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const int idx = lane + 32 * e;
                const int m = m0 + wm * 64 + i * 16 + idx / 16;
                const int n = n0 + wn * 32 + j * 16 + idx % 16;
                if (m < ld.M && n < ld.Nn) {
                    float v = st[idx];
                    if (bias != nullptr) v += bias[(i64)grp * g.Kg + m];
                    if (act == 1) v = v < 0.0f ? 0.0f : v;
                    out[row_offset<0>(g, grp, m) + col_offset<0>(g, n)] = v;
                }
            }
            __syncwarp();
        }
    }
#endif
}
