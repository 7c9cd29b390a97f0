# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Winograd F(2x2, 5x5) convolution (5x5, stride 1, dilation 1, groups 1): forward,
backward-input as the forward conv of dy with the flipped, transposed filters (read straight
from w) and padding 4 - p, and backward-weight (``backward_weight``, see the end).

Called by the ``conv`` module's entry points (``algo='winograd5'``, or 'auto' through ``pick``)
after they validated the arguments; not public entry points.

Each 6x6 input tile d (stride 2) becomes V = B^T d B (the B^T of F(4x4, 3x3): points 0, +-1,
+-2, inf), each filter g becomes U = G g G^T (G 6x5), and for each of the 36 components xi
M_xi (K x tiles) = U_xi (K x C) V_xi (C x tiles); the 2x2 output tile is A^T M A (A^T 2x6).
36 products per 4 outputs instead of 100 (2.78x fewer).  Transforms in _wino5_impl.h
(vectorised over runs of up to 16 side-by-side tiles, AVX-512 / AVX2 / baseline clones);
the products go through _wino_impl.h's register-blocked fcw_bgemm.

Structure: the filter transform runs once per call, split over the threads; OpenMP over blocks
of TILES tiles (padded to fcw_bgemm's vector width: its column tails are scalar); per block the
input transform into V [36][C][nb], then per group of KCH output channels the 36 products into
M [36][KCH][nb] and the output transform (+ bias), so V and M stay in L2.  Tiles crossing the
padding or the edge go through a zero-padded copy of their rows (one strip per run of tiles,
refilled per channel).  The transforms always work on 16 tiles (compile-time trip counts, 64-bit
indices: Python's -fwrapv kept int-indexed loops scalar, as did stores to six rows of one
pointer) and store only what belongs to the run.

Performance (alexnet_5x5, 1 thread, CPU-time ratio PyTorch / this, interleaved pairs, median):
forward 1.76x, backward-input 1.65x (2.0x / 1.9x against the GEMM path); fcw_bgemm runs near
the core's FMA peak, the transforms and filter transform take most of the rest.  What moved it:
full-width vectorised transforms (fwd 1.40 -> 1.53), vector-width blocks (blocks of 28 / 14
tiles ran 4x / 8x slower), a really vectorised input transform (bwd-input 1.27 -> 1.45),
channels inside runs (-> 1.77 / 1.60), no libc memcpy calls for short rows (4-6 %).  Did not
help: a zero-padded copy of the whole input per call instead of strips (1.82 / 1.56 ->
1.66 / 1.53); block size (16-64 tiles) and KCH (32-192) are flat within noise.  Left: the
input transform is ~25 % of the products' time where C is large (backward-input, C = 192:
V of 36 x 192 x 32 tiles spills L2).

Measured error (float32, ||out - ref|| / ||ref|| against a float64 conv on float32-exact random
normal data): alexnet_5x5 forward 1.9e-6, backward-input 3.1e-6; small odd shapes 0.6e-6 to
1.4e-6 (the GEMM path: 3.4e-7 on alexnet_5x5; constants 1/6, 1/24 and factors up to 16 cost ~1 digit).  Far
inside the contract's 1e-3 bound for Winograd; float64 runs the same code (errors ~2e-15 to 6e-15).

