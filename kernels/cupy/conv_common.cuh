// Shared pieces of the implicit-GEMM convolution kernels (conv.cu, conv_tf32.cu).
//
// One GEMM per group g (grid.z), three views of the same convolution:
//   MODE 0 forward:          out y  [Kg x N*P*Q]  = W [Kg x Cg*R*S]      * im2col(x)  [Cg*R*S x N*P*Q]
//   MODE 1 backward-input:   out dx [Cg x N*H*W]  = W^T [Cg x Kg*R*S]    * gather(dy) [Kg*R*S x N*H*W]
//   MODE 2 backward-weight:  out dw [Kg x Cg*R*S] = dy [Kg x N*P*Q]      * im2col(x)^T [N*P*Q x Cg*R*S]
// (MODE 2 splits the N*P*Q reduction over grid.z into a workspace; the host sums
// the slices in a fixed order, so results are deterministic.)
//
// Tiles: BM x BK of A and BK x BN of B in shared memory (double buffered, the
// next tile prefetched into registers while the current one is used).
// 256 threads.  GEMM indices are int (the host checks they fit); memory
// offsets are 64-bit.
#ifndef FASTCONV_CONV_COMMON_CUH
#define FASTCONV_CONV_COMMON_CUH

typedef long long i64;

#define CONV_THREADS 256
#define CONV_BK 8
#define CONV_PAD 4

struct ConvGeo {
    int N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G, Cg, Kg, RS, HW, PQ;
};

__device__ __forceinline__ ConvGeo make_geo(int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                            int sh, int sw, int ph, int pw, int dh, int dw, int G) {
    ConvGeo g;
    g.N = N; g.C = C; g.H = H; g.W = W; g.K = K; g.R = R; g.S = S; g.P = P; g.Q = Q;
    g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dh; g.dw = dw; g.G = G;
    g.Cg = C / G; g.Kg = K / G; g.RS = R * S; g.HW = H * W; g.PQ = P * Q;
    return g;
}

// GEMM sizes for a mode.
template <int MODE>
__device__ __forceinline__ void gemm_dims(const ConvGeo& g, int& M, int& Nn, int& Kd) {
    if (MODE == 0) { M = g.Kg; Nn = g.N * g.PQ; Kd = g.Cg * g.RS; }
    else if (MODE == 1) { M = g.Cg; Nn = g.N * g.HW; Kd = g.Kg * g.RS; }
    else { M = g.Kg; Nn = g.Cg * g.RS; Kd = g.N * g.PQ; }
}

// Per-thread loader state.  Each thread loads A_LOADS elements of the A tile
// and B_LOADS of the B tile per BK step; the parts of their coordinates that
// do not change along the reduction are precomputed here.
template <typename T, int BM, int BN, int MODE>
struct TileLoader {
    static const int A_LOADS = BM * CONV_BK / CONV_THREADS;
    static const int B_LOADS = BN * CONV_BK / CONV_THREADS;
    static const int A_STEP = CONV_THREADS / CONV_BK;               // rows of A between a thread's loads
    static const int B_STEP = (MODE == 2) ? CONV_THREADS / CONV_BK  // columns of B between loads (MODE 2)
                                          : CONV_THREADS / BN;      // rows of B between loads (MODE 0/1)

    const T* __restrict__ a_src;
    const T* __restrict__ b_src;
    const int* __restrict__ tab;  // per reduction index kk, 4 ints: MODE 0 (c,r,s) -> (c*HW + r*dh*W + s*dw, r*dh, s*dw, 0);
                                  // MODE 1 (k,r,s) -> (k*PQ, r*dh, s*dw, 0); unused in MODE 2
    ConvGeo g;
    int grp, M, Nn, Kd;
    int a_k, a_m;      // thread's A coordinates inside the tile (k fastest)
    int b_k, b_n;      // thread's B coordinates inside the tile
    // MODE 0/1: the thread's single B column (a pixel) decoded once
    int col_ok;
    i64 col_base;      // MODE 0: x offset of (nb, group, h0, w0); MODE 1: dy offset of (nb, group)
    int col_h, col_w;  // MODE 0: p*sh-ph, q*sw-pw;  MODE 1: h+ph, w+pw
    // MODE 2: the thread's B columns (filter taps) decoded once
    int tap_ok[B_LOADS > 0 ? B_LOADS : 1];
    int tap_c[B_LOADS > 0 ? B_LOADS : 1], tap_r[B_LOADS > 0 ? B_LOADS : 1], tap_s[B_LOADS > 0 ? B_LOADS : 1];

