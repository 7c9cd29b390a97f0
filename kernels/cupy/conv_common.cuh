// Shared pieces of the implicit-GEMM convolution kernels (conv.cu, conv_tf32.cu).
//
// One GEMM per group g (grid.z), three views of the same convolution:
//   MODE 0 forward:          out y  [Kg x N*P*Q]  = W [Kg x Cg*R*S]      * im2col(x)  [Cg*R*S x N*P*Q]
//   MODE 1 backward-input:   out dx [Cg x N*Hp*Wp] = W^T [Cg x Kg*T]     * gather(dy) [Kg*T x N*Hp*Wp]
//       one launch per stride phase (a, b): the pixels h = a + sh*i, w = b + sw*j
//       (i < Hp, j < Wp) and only the T filter taps (r, s) that land on them
//       ((a + ph - r*dh) % sh == 0, likewise s): no zero taps are gathered
//       (stride 2, 3x3: 2.25 taps per pixel on average instead of 9).
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
    int pa, pb, Hp, Wp, nt;  // MODE 1 stride phase (a, b), its pixel grid Hp x Wp and its tap count
};

__device__ __forceinline__ ConvGeo make_geo(int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                                            int sh, int sw, int ph, int pw, int dh, int dw, int G) {
    ConvGeo g;
    g.N = N; g.C = C; g.H = H; g.W = W; g.K = K; g.R = R; g.S = S; g.P = P; g.Q = Q;
    g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dh; g.dw = dw; g.G = G;
    g.Cg = C / G; g.Kg = K / G; g.RS = R * S; g.HW = H * W; g.PQ = P * Q;
    g.pa = 0; g.pb = 0; g.Hp = H; g.Wp = W; g.nt = R * S;
    return g;
}

// MODE 1: select stride phase `phase` = a*sw + b (a < min(sh, H), b < min(sw, W)) with `ntaps` taps.
__device__ __forceinline__ void set_phase(ConvGeo& g, int phase, int ntaps) {
    g.pa = phase / g.sw; g.pb = phase - g.pa * g.sw;
    g.Hp = (g.H - g.pa + g.sh - 1) / g.sh;
    g.Wp = (g.W - g.pb + g.sw - 1) / g.sw;
    g.nt = ntaps;
}

// GEMM sizes for a mode.
template <int MODE>
__device__ __forceinline__ void gemm_dims(const ConvGeo& g, int& M, int& Nn, int& Kd) {
    if (MODE == 0) { M = g.Kg; Nn = g.N * g.PQ; Kd = g.Cg * g.RS; }
    else if (MODE == 1) { M = g.Cg; Nn = g.N * g.Hp * g.Wp; Kd = g.Kg * g.nt; }
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
                                  // MODE 1 (k, phase tap t = (r,s)) -> (k*PQ + dp*Q + dq, dp, dq, k*Cg*RS + r*S + s)
                                  // with dp = (a + ph - r*dh) / sh, dq = (b + pw - s*dw) / sw (exact);
                                  // unused in MODE 2
    ConvGeo g;
    int grp, M, Nn, Kd;
    int a_k, a_m;      // thread's A coordinates inside the tile (k fastest)
    int b_k, b_n;      // thread's B coordinates inside the tile
    // MODE 0/1: the thread's single B column (a pixel) decoded once
    int col_ok;
    i64 col_base;      // MODE 0: x offset of (nb, group, h0, w0); MODE 1: dy offset of (nb, group, i, j)
    int col_h, col_w;  // MODE 0: p*sh-ph, q*sw-pw;  MODE 1: phase-grid pixel (i, j): dy at (i + dp, j + dq)
    // MODE 2: the thread's B columns (filter taps) decoded once: x offset c*HW + r*dh*W + s*dw
    // and (r*dh, s*dw); a column past the end gets tap_r = -2^30, which fails the row check
    int tap_off[B_LOADS > 0 ? B_LOADS : 1], tap_r[B_LOADS > 0 ? B_LOADS : 1], tap_s[B_LOADS > 0 ? B_LOADS : 1];

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
                int c = 0, r = 0, s = 0;
                if (n < Nn) { c = n / g.RS; int rs = n - c * g.RS; r = rs / g.S; s = rs - r * g.S; }
                tap_r[i] = n < Nn ? r * g.dh : -(1 << 30);
                tap_s[i] = s * g.dw;
                tap_off[i] = c * g.HW + r * g.dh * g.W + s * g.dw;
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
                const int HpWp = g.Hp * g.Wp;
                int nb = n / HpWp, ij = n - nb * HpWp;
                int i = ij / g.Wp, j = ij - i * g.Wp;
                col_base = ((i64)nb * g.K + (i64)grp * g.Kg) * g.PQ + (i64)i * g.Q + j;
                col_h = i;
                col_w = j;
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
            const int h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
            const i64 xb = ((i64)nb * g.C + (i64)grp * g.Cg) * g.HW + (i64)h0 * g.W + w0;
#pragma unroll
            for (int i = 0; i < B_LOADS; ++i) {
                T v = zero;
                const int h = h0 + tap_r[i], w = w0 + tap_s[i];
                if (kok && (unsigned)h < (unsigned)g.H && (unsigned)w < (unsigned)g.W) v = b_src[xb + tap_off[i]];
                rb[i] = v;
            }
        } else {
            // A: weights
            int kk = k0 + a_k;
            bool kok = kk < kend;
            int woff = 0;  // MODE 1: k*Cg*RS + r*S + s from the table (no divisions)
            if (MODE == 1 && kok) woff = tab[4 * (i64)kk + 3];
#pragma unroll
            for (int i = 0; i < A_LOADS; ++i) {
                int m = m0 + a_m + i * A_STEP;
                T v = zero;
                if (kok && m < M) {
                    if (MODE == 0) v = a_src[((i64)grp * g.Kg + m) * (i64)Kd + kk];
                    else v = a_src[(i64)grp * g.Kg * g.Cg * g.RS + woff + (i64)m * g.RS];
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
                        // phase table row: dy(i + dp, j + dq) of output channel k
                        const int4 t = *reinterpret_cast<const int4*>(tab + 4 * (i64)kb);
                        const int p = col_h + t.y, q = col_w + t.z;
                        if ((unsigned)p < (unsigned)g.P && (unsigned)q < (unsigned)g.Q) v = b_src[col_base + t.x];
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
// MODE 0: y[nb, grp*Kg+m, pq];  MODE 1: dx[nb, grp*Cg+m, a+sh*i, b+sw*j];  MODE 2: ws[split][grp*Kg+m][n].
template <int MODE>
__device__ __forceinline__ i64 col_offset(const ConvGeo& g, int n) {
    if (MODE == 0) { int nb = n / g.PQ; return (i64)nb * g.K * g.PQ + (n - nb * g.PQ); }
    if (MODE == 1) {
        const int HpWp = g.Hp * g.Wp;
        int nb = n / HpWp, ij = n - nb * HpWp;
        int i = ij / g.Wp, j = ij - i * g.Wp;
        return (i64)nb * g.C * g.HW + (i64)(g.pa + g.sh * i) * g.W + (g.pb + g.sw * j);
    }
    return (i64)n;
}

template <int MODE>
__device__ __forceinline__ i64 row_offset(const ConvGeo& g, int grp, int m) {
    if (MODE == 0) return ((i64)grp * g.Kg + m) * g.PQ;
    if (MODE == 1) return ((i64)grp * g.Cg + m) * g.HW;
    return ((i64)grp * g.Kg + m) * ((i64)g.Cg * g.RS);
}

#endif  // FASTCONV_CONV_COMMON_CUH