Backward-weight: Y = A^T [(G g G^T) . (B^T d B)] A per tile gives dU_xi (K x C) = sum over tiles
dM_xi V_xi^T with dM = A dY A^T (the 2x2 dy tile, zero past the edge), and dw = G^T dU G.  Per
block of <= BW_TILES tiles: the input transform stored tile-major (X_xi: tiles x C), the dy
transform (D_xi: K x tiles), then 36 accumulating register-blocked GEMMs dU_xi += D_xi X_xi
(_wino5_bw.h).  Blocks are split into BW_SLOTS fixed ranges with one dU each, summed in slot
order: the result is the same bits for any thread count.  1-thread CPU-time ratio PyTorch /
this on alexnet_5x5 1.54-1.57x (the packed GEMM: 0.92-0.95x); fc5_bwgemm ~55 % of the time, the
dy transform ~11 %, the transposed input transform ~11 %.  float32 error ||dw - dw64|| / ||dw64||:
alexnet_5x5 5.9e-6 (the GEMM path 3.3e-7; sums over 1568 tiles, factors up to 16, constants of G),
small shapes 0.4e-6 to 1.9e-6; float64 ~5e-16 to 1e-14.
"""

import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memcpy, memset

cnp.import_array()

ctypedef fused real:
    float
    double

cdef extern from "_wino5_bw.h" nogil:
    void fc5_filters_f32(const float* w, float* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                         Py_ssize_t fc)
    void fc5_filters_f64(const double* w, double* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                         Py_ssize_t fc)
    void fc5_in_f32(const float* r0, Py_ssize_t W, float* v, Py_ssize_t cs, Py_ssize_t nc)
    void fc5_in_f64(const double* r0, Py_ssize_t W, double* v, Py_ssize_t cs, Py_ssize_t nc)
    void fc5_out_f32(const float* mp, Py_ssize_t ks, float* y, Py_ssize_t Q, int ra, int rq, float bv)
    void fc5_out_f64(const double* mp, Py_ssize_t ks, double* y, Py_ssize_t Q, int ra, int rq, double bv)
    void fc5_copy_f32(float* d, const float* s, Py_ssize_t n)
    void fc5_copy_f64(double* d, const double* s, Py_ssize_t n)
    void fc5_in_t_f32(const float* r0, Py_ssize_t W, float* v, Py_ssize_t cs, Py_ssize_t ld, Py_ssize_t nc)
    void fc5_in_t_f64(const double* r0, Py_ssize_t W, double* v, Py_ssize_t cs, Py_ssize_t ld, Py_ssize_t nc)
    void fc5_dy_f32(const float* y0, const float* y1, int rq, float* d, Py_ssize_t ks)
    void fc5_dy_f64(const double* y0, const double* y1, int rq, double* d, Py_ssize_t ks)
    void fc5_fgrad_f32(const float* dU, float* dw, Py_ssize_t n, Py_ssize_t KC)
    void fc5_fgrad_f64(const double* dU, double* dw, Py_ssize_t n, Py_ssize_t KC)
    void fc5_bwgemm_f32(int na, int K, int C, int nb, const float* D, Py_ssize_t ds, const float* X, Py_ssize_t xs,
                        float* U, Py_ssize_t us, int acc)
    void fc5_bwgemm_f64(int na, int K, int C, int nb, const double* D, Py_ssize_t ds, const double* X,
                        Py_ssize_t xs, double* U, Py_ssize_t us, int acc)
    void fcw_bgemm_f32(int na, int K, int C, int nb, const float* U, Py_ssize_t us, const float* V, Py_ssize_t vs,
                       float* M, Py_ssize_t ms)
    void fcw_bgemm_f64(int na, int K, int C, int nb, const double* U, Py_ssize_t us, const double* V,
                       Py_ssize_t vs, double* M, Py_ssize_t ms)

DEF NJ = 16  # tiles per vectorised run (FCW_NJ)
DEF SS = 2 * NJ + 4  # row stride of the strip buffer (the full-width input transform's columns)
DEF NA = 36  # components
DEF FCH = 2048  # filters per parallel chunk of the filter transform

# Component matrices sit SKEW elements off a multiple of the block size (cache sets).
cdef Py_ssize_t SKEW = 40

ctypedef struct WG:
    int N, C, H, W, K, P, Q, ph, pw, th, tw, nb, kch
    int vw  # fcw_bgemm's vector width (elements): V / M rows are padded to a multiple of it
    Py_ssize_t T

# Tunables (1-thread sweeps on alexnet_5x5, see pick's docstring)
TILES = 32  # tiles per block (a multiple of fcw_bgemm's vector widths 16 / 8)
KCH = 64  # output channels per product / output-transform group


cdef inline void _filters_run(const real* w, real* U, Py_ssize_t s0, Py_ssize_t n, Py_ssize_t KC, Py_ssize_t fk,
                              Py_ssize_t fc) noexcept nogil:
    if real is float:
        fc5_filters_f32(w, U, s0, n, KC, fk, fc)
    else:
        fc5_filters_f64(w, U, s0, n, KC, fk, fc)


cdef void _filters(const real* w, real* U, Py_ssize_t kc_total, int nt, Py_ssize_t fk, Py_ssize_t fc) noexcept nogil:
    """U[xi][k][c] for all K * C filters (components kc_total + SKEW apart), chunks over nt threads."""
    cdef Py_ssize_t ch, k0, n, KC = kc_total + SKEW
    for ch in prange((kc_total + FCH - 1) // FCH, num_threads=nt, schedule="static"):
        k0 = ch * FCH
        n = min(<Py_ssize_t>FCH, kc_total - k0)
        _filters_run(w, U + k0, k0, n, KC, fk, fc)


cdef inline void _next(const WG* g, int run, int* n, int* ti, int* tj) noexcept nogil:
    tj[0] += run
    if tj[0] == g.tw:
        tj[0] = 0
        ti[0] += 1
        if ti[0] == g.th:
            ti[0] = 0
            n[0] += 1


cdef inline void _in_run(const real* r0, Py_ssize_t W, real* V, Py_ssize_t cs, int c, int i, int nbp, Py_ssize_t nc,
                         int run, int ld) noexcept nogil:
    """The input transform of one run into V (component rows nbp apart), or with ld > 0 into the
    tile-major X of backward-weight (X[xi][i][c], rows ld apart; only the run's tiles)."""
    if ld:
        if real is float:
            fc5_in_t_f32(r0, W, V + <Py_ssize_t>i * ld + c, cs, ld, run)
        else:
            fc5_in_t_f64(r0, W, V + <Py_ssize_t>i * ld + c, cs, ld, run)
    elif real is float:
        fc5_in_f32(r0, W, V + <Py_ssize_t>c * nbp + i, cs, nc)
    else:
        fc5_in_f64(r0, W, V + <Py_ssize_t>c * nbp + i, cs, nc)


cdef void _inputs(const real* x, real* V, const WG* g, Py_ssize_t t0, int nb, int nbp, int ld) noexcept nogil:
    """V[xi][c][i] = (B^T d B)[xi] for the 6x6 input tile d of tile t0 + i, every channel c (rows nbp
    apart; columns nb .. nbp - 1 zeroed: fcw_bgemm's column tails are scalar, so blocks are padded
    to its vector width instead - blocks of 28 / 14 tiles ran 4x / 8x slower).  Runs of up to NJ
    tiles along a tile row, channels inside a run (one zero-padded strip per run at the edges, only
    its valid part refilled per channel).  The full-width transform reads columns past a run (from
    the plane where that stays inside x, else the strip) and stores all 16 slots where the ones past
    the run belong to later runs (else just the run's)."""
    cdef int i, c, n, ti, tj, h0, w0, a, a0, a1, run, ncol, qa, qb, xi
    cdef Py_ssize_t hw = <Py_ssize_t>g.H * g.W, cs = <Py_ssize_t>g.C * nbp + SKEW, base, nc
    cdef Py_ssize_t xend = <Py_ssize_t>g.N * g.C * hw
    cdef const real* xp
    cdef real strip[6 * SS]
    if nbp > nb:
        for xi in range(NA):
            for c in range(g.C):
                memset(V + xi * cs + <Py_ssize_t>c * nbp + nb, 0, (nbp - nb) * sizeof(real))
    n = <int>(t0 // (g.th * g.tw))
    ti = <int>((t0 % (g.th * g.tw)) // g.tw)
    tj = <int>(t0 % g.tw)
    i = 0
    while i < nb:
        run = min(NJ, min(g.tw - tj, nb - i))
        nc = NJ if i + NJ <= nbp else run
        base = <Py_ssize_t>n * g.C * hw
        h0 = 2 * ti - g.ph
        w0 = 2 * tj - g.pw
        ncol = 2 * run + 4
        if (h0 >= 0 and h0 + 6 <= g.H and w0 >= 0 and w0 + ncol <= g.W
                and base + (g.C - 1) * hw + <Py_ssize_t>(h0 + 5) * g.W + w0 + SS <= xend):
            xp = x + base + <Py_ssize_t>h0 * g.W + w0
            for c in range(g.C):
                _in_run(xp + c * hw, g.W, V, cs, c, i, nbp, nc, run, ld)
        else:  # zero-padded copy of the rows: rows a0 .. a1 - 1, columns qa .. qb - 1 from x
            qa = min(ncol, max(0, -w0))
            qb = max(qa, min(ncol, g.W - w0))
            a0 = min(6, max(0, -h0))
            a1 = max(a0, min(6, g.H - h0))
            memset(strip, 0, 6 * SS * sizeof(real))
            for c in range(g.C):
                xp = x + base + c * hw
                if qb > qa:
                    for a in range(a0, a1):
                        if real is float:
                            fc5_copy_f32(strip + a * SS + qa, xp + <Py_ssize_t>(h0 + a) * g.W + w0 + qa, qb - qa)
                        else:
                            fc5_copy_f64(strip + a * SS + qa, xp + <Py_ssize_t>(h0 + a) * g.W + w0 + qa, qb - qa)
                _in_run(strip, SS, V, cs, c, i, nbp, nc, run, ld)
        i = i + run
        _next(g, run, &n, &ti, &tj)


cdef void _outputs(const real* M, Py_ssize_t ks, const real* bias, real* y, const WG* g, Py_ssize_t t0, int nb,
                   int nbp, int k0, int k1) noexcept nogil:
    """y tiles = A^T M A (+ bias) for output channels k0 <= k < k1 (M rows k - k0, components ks apart),
    clipped at the bottom / right edges.  The full-width transform reads M past a run (other tiles'
    columns, or the SKEW gap at the block's end) and stores only the run's outputs."""
    cdef int i, k, n, ti, tj, p0, q0, run, ra, rq
    cdef Py_ssize_t pq = <Py_ssize_t>g.P * g.Q
    cdef real bv
    cdef real* yp
    cdef const real* mp
    for k in range(k0, k1):
        bv = bias[k] if bias != NULL else 0
        n = <int>(t0 // (g.th * g.tw))
        ti = <int>((t0 % (g.th * g.tw)) // g.tw)
        tj = <int>(t0 % g.tw)
        i = 0
        while i < nb:
            run = min(NJ, min(g.tw - tj, nb - i))
            p0 = 2 * ti
            q0 = 2 * tj
            yp = y + (<Py_ssize_t>n * g.K + k) * pq + <Py_ssize_t>p0 * g.Q + q0
            mp = M + <Py_ssize_t>(k - k0) * nbp + i
            ra = min(2, g.P - p0)
            rq = min(2 * run, g.Q - q0)
            if real is float:
                fc5_out_f32(mp, ks, yp, g.Q, ra, rq, bv)
            else:
                fc5_out_f64(mp, ks, yp, g.Q, ra, rq, bv)
            i = i + run
            _next(g, run, &n, &ti, &tj)


cdef void _run(const real* x, const real* U, const real* bias, real* y, real* work, Py_ssize_t wstride,
               const WG* g, int nt) noexcept nogil:
    cdef Py_ssize_t blk, nblk = (g.T + g.nb - 1) // g.nb, t0, us = <Py_ssize_t>g.K * g.C + SKEW
    cdef Py_ssize_t vs, ms
    cdef int nb, nbp, tid = 0, k0, kn, gnbp = (g.nb + g.vw - 1) // g.vw * g.vw
    cdef real* V
    cdef real* M
    with parallel(num_threads=nt):
        tid = threadid()
        for blk in prange(nblk, schedule="dynamic"):
            t0 = blk * g.nb
            nb = <int>min(<Py_ssize_t>g.nb, g.T - t0)
            V = work + tid * wstride
            nbp = (nb + g.vw - 1) // g.vw * g.vw
            vs = <Py_ssize_t>g.C * nbp + SKEW
            M = V + NA * (<Py_ssize_t>g.C * gnbp + SKEW)
            _inputs(x, V, g, t0, nb, nbp, 0)
            k0 = 0
            while k0 < g.K:
                kn = min(g.kch, g.K - k0)
                ms = <Py_ssize_t>kn * nbp + SKEW
                if real is float:
                    fcw_bgemm_f32(NA, kn, g.C, nbp, U + <Py_ssize_t>k0 * g.C, us, V, vs, M, ms)
                else:
                    fcw_bgemm_f64(NA, kn, g.C, nbp, U + <Py_ssize_t>k0 * g.C, us, V, vs, M, ms)
                _outputs(M, ms, bias, y, g, t0, nb, nbp, k0, k0 + kn)
                k0 = k0 + kn


# per-thread workspaces shared with the 3x3 module (one conv call uses one module at a time)
from ._conv_winograd import _scratch


MIN_TILES = 64  # Winograd needs at least this many 2x2 tiles ...
MAX_KC_PER_TILE = 256  # ... K * C at most this times the tiles (the filter transform runs per call) ...
MAX_WORK = 0.6  # ... and at most this fraction of the direct conv's multiplications (36 per tile
# against 25 per output pixel: 0.36 at best; padding waste, e.g. backward-input of an unpadded conv
# on tiny planes, raises it)
BW_MIN_CK = 64  # backward-weight also needs C, K >= this (its transforms cost ~36 (C + K) per tile)


def pick(op, x_shape, w_shape, padding):
    """'winograd5' or 'gemm' for a 5x5 / stride-1 shape that ``conv``'s 'auto' found eligible
    (C, K >= 16).

    Rule from 1-thread CPU-time ratios gemm / winograd5 (interleaved pairs, median; T = 2x2 tiles
    of the Winograd conv, which for backward-input runs on dy with C and K swapped and tiles the
    H x W planes): Winograd where T >= MIN_TILES, K * C <= MAX_KC_PER_TILE * T and
    36 T <= MAX_WORK * 25 N P Q (P x Q the conv's output).  Measured (fwd / bwd-input):
    alexnet_5x5 2.0 / 1.9; (8,32,27^2->32,p2) 1.54 / 1.63; (2,64,13^2->64,p2) 1.30 / 1.27;
    (1,64,27^2->192,p2) 1.59 / 1.23; (4,192,13^2->256,p2) 1.56 / 1.44; (8,16,32^2->32,p0)
    1.59 / 1.36; (8,16,14^2->16,p2) 1.01 / 1.50.  Kept on GEMM: few tiles ((1,32,12^2->32,p2)
    T = 36: 0.98 / 1.07; (1,16,8^2->16,p0) 0.60 / 0.53), padding waste ((8,16,6^2->16,p0)
    backward-input: 72 tiles for 2x2 dy planes, 0.50).  Backward-weight: Winograd where also
    C, K >= BW_MIN_CK (see ``backward_weight``)."""
    N, C, H, W = x_shape
    K = w_shape[0]
    if op == "conv2d_backward_weight":  # tiles of dy (the conv's output), rule in backward_weight
        P, Q = H + 2 * padding[0] - 4, W + 2 * padding[1] - 4
        T = N * (-(-P // 2)) * (-(-Q // 2))
        if min(C, K) >= BW_MIN_CK and T >= MIN_TILES and K * C <= MAX_KC_PER_TILE * T:
            return "winograd5"
        return "gemm"
    if op == "conv2d_backward_input":
        P, Q, C, K = H, W, K, C
        Po, Qo = H + 2 * padding[0] - 4, W + 2 * padding[1] - 4
    elif op == "conv2d_forward":
        P, Q = H + 2 * padding[0] - 4, W + 2 * padding[1] - 4
        Po, Qo = P, Q
    else:
        return "gemm"
    T = N * (-(-P // 2)) * (-(-Q // 2))
    if T >= MIN_TILES and K * C <= MAX_KC_PER_TILE * T and 36 * T <= MAX_WORK * 25 * N * Po * Qo:
        return "winograd5"
    return "gemm"


def forward(x, w, b, padding, y, int nt, int tile=2, bint flip=False):
    """y[:] = conv2d(x, w, b) for 5x5 / stride 1 / dilation 1 / groups 1 through F(2x2, 5x5); with
    flip, w is (C, K, 5, 5) and the conv uses w[c, k] reversed in both taps as filter (k, c)
    (backward-input).  Arguments validated by the caller; tile must be 2."""
    if tile != 2:
        raise ValueError(f"winograd5: tile must be 2, got {tile}")
    cdef WG g
    g.N, g.C, g.H, g.W = x.shape
    g.K = w.shape[1] if flip else w.shape[0]
    cdef Py_ssize_t fk = w.shape[0] if flip else 0, fc = w.shape[1] if flip else 0
    g.P, g.Q = y.shape[2], y.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + 1) // 2
    g.tw = (g.Q + 1) // 2
    g.T = <Py_ssize_t>g.N * g.th * g.tw
    if g.T == 0 or g.K == 0:
        return y
    g.vw = 64 // x.itemsize
    cdef int nb = max(1, min(<Py_ssize_t>TILES, g.T))
    if nt > 1:  # at least ~2 blocks per thread where that keeps blocks of >= 16 tiles
        nb = max(1, min(nb, max(16, (g.T + 2 * nt - 1) // (2 * nt))))
        if nb > g.vw:
            nb = (nb + g.vw - 1) // g.vw * g.vw
    g.nb = nb
    cdef Py_ssize_t nbp = (nb + g.vw - 1) // g.vw * g.vw  # (C division: no -(-a // b) here)
    g.kch = max(1, min(<int>KCH, g.K))
    nt = max(1, min(nt, (g.T + nb - 1) // nb))
    cdef Py_ssize_t KC = <Py_ssize_t>g.K * g.C
    U = _scratch(0, NA * (KC + SKEW), x.dtype)
    cdef Py_ssize_t wstride = NA * (<Py_ssize_t>g.C * nbp + SKEW) + NA * (<Py_ssize_t>g.kch * nbp + SKEW) + 64
    work = _scratch(1, nt * wstride, x.dtype)
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* pw = cnp.PyArray_DATA(w)
    cdef void* pu = cnp.PyArray_DATA(U)
    cdef void* pb = NULL if b is None else cnp.PyArray_DATA(b)
    cdef void* py = cnp.PyArray_DATA(y)
    cdef void* pk = cnp.PyArray_DATA(work)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _filters(<float*>pw, <float*>pu, KC, nt, fk, fc)
            _run(<float*>px, <float*>pu, <float*>pb, <float*>py, <float*>pk, wstride, &g, nt)
        else:
            _filters(<double*>pw, <double*>pu, KC, nt, fk, fc)
            _run(<double*>px, <double*>pu, <double*>pb, <double*>py, <double*>pk, wstride, &g, nt)
    return y


def backward_input(dy, w, padding, dx, int nt, int tile=2):
    """dx[:] = the input gradient of a 5x5 / stride 1 / dilation 1 / groups 1 conv with padding p <= 4:
    the forward conv of dy with the flipped, transposed filters (read straight from w, no copy) and
    padding 4 - p.  Arguments validated by the caller."""
    return forward(dy, w, None, (4 - padding[0], 4 - padding[1]), dx, nt, tile, True)



# ---------------------------------------------------------------- backward-weight
cdef void _dy_tiles(const real* dy, real* D, const WG* g, Py_ssize_t t0, int nb) noexcept nogil:
    """D[xi][k][i] = (A dY A^T)[xi] for the 2x2 dy tile of tile t0 + i (zero past the edge).  The
    full-width transform reads 32 columns and stores 16 slots per run: those past the run land in
    later runs, the next channel's row (written after) or the SKEW gap; rows past the array's end
    go through a zero-padded copy."""
    cdef int i, k, n, ti, tj, p0, q0, run, rq
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q, end = g.N * g.K * pq
    cdef const real* y0
    cdef const real* y1
    cdef real zb[2 * NJ]
    cdef real buf[2 * SS]
    memset(zb, 0, 2 * NJ * sizeof(real))
    for k in range(g.K):
        n = <int>(t0 // (g.th * g.tw))
        ti = <int>((t0 % (g.th * g.tw)) // g.tw)
        tj = <int>(t0 % g.tw)
        i = 0
        while i < nb:
            run = min(NJ, min(g.tw - tj, nb - i))
            p0 = 2 * ti
            q0 = 2 * tj
            rq = min(2 * run, g.Q - q0)
            y0 = dy + (<Py_ssize_t>n * g.K + k) * pq + <Py_ssize_t>p0 * g.Q + q0
            y1 = y0 + g.Q if p0 + 1 < g.P else zb
            if (y1 if y1 != zb else y0) + 2 * NJ > dy + end:
                memset(buf, 0, 2 * SS * sizeof(real))
                memcpy(buf, y0, rq * sizeof(real))
                if y1 != zb:
                    memcpy(buf + SS, y1, rq * sizeof(real))
                y0 = buf
                y1 = buf + SS
            if real is float:
                fc5_dy_f32(y0, y1, rq, D + <Py_ssize_t>k * nb + i, ks)
            else:
                fc5_dy_f64(y0, y1, rq, D + <Py_ssize_t>k * nb + i, ks)
            i = i + run
            _next(g, run, &n, &ti, &tj)


cdef void _run_bw(const real* x, const real* dy, real* dU, Py_ssize_t ustride, int nslot, real* work,
                  Py_ssize_t wstride, const WG* g, int nt) noexcept nogil:
    """dU slot s (ustride apart) = sum over its blocks (a fixed contiguous range: the sums do not
    depend on the thread count) of D_xi X_xi."""
    cdef Py_ssize_t nblk = (g.T + g.nb - 1) // g.nb, blk, b0, b1, t0, us = <Py_ssize_t>g.K * g.C + SKEW
    cdef Py_ssize_t xs, ds
    cdef int s, nb, tid = 0
    cdef real* X
    cdef real* D
    with parallel(num_threads=nt):
        tid = threadid()
        for s in prange(nslot, schedule="dynamic"):
            X = work + tid * wstride
            b0 = nblk * s // nslot
            b1 = nblk * (s + 1) // nslot
            for blk in range(b0, b1):
                t0 = blk * g.nb
                nb = <int>min(<Py_ssize_t>g.nb, g.T - t0)
                xs = <Py_ssize_t>nb * g.C + SKEW
                ds = <Py_ssize_t>g.K * nb + SKEW
                D = X + NA * (<Py_ssize_t>g.nb * g.C + SKEW)
                _inputs(x, X, g, t0, nb, nb, g.C)
                _dy_tiles(dy, D, g, t0, nb)
                if real is float:
                    fc5_bwgemm_f32(NA, g.K, g.C, nb, D, ds, X, xs, dU + s * ustride, us, blk > b0)
                else:
                    fc5_bwgemm_f64(NA, g.K, g.C, nb, D, ds, X, xs, dU + s * ustride, us, blk > b0)


cdef void _filter_grads(real* dU, Py_ssize_t ustride, int nslot, real* dw, Py_ssize_t kc_total,
                        int nt) noexcept nogil:
    """dw[k, c] = G^T dU[:, k, c] G after summing the slots into the first in slot order, chunks
    of filters over nt threads."""
    cdef Py_ssize_t ch, k0, n, i, off, KC = kc_total + SKEW
    cdef int t, xi
    for ch in prange((kc_total + FCH - 1) // FCH, num_threads=nt, schedule="static"):
        k0 = ch * FCH
        n = min(<Py_ssize_t>FCH, kc_total - k0)
        for t in range(1, nslot):
            for xi in range(NA):
                off = xi * KC + k0
                for i in range(n):
                    dU[off + i] += dU[t * ustride + off + i]
        if real is float:
            fc5_fgrad_f32(dU + k0, dw + k0 * 25, n, KC)
        else:
            fc5_fgrad_f64(dU + k0, dw + k0 * 25, n, KC)


BW_TILES = 64  # tiles per block at most (the GEMM depth; blocks are made equal)
BW_SLOTS = 2  # partial dU sums (at most; one per block range), whatever the thread count


def backward_weight(dy, x, padding, dw, int nt):
    """dw[:] = the weight gradient of a 5x5 / stride 1 / dilation 1 / groups 1 conv with padding
    <= 4 through F(2x2, 5x5): per block of tiles the input tiles' V (stored tile-major) and the dy
    tiles' A dY A^T, 36 accumulating GEMMs into dU (K x C per component), then G^T dU G.
    Arguments validated by the caller."""
    cdef WG g
    g.N, g.C, g.H, g.W = x.shape
    g.K = dy.shape[1]
    g.P, g.Q = dy.shape[2], dy.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + 1) // 2
    g.tw = (g.Q + 1) // 2
    g.T = <Py_ssize_t>g.N * g.th * g.tw
    if g.T == 0 or g.K == 0:
        dw[...] = 0
        return dw
    cdef Py_ssize_t nblk = (g.T + BW_TILES - 1) // BW_TILES
    g.nb = <int>((g.T + nblk - 1) // nblk)  # equal blocks (each costs a pass over dU)
    g.vw = 64 // x.itemsize
    cdef int nslot = max(1, min(<int>BW_SLOTS, nblk))
    cdef int nt_all = nt
    nt = max(1, min(nt, nslot))
    cdef Py_ssize_t KC = <Py_ssize_t>g.K * g.C
    cdef Py_ssize_t ustride = NA * (KC + SKEW)
    cdef Py_ssize_t wstride = NA * ((<Py_ssize_t>g.C + g.K) * g.nb + 2 * SKEW) + 64
    dU = _scratch(0, nslot * ustride, x.dtype)  # each slot's first block stores, later ones add
    work = _scratch(1, nt * wstride, x.dtype)
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* pdy = cnp.PyArray_DATA(dy)
    cdef void* pu = cnp.PyArray_DATA(dU)
    cdef void* pk = cnp.PyArray_DATA(work)
    cdef void* pdw = cnp.PyArray_DATA(dw)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _run_bw(<float*>px, <float*>pdy, <float*>pu, ustride, nslot, <float*>pk, wstride, &g, nt)
            _filter_grads(<float*>pu, ustride, nslot, <float*>pdw, KC, nt_all)
        else:
            _run_bw(<double*>px, <double*>pdy, <double*>pu, ustride, nslot, <double*>pk, wstride, &g, nt)
            _filter_grads(<double*>pu, ustride, nslot, <double*>pdw, KC, nt_all)
    return dw