    T ra[A_LOADS];
    T rb[B_LOADS];

    __device__ __forceinline__ void init(const T* a, const T* b, const int* taps, const ConvGeo& geo, int group,
                                         int m0, int n0) {
        a_src = a; b_src = b; tab = taps; g = geo; grp = group;
        gemm_dims<MODE>(g, M, Nn, Kd);
        const int tid = threadIdx.x;
        a_k = tid % CONV_BK;
        a_m = tid / CONV_BK;
        if (MODE == 2) {
            b_k = tid % CONV_BK;
            b_n = tid / CONV_BK;
#pragma unroll
            for (int i = 0; i < B_LOADS; ++i) {
                int n = n0 + b_n + i * B_STEP;
                tap_ok[i] = n < Nn;
                int c = 0, r = 0, s = 0;
                if (n < Nn) { c = n / g.RS; int rs = n - c * g.RS; r = rs / g.S; s = rs - r * g.S; }
                tap_c[i] = c; tap_r[i] = r * g.dh; tap_s[i] = s * g.dw;
            }
        } else {
            b_n = tid % BN;
            b_k = tid / BN;
            int n = n0 + b_n;
            col_ok = n < Nn;
            if (!col_ok) n = 0;
            if (MODE == 0) {
                int nb = n / g.PQ, pq = n - nb * g.PQ;
                int p = pq / g.Q, q = pq - p * g.Q;
                col_h = p * g.sh - g.ph;
                col_w = q * g.sw - g.pw;
                col_base = ((i64)nb * g.C + (i64)grp * g.Cg) * g.HW + (i64)col_h * g.W + col_w;
            } else {
                int nb = n / g.HW, hw = n - nb * g.HW;
                int h = hw / g.W, w = hw - h * g.W;
                col_base = ((i64)nb * g.K + (i64)grp * g.Kg) * g.PQ;
                col_h = h + g.ph;
                col_w = w + g.pw;
            }
        }
    }

