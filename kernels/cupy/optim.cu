// Optimizer steps: one launch over a whole flat buffer, in place.  Scalars
// (bias corrections, step sizes) are computed on the host in float64 and
// passed in the array's dtype.  16-byte vector loads when the host finds every
// pointer 16-byte aligned (VEC), a scalar tail otherwise.
typedef long long i64;

__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }

template <typename T>
struct __align__(16) Pack { T v[16 / sizeof(T)]; };

#define VEC_LOOP(BODY)                                                                      \
    const i64 tid = blockIdx.x * (i64)blockDim.x + threadIdx.x;                               \
    const i64 stride = (i64)gridDim.x * blockDim.x;                                           \
    i64 done = 0;                                                                             \
    if (VEC) {                                                                                \
        const int L = 16 / sizeof(T);                                                         \
        const i64 nv = n / L;                                                                 \
        for (i64 i = tid; i < nv; i += stride) { BODY(Pack<T>, L, i) }                        \
        done = nv * L;                                                                        \
    }                                                                                         \
    for (i64 i = done + tid; i < n; i += stride) { BODY(Single<T>, 1, i) }

template <typename T>
struct Single { T v[1]; };

#define LOAD(P, ptr, i) (reinterpret_cast<const P*>(ptr)[i])
#define STORE(P, ptr, i, val) (reinterpret_cast<P*>(ptr)[i] = (val))

// Adam / AdamW (torch.optim.Adam, single-tensor rule):
//   decoupled: p *= 1 - lr*wd  else  g += wd*p
//   m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g*g
//   p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
template <typename T, bool VEC>
__global__ void adam_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v, i64 n,
                            T b1, T b2, T one_minus_b1, T one_minus_b2, T step_size, T bc2_sqrt, T eps,
                            T wd, T decay_factor, int decoupled) {
#define ADAM_BODY(P, L, i)                                                                    \
    P pp = LOAD(P, p, i), gg = LOAD(P, g, i), mm = LOAD(P, m, i), vv = LOAD(P, v, i);          \
    _Pragma("unroll") for (int k = 0; k < L; ++k) {                                           \
        T pk = pp.v[k], gk = gg.v[k];                                                         \
        if (decoupled) pk *= decay_factor; else if (wd != T(0)) gk += wd * pk;                              \
        T mk = mm.v[k];                                                                       \
        mk = (one_minus_b1 < T(0.5)) ? mk + one_minus_b1 * (gk - mk) : gk - (gk - mk) * b1;   \
        T vk = vv.v[k] * b2 + one_minus_b2 * gk * gk;                                         \
        T denom = d_sqrt(vk) / bc2_sqrt + eps;                                                \
        pk += -step_size * (mk / denom);                                                      \
        pp.v[k] = pk; mm.v[k] = mk; vv.v[k] = vk;                                             \
    }                                                                                         \
    STORE(P, p, i, pp); STORE(P, m, i, mm); STORE(P, v, i, vv);
    VEC_LOOP(ADAM_BODY)
#undef ADAM_BODY
}

// SGD (torch.optim.SGD): d = g + wd*p; momentum: buf = first ? d : mu*buf + (1-damp)*d;
// d = nesterov ? d + mu*buf : buf; p -= lr*d.  has_mom == 0: buf unused (may be null).
template <typename T, bool VEC>
__global__ void sgd_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, i64 n, T lr, T mu,
                           T one_minus_damp, T wd, int has_mom, int nesterov, int first) {
#define SGD_BODY(P, L, i)                                                                     \
    P pp = LOAD(P, p, i), gg = LOAD(P, g, i), bb;                                             \
    if (has_mom) bb = LOAD(P, buf, i);                                                        \
    _Pragma("unroll") for (int k = 0; k < L; ++k) {                                           \
        T d = gg.v[k];                                                                        \
        if (wd != T(0)) d += wd * pp.v[k];                                                    \
        if (has_mom) {                                                                        \
            T b = first ? d : mu * bb.v[k] + one_minus_damp * d;                              \
            bb.v[k] = b;                                                                      \
            d = nesterov ? d + mu * b : b;                                                    \
        }                                                                                     \
        pp.v[k] -= lr * d;                                                                    \
    }                                                                                         \
    STORE(P, p, i, pp);                                                                       \
    if (has_mom) STORE(P, buf, i, bb);
    VEC_LOOP(SGD_BODY)
#undef SGD_BODY
}

// Adagrad: g += wd*p; s += g*g; p -= clr * g / (sqrt(s) + eps)
template <typename T, bool VEC>
__global__ void adagrad_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ s, i64 n, T clr, T wd,
                               T eps) {
#define ADAGRAD_BODY(P, L, i)                                                                 \
    P pp = LOAD(P, p, i), gg = LOAD(P, g, i), ss = LOAD(P, s, i);                             \
    _Pragma("unroll") for (int k = 0; k < L; ++k) {                                           \
        T gk = gg.v[k];                                                                       \
        if (wd != T(0)) gk += wd * pp.v[k];                                                   \
        T sk = ss.v[k] + gk * gk;                                                             \
        pp.v[k] += -clr * (gk / (d_sqrt(sk) + eps));                                          \
        ss.v[k] = sk;                                                                         \
    }                                                                                         \
    STORE(P, p, i, pp); STORE(P, s, i, ss);
    VEC_LOOP(ADAGRAD_BODY)
#undef ADAGRAD_BODY
}

#ifdef FASTCONV_NVCC_CHECK
#define INST(T, V)                                                                                          \
    template __global__ void adam_kernel<T, V>(T*, const T*, T*, T*, i64, T, T, T, T, T, T, T, T, T, int); \
    template __global__ void sgd_kernel<T, V>(T*, const T*, T*, i64, T, T, T, T, int, int, int);           \
    template __global__ void adagrad_kernel<T, V>(T*, const T*, T*, i64, T, T, T);
INST(float, true) INST(float, false) INST(double, true) INST(double, false)
#endif
