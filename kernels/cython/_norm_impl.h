/* Layer-norm and dropout loops (restrict pointers, OpenMP over rows, simd inside).
 * Layer norm: x is (M, D) row-major, one row per normalized slice. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <omp.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FC_NO_CLONES)
#define FC_NCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FC_NCLONES
#endif

/* Forward: statistics in double, shifted by the row's first element, one read of
 * the row; then y = x * a + b with a = rstd*gamma, b = beta - mean*a fused. */
#define FC_LN_FWD(T, SFX)                                                                      \
FC_NCLONES static void fc_ln_fwd_##SFX(const T *restrict x, T *restrict y, const T *restrict gamma,   \
        const T *restrict beta, T *restrict mean, T *restrict rstd, ptrdiff_t M, ptrdiff_t D,  \
        double eps, int nt) {                                                                  \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")                               \
    for (ptrdiff_t r = 0; r < M; r++) {                                                        \
        const T *restrict p = x + r * D;                                                       \
        T *restrict q = y + r * D;                                                             \
        double shift = p[0], s1 = 0, s2 = 0;                                                   \
        _Pragma("omp simd reduction(+:s1,s2)")                                                 \
        for (ptrdiff_t i = 0; i < D; i++) { double d = (double)p[i] - shift; s1 += d; s2 += d * d; } \
        double m1 = s1 / D, var = s2 / D - m1 * m1;                                            \
        if (var < 0) var = 0;                                                                  \
        double mu = shift + m1, inv = 1.0 / sqrt(var + eps);                                   \
        if (isnan(s1)) { mu = s1; inv = s1; }                                                  \
        mean[r] = (T)mu; rstd[r] = (T)inv;                                                     \
        T tm = (T)mu, ti = (T)inv;                                                             \
        if (gamma && beta) {                                                                   \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti * gamma[i] + beta[i];    \
        } else if (gamma) {                                                                    \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti * gamma[i];              \
        } else if (beta) {                                                                     \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti + beta[i];               \
        } else {                                                                               \
            _Pragma("omp simd")                                                                \
            for (ptrdiff_t i = 0; i < D; i++) q[i] = (p[i] - tm) * ti;                         \
        }                                                                                      \
    }                                                                                          \
}

/* Backward: per row, a = sum(dy*g), b = sum(dy*g*xhat) in double, then
 * dx = rstd*(dy*g - a/D - xhat*b/D).  dgamma/dbeta: each thread accumulates its
 * rows into its own slice acc[t*2*D .. ] (sum dy*xhat, sum dy); caller sums the slices. */
#define FC_LN_BWD(T, SFX)                                                                      \
FC_NCLONES static void fc_ln_bwd_##SFX(const T *restrict dy, const T *restrict x, const T *restrict gamma, \
        const T *restrict mean, const T *restrict rstd, T *restrict dx, double *restrict acc,  \
        ptrdiff_t M, ptrdiff_t D, int nt) {                                                    \
    _Pragma("omp parallel num_threads(nt)")                                                    \
    {                                                                                          \
        double *restrict dg = acc ? acc + (ptrdiff_t)omp_get_thread_num() * 2 * D : NULL;      \
        double *restrict db = dg ? dg + D : NULL;                                              \
        _Pragma("omp for schedule(static)")                                                    \
        for (ptrdiff_t r = 0; r < M; r++) {                                                    \
            const T *restrict g = dy + r * D;                                                  \
            const T *restrict p = x + r * D;                                                   \
            T *restrict q = dx + r * D;                                                        \
            T mu = mean[r], inv = rstd[r];                                                     \
            double a = 0, b = 0;                                                               \
            if (gamma) {                                                                       \
                _Pragma("omp simd reduction(+:a,b)")                                           \
                for (ptrdiff_t i = 0; i < D; i++) {                                            \
                    T gg = g[i] * gamma[i]; T xh = (p[i] - mu) * inv;                          \
                    a += gg; b += (double)gg * xh;                                             \
                    dg[i] += (double)g[i] * xh; db[i] += g[i];                                 \
                }                                                                              \
                T ka = (T)(a / D), kb = (T)(b / D);                                            \
                _Pragma("omp simd")                                                            \
                for (ptrdiff_t i = 0; i < D; i++)                                              \
                    q[i] = inv * (g[i] * gamma[i] - ka - (p[i] - mu) * inv * kb);              \
            } else {                                                                           \
                _Pragma("omp simd reduction(+:a,b)")                                           \
                for (ptrdiff_t i = 0; i < D; i++) {                                            \
                    T xh = (p[i] - mu) * inv;                                                  \
                    a += g[i]; b += (double)g[i] * xh;                                         \
                }                                                                              \
                T ka = (T)(a / D), kb = (T)(b / D);                                            \
                _Pragma("omp simd")                                                            \
                for (ptrdiff_t i = 0; i < D; i++)                                              \
                    q[i] = inv * (g[i] - ka - (p[i] - mu) * inv * kb);                         \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

/* Dropout: counter-based.  Element i keeps iff the top 53 bits of
 * mix64(key + (i+1) * golden) >= thresh, key = mix64(seed); a pure function of
 * (seed, i), so the mask is the same for any thread count and any schedule. */
static inline uint64_t fc_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define FC_DROPOUT(T, SFX)                                                                     \
FC_NCLONES static void fc_dropout_fwd_##SFX(const T *restrict x, T *restrict y, T *restrict mask,    \
        ptrdiff_t n, uint64_t seed, uint64_t thresh, T scale, int nt) {                        \
    const uint64_t key = fc_mix64(seed + 0x9e3779b97f4a7c15ULL);                               \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                          \
    for (ptrdiff_t i = 0; i < n; i++) {                                                        \
        uint64_t h = fc_mix64(key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL) >> 11;          \
        T m = h >= thresh ? scale : (T)0;                                                      \
        mask[i] = m; y[i] = x[i] * m;                                                          \
    }                                                                                          \
}

FC_LN_FWD(float, f32)
FC_LN_FWD(double, f64)
FC_LN_BWD(float, f32)
FC_LN_BWD(double, f64)
FC_DROPOUT(float, f32)
FC_DROPOUT(double, f64)

/* Batch norm over x (N, C, S): one OpenMP task per channel, its N planes of S elements.
 * Forward (training): shifted statistics (per plane in T, across planes in double), then
 * right away (the channel still in cache) y = x*a + b [+ r] [relu], a = invstd*gamma, b = beta - mean*a;
 * bmean/bvar get the double batch mean and biased variance, smean/sinv the saved T values.
 * Eval: a = scale[c], b = shift[c] given (computed by the caller from the running stats).
 * r (residual, same shape as x) and relu fuse the block tail y = relu(bn(x) + r). */
#define FC_BN_APPLY(T, EXPR)                                                                      \
    for (ptrdiff_t n = 0; n < N; n++) {                                                        \
        const T *restrict p = x + (n * C + c) * S;                                             \
        const T *restrict rr = r ? r + (n * C + c) * S : p; (void)rr;                                    \
        T *restrict q = y + (n * C + c) * S;                                                   \
        _Pragma("omp simd")                                                                    \
        for (ptrdiff_t i = 0; i < S; i++) { T v = EXPR; q[i] = v; }                            \
    }
#define FC_BN_FWD(T, SFX)                                                                      \
FC_NCLONES static void fc_bn_fwd_##SFX(const T *restrict x, const T *restrict r, T *restrict y,        \
        ptrdiff_t N, ptrdiff_t C, ptrdiff_t S, const T *restrict gamma, const T *restrict beta, \
        int training, double eps, const T *restrict scale, const T *restrict shift, int relu,   \
        T *restrict smean, T *restrict sinv, double *restrict bmean, double *restrict bvar, int nt) { \
    _Pragma("omp parallel for num_threads(nt) schedule(dynamic)")                              \
    for (ptrdiff_t c = 0; c < C; c++) {                                                        \
        T a, b;                                                                                \
        if (training) {                                                                        \
            double shf = x[c * S], s1 = 0, s2 = 0, M = (double)N * S;                          \
            for (ptrdiff_t n = 0; n < N; n++) {                                                \
                const T *restrict p = x + (n * C + c) * S;                                     \
                T t1 = 0, t2 = 0, ts = (T)shf;                                                 \
                _Pragma("omp simd reduction(+:t1,t2)")                                         \
                for (ptrdiff_t i = 0; i < S; i++) { T d = p[i] - ts; t1 += d; t2 += d * d; }   \
                s1 += t1; s2 += t2;                                                            \
            }                                                                                  \
            double mu = shf + s1 / M, var = s2 / M - (s1 / M) * (s1 / M);                      \
            if (var < 0) var = 0;                                                              \
            bmean[c] = mu; bvar[c] = var;                                                      \
            T tm = (T)mu, ti = (T)(1.0 / sqrt(var + eps));                                     \
            smean[c] = tm; sinv[c] = ti;                                                       \
            a = gamma ? (T)(ti * gamma[c]) : ti;                                               \
            b = beta ? (T)(beta[c] - tm * a) : (T)(-tm * a);                                   \
        } else {                                                                               \
            a = scale[c]; b = shift[c];                                                        \
        }                                                                                      \
        if (r && relu) { FC_BN_APPLY(T, p[i] * a + b + rr[i]; v = v < 0 ? 0 : v) }                \
        else if (r) { FC_BN_APPLY(T, p[i] * a + b + rr[i]) }                                      \
        else if (relu) { FC_BN_APPLY(T, p[i] * a + b; v = v < 0 ? 0 : v) }                        \
        else { FC_BN_APPLY(T, p[i] * a + b) }                                                     \
    }                                                                                          \
}
/* Channel groups for the batch-norm backward over x (N, C, S): [c0, c1) of group k of ng.
 * Small planes (ResNet-20's 8x8 = 256 B, 16x16 = 1 KB) visited one channel at a time are
 * C*S elements apart, too short for the hardware prefetcher; a group of G adjacent channels
 * walked n-major reads G*S contiguous elements a step.  G: the group's inputs about 1 MB (the
 * L2; 256 KB and 512 KB measured no better), at most FC_BN_GMAX; ng a multiple of nt when C
 * allows, for balance.  Measured (ResNet-20 shapes, 2 threads, interleaved with torch): the
 * per-channel walk 0.78-1.0x torch on 16x16 and 8x8, the groups 1.2-1.4x; 1 thread the same. */
#define FC_BN_GMAX 32
static inline ptrdiff_t fc_bn_groups(ptrdiff_t C, double bytes_per_ch, int nt) {
    double target = 1024.0 * 1024;
    ptrdiff_t g = bytes_per_ch > 0 ? (ptrdiff_t)(target / bytes_per_ch) : FC_BN_GMAX;
    if (g < 1) g = 1;
    if (g > FC_BN_GMAX) g = FC_BN_GMAX;
    ptrdiff_t ng = (C + g - 1) / g;
    if (ng < nt) ng = nt < C ? nt : C;
    ptrdiff_t up = (ng + nt - 1) / nt * nt;
    if (up <= C) ng = up;
    return ng;
}

/* Backward.  With y (the fused forward's output, relu != 0) the incoming gradient is first
 * masked, g = (y <= 0 ? 0 : dy) (ReLU's rule: NaN keeps its gradient); dr, when given,
 * receives g (the residual's gradient).  Pass 1 per channel group, n-major: sdy = sum g,
 * sdyx = sum g*(x-mean); each plane is summed in 64-byte GCC vectors of T (two accumulators
 * per sum for the add latency, the S % W tail into lane 0), folded into the channel's double
 * vectors acc1/acc2 with no horizontal reduction per plane (omp simd's reduction did one per
 * plane: 4 vector steps and a 16-lane reduction on an 8x8 plane).  Pass 2 over the group:
 * dx = k1*g - k2*x + k3 (training) or k1*g (eval).  dgamma = sdyx*invstd, dbeta = sdy. */
typedef float fc_v16f __attribute__((vector_size(64), aligned(4), may_alias));
typedef int fc_v16i __attribute__((vector_size(64)));
typedef double fc_v16d __attribute__((vector_size(128)));
typedef double fc_v8da __attribute__((vector_size(64)));
typedef double fc_v8d __attribute__((vector_size(64), aligned(8), may_alias));
typedef long long fc_v8l __attribute__((vector_size(64)));
#define FC_BN_VG_DY(VT, VI, j) (*(const VT *)(pd + (j)))
#define FC_BN_VG_RELU(VT, VI, j) ((VT)((VI)(*(const VT *)(pd + (j))) & ((*(const VT *)(py + (j)) <= 0) == 0)))
#define FC_BN_RED(T, VT, VI, VD, W, VGEXPR, GEXPR, STORE)                                      \
    for (ptrdiff_t n = 0; n < N; n++) {                                                        \
        for (ptrdiff_t c = c0; c < c1; c++) {                                                  \
            const ptrdiff_t off = (n * C + c) * S;                                             \
            const T *restrict pd = dy + off;                                                   \
            const T *restrict px = x + off;                                                    \
            const T *restrict py = y ? y + off : px; (void)py;                                 \
            T *restrict pr = dr ? dr + off : NULL; (void)pr;                                   \
            const T tmu = tm[c - c0];                                                          \
            VT a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};                                         \
            ptrdiff_t j = 0;                                                                   \
            for (; j + 2 * W <= S; j += 2 * W) {                                               \
                VT g0 = VGEXPR(VT, VI, j), g1 = VGEXPR(VT, VI, j + W);                         \
                if (pr) { *(VT *)(pr + j) = g0; *(VT *)(pr + j + W) = g1; }                    \
                a0 += g0; a1 += g1;                                                            \
                b0 += g0 * (*(const VT *)(px + j) - tmu);                                      \
                b1 += g1 * (*(const VT *)(px + j + W) - tmu);                                  \
            }                                                                                  \
            for (; j + W <= S; j += W) {                                                       \
                VT g0 = VGEXPR(VT, VI, j);                                                     \
                if (pr) *(VT *)(pr + j) = g0;                                                  \
                a0 += g0; b0 += g0 * (*(const VT *)(px + j) - tmu);                            \
            }                                                                                  \
            for (; j < S; j++) { T gi = GEXPR; STORE; a0[0] += gi; b0[0] += gi * (px[j] - tmu); } \
            acc1[c - c0] += __builtin_convertvector(a0 + a1, VD);                              \
            acc2[c - c0] += __builtin_convertvector(b0 + b1, VD);                              \
        }                                                                                      \
    }
#define FC_BN_BWD(T, SFX, VT, VI, VD, W)                                                                    \
FC_NCLONES static void fc_bn_bwd_##SFX(const T *restrict dy, const T *restrict x, const T *restrict y,   \
        T *restrict dr, T *restrict dx, ptrdiff_t N, ptrdiff_t C, ptrdiff_t S,                 \
        const T *restrict mean, const T *restrict invstd, const T *restrict gamma, int training, \
        double *restrict dgamma, double *restrict dbeta, int nt) {                             \
    const ptrdiff_t ng = fc_bn_groups(C, (double)N * S * sizeof(T) * (y ? 3 : 2), nt);         \
    _Pragma("omp parallel for num_threads(nt) schedule(dynamic)")                              \
    for (ptrdiff_t k = 0; k < ng; k++) {                                                       \
        const ptrdiff_t c0 = k * C / ng, c1 = (k + 1) * C / ng;                                \
        VD acc1[FC_BN_GMAX], acc2[FC_BN_GMAX];                                                 \
        T tm[FC_BN_GMAX], k1[FC_BN_GMAX], k2[FC_BN_GMAX], k3[FC_BN_GMAX];                      \
        for (ptrdiff_t c = c0; c < c1; c++) tm[c - c0] = mean[c];                              \
        for (ptrdiff_t i = 0; i < c1 - c0; i++) { acc1[i] = (VD){0}; acc2[i] = (VD){0}; }      \
        if (y && dr) { FC_BN_RED(T, VT, VI, VD, W, FC_BN_VG_RELU, py[j] <= 0 ? (T)0 : pd[j], pr[j] = gi) } \
        else if (y) { FC_BN_RED(T, VT, VI, VD, W, FC_BN_VG_RELU, py[j] <= 0 ? (T)0 : pd[j], (void)0) } \
        else { FC_BN_RED(T, VT, VI, VD, W, FC_BN_VG_DY, pd[j], (void)0) }                      \
        const double M = (double)N * S;                                                        \
        for (ptrdiff_t c = c0; c < c1; c++) {                                                  \
            double sdy = 0, sdyx = 0;                                                          \
            for (int l = 0; l < W; l++) { sdy += acc1[c - c0][l]; sdyx += acc2[c - c0][l]; }   \
            double mu = mean[c], inv = invstd[c], g = gamma ? gamma[c] : 1.0;                  \
            dbeta[c] = sdy; dgamma[c] = sdyx * inv;                                            \
            k1[c - c0] = (T)(g * inv); k2[c - c0] = 0; k3[c - c0] = 0;                         \
            if (training) {                                                                    \
                k2[c - c0] = (T)(g * inv * inv * inv * sdyx / M);                              \
                k3[c - c0] = (T)(g * inv * (mu * inv * inv * sdyx / M - sdy / M));             \
            }                                                                                  \
        }                                                                                      \
        for (ptrdiff_t n = 0; n < N; n++) {                                                    \
            for (ptrdiff_t c = c0; c < c1; c++) {                                              \
                const ptrdiff_t off = (n * C + c) * S;                                         \
                const T *restrict pd = dr ? dr + off : dy + off;                               \
                const T *restrict px = x + off;                                                \
                const T *restrict py = (y && !dr) ? y + off : NULL;                            \
                T *restrict q = dx + off;                                                      \
                const T a1 = k1[c - c0], a2 = k2[c - c0], a3 = k3[c - c0];                     \
                if (py) {                                                                      \
                    _Pragma("omp simd")                                                        \
                    for (ptrdiff_t i = 0; i < S; i++) { T gi = py[i] <= 0 ? (T)0 : pd[i]; q[i] = a1 * gi - a2 * px[i] + a3; } \
                } else {                                                                       \
                    _Pragma("omp simd")                                                        \
                    for (ptrdiff_t i = 0; i < S; i++) q[i] = a1 * pd[i] - a2 * px[i] + a3;     \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}

FC_BN_FWD(float, f32)
FC_BN_FWD(double, f64)
FC_BN_BWD(float, f32, fc_v16f, fc_v16i, fc_v16d, 16)
FC_BN_BWD(double, f64, fc_v8d, fc_v8l, fc_v8da, 8)