    // Fetch the tiles starting at reduction index k0 (rows m0.., columns n0..) into registers.
    __device__ __forceinline__ void fetch(int k0, int m0, int kend) {
        const T zero = T(0);
        if (MODE == 2) {
            // A(m, kk) = dy[nb, grp*Kg + m, pq];  B(kk, n) = x[nb, grp*Cg + c, p*sh-ph+r*dh, q*sw-pw+s*dw]
            int kk = k0 + a_k;  // == k0 + b_k
            bool kok = kk < kend;
            int nb = 0, p = 0, q = 0, pq = 0;
            if (kok) { nb = kk / g.PQ; pq = kk - nb * g.PQ; p = pq / g.Q; q = pq - p * g.Q; }
#pragma unroll
            for (int i = 0; i < A_LOADS; ++i) {
                int m = m0 + a_m + i * A_STEP;
                T v = zero;
                if (kok && m < M) v = a_src[((i64)nb * g.K + (i64)grp * g.Kg + m) * g.PQ + pq];
                ra[i] = v;
            }
            const i64 xb = ((i64)nb * g.C + (i64)grp * g.Cg) * g.HW;
            const int h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
#pragma unroll
            for (int i = 0; i < B_LOADS; ++i) {
                T v = zero;
                if (kok && tap_ok[i]) {
                    int h = h0 + tap_r[i], w = w0 + tap_s[i];
                    if ((unsigned)h < (unsigned)g.H && (unsigned)w < (unsigned)g.W)
                        v = b_src[xb + (i64)tap_c[i] * g.HW + (i64)h * g.W + w];
                }
                rb[i] = v;
            }
        } else {
            // A: weights
            int kk = k0 + a_k;
            bool kok = kk < kend;
            int k_hi = 0, rs = 0;
            if (MODE == 1 && kok) { k_hi = kk / g.RS; rs = kk - k_hi * g.RS; }
#pragma unroll
            for (int i = 0; i < A_LOADS; ++i) {
                int m = m0 + a_m + i * A_STEP;
                T v = zero;
                if (kok && m < M) {
                    if (MODE == 0) v = a_src[((i64)grp * g.Kg + m) * (i64)Kd + kk];
                    else v = a_src[(((i64)grp * g.Kg + k_hi) * g.Cg + m) * (i64)g.RS + rs];
                }
                ra[i] = v;
            }
            // B: image columns
#pragma unroll
            for (int i = 0; i < B_LOADS; ++i) {
                int kb = k0 + b_k + i * B_STEP;
                T v = zero;
                if (col_ok && kb < kend) {
                    if (MODE == 0) {
                        // table lookup instead of two integer divisions; a warp reads one entry
                        const int4 t = *reinterpret_cast<const int4*>(tab + 4 * (i64)kb);
                        const int h = col_h + t.y, w = col_w + t.z;
                        if ((unsigned)h < (unsigned)g.H && (unsigned)w < (unsigned)g.W)
                            v = b_src[col_base + t.x];
                    } else {
                        // table row for kk = (k, r, s): (k*P*Q, r*dh, s*dw, 0)
                        const int4 t = *reinterpret_cast<const int4*>(tab + 4 * (i64)kb);
                        const int tp = col_h - t.y, tq = col_w - t.z;
                        if (tp >= 0 && tq >= 0) {
                            int p, q;
                            bool hit;
                            if (g.sh == 1 && g.sw == 1) {  // uniform branch: no divisions for stride 1
                                p = tp; q = tq; hit = true;
                            } else {
                                p = tp / g.sh; q = tq / g.sw;
                                hit = p * g.sh == tp && q * g.sw == tq;
                            }
                            if (hit && p < g.P && q < g.Q)
                                v = b_src[col_base + t.x + (i64)p * g.Q + q];
                        }
                    }
                }
                rb[i] = v;
            }
        }
    }

    // Registers -> shared tiles As[BK][BM+PAD], Bs[BK][BN+PAD].
    __device__ __forceinline__ void store(T (*As)[BM + CONV_PAD], T (*Bs)[BN + CONV_PAD]) {
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) As[a_k][a_m + i * A_STEP] = ra[i];
#pragma unroll
        for (int i = 0; i < B_LOADS; ++i) {
            if (MODE == 2) Bs[b_k][b_n + i * B_STEP] = rb[i];
            else Bs[b_k + i * B_STEP][b_n] = rb[i];
        }
    }
};

// Where GEMM element (m, n) of group grp goes in the output, for each mode.
// MODE 0: y[nb, grp*Kg+m, pq];  MODE 1: dx[nb, grp*Cg+m, hw];  MODE 2: ws[split][grp*Kg+m][n].
template <int MODE>
__device__ __forceinline__ i64 col_offset(const ConvGeo& g, int n) {
    if (MODE == 0) { int nb = n / g.PQ; return (i64)nb * g.K * g.PQ + (n - nb * g.PQ); }
    if (MODE == 1) { int nb = n / g.HW; return (i64)nb * g.C * g.HW + (n - nb * g.HW); }
    return (i64)n;
}

template <int MODE>
__device__ __forceinline__ i64 row_offset(const ConvGeo& g, int grp, int m) {
    if (MODE == 0) return ((i64)grp * g.Kg + m) * g.PQ;
    if (MODE == 1) return ((i64)grp * g.Cg + m) * g.HW;
    return ((i64)grp * g.Kg + m) * ((i64)g.Cg * g.RS);
}

#endif  // FASTCONV_CONV_COMMON_CUH
