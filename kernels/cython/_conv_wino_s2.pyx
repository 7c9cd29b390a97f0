# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Polyphase Winograd forward for stride-2 convolutions (``algo='winograd_s2'``), float32 on
AVX-512F CPUs.

Called by the ``conv`` module's ``conv2d_forward`` (forced, or 'auto' through ``pick``) after it
validated the arguments; ``eligible`` says which convolutions this module takes.

Math.  Pad x by the conv padding and split it into its four phases Z_pq = xpad[:, :, p::2, q::2]
(p, q in {0, 1}): a stride-1 problem with 4C channels c' = 4c + 2p + q.  Zero-pad the R x S
filter (R, S <= 4; larger below) to 4 x 4 and split it the same way, w_pq = w4[:, :, p::2, q::2] (2 x 2).  Then
y[o] = sum_r w[r] xpad[2o + r] = sum_p sum_r2 w_p[r2] Z_p[o + r2]: y = conv_stride1(Z, w_s2d),
cropped to P x Q.  That conv runs as Winograd F(4x4, 2x2), alpha 5, points 0, 1, -1, 2, inf
(B^T = V^-T of the Vandermonde-with-infinity matrix, G its first two columns, A^T the first four
rows' transpose; generated and checked exactly with fractions): 25 products per 16 outputs per
phase channel, 4C * 25 / 16 = 6.25 C multiplications per output against 9 C for a direct 3x3
(1.44x fewer; fewer still, below).

Filters up to 8 x 8: zero-pad to 4 nr x 4 ns (nr, ns = 1 or 2) and cut each phase filter
(2 nr x 2 ns) into 2 x 2 blocks (u, v): block (u, v) is the 2 x 2 conv of the phase image shifted
by (2u, 2v), i.e. another 2 x 2 "sub-phase" channel, so the same F(4x4, 2x2) runs over
4 nr ns C channels c' = 4 nr ns c + sp, sp = 4 (u ns + v) + 2p + q.  The stem's 7x7 (C = 3):
48 phase channels, ~68 multiplications per output against 147 direct.

Only the phase channels whose transformed filter can be nonzero enter a component's product:
for a 3x3 filter, rows a = 4 / columns b = 4 of U see only phases p = 0 / q = 0, so the 25
products run over 81 C phase channels instead of 100 C (81 C products per 16 outputs against
144 C direct: 1.78x fewer).

Work (``_wino_s2_impl.h``): the phase-split filters are laid out once per call (OpenMP over
output channels); OpenMP (dynamic) over blocks of up to MAXP panels of 8 tiles (a multiple of the
threads), each: input transform (each tile's 10 columns of a phase row one masked load, 16 x 16
transposes into 8 tiles x 2 phases per vector) into V; then per 48-channel panel of K and row a
of the components: the five filter-transform B panels (G g G^T, from the phase filters, in L2),
the products V_xi (tiles x live phase channels) . B through an 8 x 48 (or 8 x 16 / 8 x 32 for
K's tail) AVX-512 register-blocked kernel into M, and the output transform (A^T M A + bias, 16
output channels per vector, a 16 x 16 transpose, masked stores into y).

Performance (1-thread CPU-time medians of interleaved pairs, see ``pick``): strided_3x3
(8,128,56^2 -> 256, 3x3, s2, p1) torch / this 1.37-1.40 (torch / gemm 1.0), resnet_conv1 (stem,
7x7) 1.59 (gemm 1.0); 2 threads, wall clock, in a quiet moment: 1.35 and 1.44; the products run
at the kernel's ~110 GF/s and take ~2/3 of the time, the input transform ~15 %.  Tried:
AVX-512 gathers for the input transform (4x slower than loads + transposes), a 25-component U
(13 MB) computed once per call (3.3 ms of memory traffic: slower than the per-block B panels),
one B panel at a time (the phase filters re-read 25 times per block), blocks of 8 / 12 / 25
panels (flat within noise), output-channel groups of 2 panels (slower: the phase filters of a
panel no longer stay in L2), scatters for the output stores (slower than the transpose).

Measured error (float32, ||y - y64|| / ||y64|| against a float64 conv of the same float32 data,
random normal, with bias): strided_3x3 2.1e-6, (8,64,56^2 -> 128) 1.5e-6, 4x4 (8,64,56^2 -> 64)
1.9e-6 (the packed GEMM path: 3.5e-7); the small test shapes 3e-7 .. 1e-6; it grows with the
reduction length (C = 1024, 3x3: 5.5e-6).  Points 0, 1, -1,
1/2 instead of 2 gave 8.1e-7 against 5.8e-7 on a small shape.  The tests bound it by 5e-6 (the
contract allows 1e-3 for Winograd).
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid

cnp.import_array()

cdef extern from "_wino_s2_impl.h" nogil:
    ctypedef struct ws2_geo:
        int N, C, H, W, K, R, S, P, Q, ph, pw, th, tw, nr, ns, nsp, Cp, npan, kg
    int ws2_available()
    void ws2_filters(const float* w, float* Wp, const ws2_geo* g, int k0, int k1)
    void ws2_block(const float* x, const float* Wp, const float* bias, float* y, float* V, float* M,
                   float* B, const ws2_geo* g, Py_ssize_t t0, int nt)

from ._conv_winograd import _scratch

AVAILABLE = bool(ws2_available())

# Tunables
MAXP = 16  # tile panels (8 tiles each) per block at most (<= 64: WS2_MAXP) ...
V_BUDGET = 8 << 20  # ... and the block's V (25 x 8 tiles x 4C floats a panel) at most this many bytes
KG = 1  # 48-channel panels per output-channel group


def eligible(x_dtype, w_shape, stride, dilation, groups):
    """'' if this module can run the forward conv, else the reason (for the ValueError)."""
    if not AVAILABLE:
        return "needs a CPU with AVX-512F"
    if np.dtype(x_dtype) != np.float32:
        return f"runs in float32 only (got {np.dtype(x_dtype).name})"
    if tuple(stride) != (2, 2) or tuple(dilation) != (1, 1) or groups != 1:
        return "needs stride 2, dilation 1 and groups 1"
    if w_shape[2] > 8 or w_shape[3] > 8:
        return "needs a filter of at most 8 x 8"
    return ""


MIN_C = 3  # auto: C at least this, ...
MIN_K = 64  # ... K at least this (MIN_K_LARGE for filters of 6x6 and more), ...
MIN_K_LARGE = 32
MIN_TILES = 32  # ... at least this many 4x4 output tiles, ...
MAX_WASTE = 1.15  # ... at most this many computed outputs (whole tiles) per output, ...
MAX_KC_PER_TILE = 1024  # ... and K * C at most this times the tiles (filter transform per block)


def pick(x_shape, w_shape, padding):
    """'winograd_s2' or 'gemm' for an eligible float32 forward shape.

    Rule (from 1-thread CPU-time medians of interleaved runs; figures are gemm / winograd_s2 and
    torch / winograd_s2): filters 3x3 .. 8x8, C >= MIN_C, K >= MIN_K (MIN_K_LARGE from 6x6 on),
    T >= MIN_TILES tiles, tile waste (4 th x 4 tw) / (P Q) <= MAX_WASTE, K C <= MAX_KC_PER_TILE T.
    Measured (N = 8 unless said, 3x3 padding 1): C 128, 56^2 -> 256 (strided_3x3) 1.40 / 1.40;
    64, 56^2 -> 128 1.27 / 1.22; 128, 56^2 -> 256 padding 0 1.26 / 1.32; 64, 16^2 -> 64 1.25 /
    1.12; 32, 32^2 -> 64 1.11 / 1.06; 3, 224^2 -> 64 1.41 / 1.38; 4x4 64, 56^2 -> 64 1.59 / 1.51;
    7x7 stem 3, 224^2 -> 64 p3 (resnet_conv1) 1.51 / 1.49, N = 1 1.37 / 1.50; 7x7 3, 112^2 -> 64
    1.25 / 1.18; 7x7 2 x 3, 112^2 -> 32 1.28 / 1.12; 7x7 16, 56^2 -> 32 1.20 / 0.97; 5x5 32,
    64^2 -> 64 p2 1.20 / 1.11.  Kept on gemm: tile waste 1.31 (P = 14 or 7: 128, 28^2 -> 256
    0.99; 256, 14^2 -> 512 1.10; 2 x 64, 28^2 -> 64 0.99), few tiles (512, 7^2 -> 512, 8 tiles:
    0.74; 1 x 64, 14^2 -> 128: 0.79), K = 32 below 6x6 (3, 32^2 -> 32 1.00; 3, 64^2 -> 32 0.98;
    1, 64^2 -> 32 0.75; 4 x 32, 64^2 -> 32 0.89; 16, 32^2 -> 32 1.04; 5x5 16 x 3, 32^2 -> 32
    0.96; 5x5 3, 64^2 -> 32 1.10), 1x1 (256, 28^2 -> 256: 0.45: a quarter of the phase channels
    carry the whole filter)."""
    N, C, H, W = x_shape
    K, _, R, S = w_shape
    P = (H + 2 * padding[0] - R) // 2 + 1
    Q = (W + 2 * padding[1] - S) // 2 + 1
    if P <= 0 or Q <= 0 or not (3 <= R <= 8 and 3 <= S <= 8):
        return "gemm"
    th, tw = -(-P // 4), -(-Q // 4)
    T = N * th * tw
    kmin = MIN_K_LARGE if min(R, S) >= 6 else MIN_K
    if (C >= MIN_C and K >= kmin and T >= MIN_TILES and 16 * th * tw <= MAX_WASTE * P * Q
            and K * C <= MAX_KC_PER_TILE * T):
        return "winograd_s2"
    return "gemm"


cdef void _filters(const float* w, float* U, const ws2_geo* g, int nt) noexcept nogil:
    cdef int ch, nch = (g.K + 15) // 16
    for ch in prange(nch, num_threads=nt, schedule="static"):
        ws2_filters(w, U, g, ch * 16, min(g.K, ch * 16 + 16))


cdef void _run(const float* x, const float* U, const float* bias, float* y, float* work, Py_ssize_t wstride,
               Py_ssize_t vsize, Py_ssize_t msize, const ws2_geo* g, Py_ssize_t npt, int nblk, int nt) noexcept nogil:
    cdef int blk, tid = 0
    cdef Py_ssize_t p0, p1, T = <Py_ssize_t>g.N * g.th * g.tw, t0, t1
    cdef float* V
    with parallel(num_threads=nt):
        tid = threadid()
        for blk in prange(nblk, schedule="dynamic"):
            p0 = npt * blk // nblk
            p1 = npt * (blk + 1) // nblk
            t0 = 8 * p0
            t1 = min(T, 8 * p1)
            if t1 > t0:
                V = work + tid * wstride
                ws2_block(x, U, bias, y, V, V + vsize, V + vsize + msize, g, t0, <int>(t1 - t0))


def forward(x, w, b, padding, y, int nt):
    """y[:] = conv2d(x, w, b, stride 2, padding) (dilation 1, groups 1, float32); arguments
    validated by the caller (and ``eligible`` returned '')."""
    cdef ws2_geo g
    g.N, g.C, g.H, g.W = x.shape
    g.K, _, g.R, g.S = w.shape
    g.P, g.Q = y.shape[2], y.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + 3) // 4
    g.tw = (g.Q + 3) // 4
    g.nr = (g.R + 3) // 4
    g.ns = (g.S + 3) // 4
    g.nsp = 4 * g.nr * g.ns
    g.Cp = g.nsp * g.C
    g.npan = (g.K + 47) // 48
    g.kg = min(<int>KG, g.npan)
    if x.size >= 2 ** 31 or y.size >= 2 ** 31:
        raise ValueError("conv2d_forward: algo 'winograd_s2' needs x and y under 2**31 elements")
    cdef Py_ssize_t T = <Py_ssize_t>g.N * g.th * g.tw
    if T == 0 or g.K == 0:
        return y
    cdef Py_ssize_t npt = (T + 7) // 8
    cdef int maxp = max(1, min(64, MAXP, V_BUDGET // (25 * 8 * 4 * g.Cp)))
    cdef int nblk = max(1, (npt + maxp - 1) // maxp)
    if nblk < npt:  # a multiple of the threads (blocks are equal to a panel)
        nblk = min(npt, (nblk + nt - 1) // nt * nt)
    nt = max(1, min(nt, nblk))
    cdef Py_ssize_t npb = (npt + nblk - 1) // nblk
    cdef Py_ssize_t vsize = 25 * (npb * 8 * g.Cp + 16)
    cdef Py_ssize_t msize = 25 * (npb * 8 * 48 * g.kg + 16)
    cdef Py_ssize_t wstride = (vsize + msize + 5 * (<Py_ssize_t>g.Cp * 48 + 16) + 63) // 64 * 64
    cdef Py_ssize_t usize = 4 * <Py_ssize_t>g.npan * g.Cp * 48
    U = _scratch(2, usize, np.float32)
    work = _scratch(3, nt * wstride + 16, np.float32)
    cdef float* px = <float*>cnp.PyArray_DATA(x)
    cdef float* pw = <float*>cnp.PyArray_DATA(w)
    cdef float* pu = <float*>cnp.PyArray_DATA(U)
    cdef float* pb = NULL if b is None else <float*>cnp.PyArray_DATA(b)
    cdef float* py = <float*>cnp.PyArray_DATA(y)
    cdef float* pk = <float*>cnp.PyArray_DATA(work)
    with nogil:
        _filters(pw, pu, &g, nt)
        _run(px, pu, pb, py, pk, wstride, vsize, msize, &g, npt, nblk, nt)
    return y
