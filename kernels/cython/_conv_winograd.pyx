# cython: language_level=3
"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution (3x3, stride 1, dilation 1, groups 1).

Called by the ``conv`` module's entry points (``algo='winograd'`` / ``'winograd4'``, or 'auto'
through ``pick``) after they validated the arguments; not public entry points.  Entry points:
``forward``, ``backward_input`` (the forward conv of dy with the flipped, transposed filters,
read straight from w), ``backward_weight`` (transforms dy tiles A dY A^T and input tiles, one
GEMM per component reducing over tiles, then G^T dU G; F(4x4) or F(2x2) chosen inside) and
``pick``.

Each (m+2)x(m+2) input tile d (stride m, m = 2 or 4) becomes V = B^T d B, each filter g becomes
U = G g G^T, and for each of the (m+2)^2 components xi M_xi (K x tiles) = U_xi (K x C) V_xi
(C x tiles) replaces the 3x3 products; the m x m output tile is A^T M A.  F(2x2): 16 products
per 4 outputs (2.25x fewer than direct); F(4x4): 36 per 16 (4x fewer).

Structure (forward): the filter transform runs once per call, split over the threads; tiles are
processed in cache-sized blocks (OpenMP over blocks): input transform of a block, the component
products, output transform, so V and M stay near L2.  Few tiles with big filter matrices
(res4/res5) use one block with each phase split over the threads (channels / components or
output-channel groups / output channels), so U is streamed once; where that one block is all
there is (res5's F(4x4)) the filter transform is fused too: each group of output channels has
its filters transformed into an L2-sized buffer right before its products, and U (38 MB there)
never goes to memory.  The transforms are C (_wino_impl.h), vectorised over runs of up to 16
side-by-side tiles (or 64 filters) and compiled for AVX-512, AVX2 and baseline x86-64 (picked at
load time); tiles crossing the padding or the edge go through a zero-padded copy of their rows,
so every tile takes the vectorised path.  On AVX-512 CPUs the float32 F(4x4) transforms (input,
output, dy tiles) take _conv_winograd4x.pxi / _wino_x4.h instead: intrinsics on runs of 16 lanes
that span tile rows and images (small planes have only 2-4 tiles per row), 1.1-1.6x faster
forwards on res3/res5/CIFAR than the generic path.  The component products go through fcw_bgemm
(register-blocked, 4 rows x 2 vectors; U rows broadcast, V rows streamed), 1.0-1.6x faster
than 36 OpenBLAS calls per block, which pack U anew on every call (OpenBLAS stays for
backward-weight, where a dot-product kernel lost).  Why F(4x4) used to lose to F(2x2): scalar
SSE2 transforms, slow scalar edge tiles on small planes (most tiles there), a serial scalar
filter transform (20 ms for res5's 512x512 filters, 5 ms of that page faults on a fresh 38 MB
U; workspaces are now reused per Python thread), 4 MiB blocks that spilled L2, and OpenBLAS's
per-call packing on its 36 small GEMMs per block.

Measured error (float32, ||out - ref|| / ||ref|| against float64 PyTorch on float32-exact
random normal data, ResNet res2-res5 and CIFAR ResNet-20 layers, forward / backward-input /
backward-weight): F(2x2) 1.6e-7 to 6.8e-7 (its transforms only add and halve: as accurate as
the GEMM path); F(4x4) 1.1e-6 to 3.5e-6 forward and backward-input, 0.8e-6 to 1.8e-6
backward-weight (constants 1/6, 1/24 and factors up to 8).  Both are far inside the contract's
1e-3 bound for Winograd; float64 runs the same code (errors ~1e-15).
"""
import threading

import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()

ctypedef fused real:
    float
    double

# The 16 / 36 component matrices sit SKEW elements off a multiple of the block size,
# so the streams of a transform do not all land in the same cache sets.
cdef Py_ssize_t SKEW = 40

ctypedef struct WG:
    int N, C, H, W, K, P, Q, ph, pw, th, tw, nb
    int own  # component products through fcw_bgemm instead of OpenBLAS
    Py_ssize_t T


cdef inline void _gemm(int m, int n, int k, real* a, int lda, real* b, int ldb, real* c, int ldc) noexcept nogil:
    cdef char t = b'N'
    cdef real one = 1, zero = 0
    if real is float:
        sgemm(&t, &t, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)
    else:
        dgemm(&t, &t, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)


include "_conv_winograd4.pxi"
include "_conv_winograd4x.pxi"


cdef void _run(const real* x, const real* U, const real* bias, real* y, real* work, Py_ssize_t wstride,
               const WG* g, int tile, int nt) noexcept nogil:
    cdef Py_ssize_t blk, nblk = (g.T + g.nb - 1) // g.nb, t0
    cdef int nb, xi, tid = 0, na = (tile + 2) * (tile + 2)
    cdef real* V
    cdef real* M
    with parallel(num_threads=nt):
        tid = threadid()
        for blk in prange(nblk, schedule="dynamic"):
            t0 = blk * g.nb
            nb = <int>min(<Py_ssize_t>g.nb, g.T - t0)
            V = work + tid * wstride
            M = V + <Py_ssize_t>na * (g.C * g.nb + SKEW)
            _inputs(x, V, g, t0, nb, tile, 0, g.C)
            for xi in range(na):
                _products(g, U, V, M, nb, xi)
            _outputs(M, bias, y, g, t0, nb, tile, 0, g.K)


cdef inline void _products(const WG* g, const real* U, const real* V, real* M, int nb, int xi) noexcept nogil:
    """M_xi (K x nb) = U_xi (K x C) V_xi (C x nb) through fcw_bgemm or OpenBLAS."""
    cdef const real* u = U + xi * (<Py_ssize_t>g.K * g.C + SKEW)
    cdef const real* v = V + xi * (<Py_ssize_t>g.C * nb + SKEW)
    cdef real* m = M + xi * (<Py_ssize_t>g.K * nb + SKEW)
    if g.own:
        _bgemm(1, g.K, g.C, nb, u, 0, v, 0, m, 0)
    else:
        _gemm(nb, g.K, g.C, <real*>v, nb, <real*>u, g.C, m, nb)


cdef void _run_wide(const real* x, const real* U, const real* bias, real* y, real* V, real* M,
                    const WG* g, int tile, int nt, const real* w, Py_ssize_t fk, Py_ssize_t fc,
                    real* Uloc, Py_ssize_t ulstride, int kg, bint fuse_out) noexcept nogil:
    """All T tiles as one block, each phase split over the threads: input transform by channel,
    products by component, output transform by output channel (few tiles, big filter matrices:
    blocks per thread made every thread stream all of U, 38 MB for res5's F(4x4)).  With kg > 0
    (fused) there is no U: products by groups of kg output channels, each transforming its
    filters into Uloc (per thread, ulstride apart; L2-sized) right before its products, so U
    never goes to memory (writing res5's 38 MB U took 8 ms of a 17 ms forward)."""
    cdef int c, k, xi, tid = 0, nb = <int>g.T, na = (tile + 2) * (tile + 2), grp, kn
    cdef Py_ssize_t k0
    cdef real* ul
    for c in prange(g.C, num_threads=nt, schedule="static"):
        _inputs(x, V, g, 0, nb, tile, c, c + 1)
    if kg > 0:
        with parallel(num_threads=nt):
            tid = threadid()
            for grp in prange((g.K + kg - 1) // kg, schedule="dynamic"):
                k0 = <Py_ssize_t>grp * kg
                kn = <int>min(<Py_ssize_t>kg, g.K - k0)
                ul = Uloc + tid * ulstride
                _filters_run(w, ul, k0 * g.C, <Py_ssize_t>kn * g.C, tile, fk, fc)
                _bgemm(na, kn, g.C, nb, ul, <Py_ssize_t>kn * g.C + SKEW, V, <Py_ssize_t>g.C * nb + SKEW,
                       M + k0 * nb, <Py_ssize_t>g.K * nb + SKEW)
                if fuse_out:  # while the group's rows of M are in L2 (all of M, 4.7 MB on res4, is not)
                    _outputs(M, bias, y, g, 0, nb, tile, <int>k0, <int>k0 + kn)
    else:
        for xi in prange(na, num_threads=nt, schedule="dynamic"):
            _products(g, U, V, M, nb, xi)
    if kg == 0 or not fuse_out:
        for k in prange(g.K, num_threads=nt, schedule="static"):
            _outputs(M, bias, y, g, 0, nb, tile, k, k + 1)


# Block sizes, from 1-thread sweeps of 16..256 tiles per block (F(4x4) forward): res2 best at 32,
# res3 16-32, res4 128-256, CIFAR shapes 16-128; big blocks (the old 4 MiB) spilled L2 and cost
# res2/res3 25-40 %.
BLOCK_BYTES = 640 << 10  # V + M workspace per thread, forward
BW_BLOCK_BYTES = 1 << 20  # the same, backward-weight (512 KiB-1 MiB best on CIFAR shapes, 4 MiB cost 30 %)
MIN_TILES = 16
OWN_GEMM_MAX_KC = 1 << 30  # K * C up to this: component products by fcw_bgemm, not OpenBLAS
BW_F4_MIN_PIXELS = 2048  # backward-weight through F(4x4) from this many output pixels N * P * Q
WIDE_TILES = 64  # with several threads and at most this many tiles per thread ...
WIDE_MIN_KC = 128 * 128  # ... and K * C at least this: one block, phases split over the threads
FUSE_MIN_KC = 128 * 128  # fused filter transform (no U in memory) from this K * C on ...
FUSE_TILES = 64  # ... with at most this many tiles per thread (one block)
FUSE_OUTPUTS = True  # fused mode: output transform of each group right after its products
FUSE_FILTERS = 4096  # filters per fused group (K rows * C): 36 components of them ~ 590 KiB float32
OWN_TILES = (32, 64)  # fcw_bgemm blocks: 32 to 64 tiles (a multiple of its vectors)
CK_PER_TILE = 512  # OpenBLAS path: at least K * C / this tiles per block


_local = threading.local()
SCRATCH_KEEP = 64 << 20  # workspaces up to this size are kept per Python thread between calls


def _scratch(int slot, Py_ssize_t n, dtype):
    """An uninitialised 1-d workspace of n elements starting on a 64-byte boundary; buffers up to
    SCRATCH_KEEP bytes are kept per Python thread and reused (fresh large arrays cost page faults:
    5 ms for res5's 38 MB of F(4x4) U)."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    key = (slot, np.dtype(dtype).char)
    a = bufs.get(key)
    pad = 64 // np.dtype(dtype).itemsize
    if a is None or a.shape[0] < n + pad:
        a = np.empty(n + pad, dtype=dtype)
        if n * a.itemsize <= SCRATCH_KEEP:
            bufs[key] = a
    # start on a 64-byte line: NumPy's buffers begin 16, 32 or 48 bytes into one depending on the
    # heap, and every vector access of a misaligned workspace then spans two lines (res4 forward
    # 4.1 ms aligned against 4.6-5.0 ms otherwise, varying from process to process)
    off = (-(a.ctypes.data // a.itemsize)) % pad
    return a[off:off + n]


def pick(op, x_shape, w_shape, padding):
    """Algorithm for a 3x3 / stride-1 conv that ``conv``'s 'auto' found Winograd-eligible:
    'winograd' (F(2x2)), 'winograd4' (F(4x4); never for conv2d_backward_weight) or 'gemm'.

    Rule from 1-thread CPU-time ratios against PyTorch (interleaved pairs, median): F(4x4)
    forward and backward-input wherever it needs no more component products than F(2x2)
    (36 per 4x4 tile against 16 per 2x2 tile, edge tiles counted whole): it won or tied every
    measured layer (res2-res5, CIFAR ResNet-20) once its transforms were vectorised; F(2x2) on
    planes so small that 4x4 tiles are mostly waste (P, Q <= 2).  GEMM lost every 3x3 / stride-1
    shape with C, K >= 16 (0.5-0.97x against F(2x2)'s 0.6-2.0x), backward-weight included."""
    N, C, H, W = x_shape
    if op == "conv2d_backward_weight":
        return "winograd"
    if op == "conv2d_backward_input":  # the Winograd conv runs on dy and produces the H x W planes
        P, Q = H, W
    else:
        P, Q = H + 2 * padding[0] - 2, W + 2 * padding[1] - 2
    t4 = 36 * (-(-P // 4)) * (-(-Q // 4))
    t2 = 16 * (-(-P // 2)) * (-(-Q // 2))
    return "winograd4" if t4 <= t2 else "winograd"


def _block_tiles(T, per_tile, CK, nt, budget, vec=0):
    """Tiles per block: about `budget` bytes of V + M workspace (cache-sized blocks), but at least
    MIN_TILES and, for OpenBLAS (vec == 0), CK / CK_PER_TILE (OpenBLAS packs the K x C filter
    matrix on every call, so big filter matrices want wide blocks); for fcw_bgemm a multiple of
    its vector width `vec` between OWN_TILES. With several threads about 4 blocks per thread
    (balance on a busy machine) unless that drops below the minimum."""
    if vec:
        eff = max(MIN_TILES, OWN_TILES[0])
        nb = max(eff, min(OWN_TILES[1], budget // per_tile // vec * vec))
    else:
        eff = max(MIN_TILES, CK // CK_PER_TILE)
        nb = max(eff, budget // per_tile)
    if nt > 1:
        nb = min(nb, max(-(-T // (4 * nt)), min(eff, -(-T // nt))))
        if vec and nb > vec:
            nb = nb // vec * vec
    return max(1, min(nb, T))


def backward_input(dy, w, padding, dx, int nt, int tile=0):
    """dx[:] = the input gradient of a 3x3 / stride 1 / dilation 1 / groups 1 conv with padding
    p <= 2: the forward conv of dy with the flipped, transposed filters and padding 2 - p, which
    the filter transform reads straight from w (no flipped copy: 2.8 ms for res5's 512x512
    filters).  tile 2, 4, or 0 for ``pick``'s choice (arguments validated by the caller)."""
    if tile == 0:
        tile = 4 if pick("conv2d_backward_input", dx.shape, w.shape, padding) == "winograd4" else 2
    return forward(dy, w, None, (2 - padding[0], 2 - padding[1]), dx, nt, tile, True)


def forward(x, w, b, padding, y, int nt, int tile=2, bint flip=False):
    """y[:] = conv2d(x, w, b) for 3x3 / stride 1 / dilation 1 / groups 1 through F(tile x tile, 3x3),
    tile 2 or 4; with flip, w is (C, K, 3, 3) and the conv uses w[c, k] reversed in both taps as
    filter (k, c) (backward-input) (arguments validated by the caller)."""
    if tile not in (2, 4):
        raise ValueError(f"winograd: tile must be 2 or 4, got {tile}")
    cdef int na = (tile + 2) * (tile + 2)
    cdef WG g
    g.N, g.C, g.H, g.W = x.shape
    g.K = w.shape[1] if flip else w.shape[0]
    cdef Py_ssize_t fk = w.shape[0] if flip else 0, fc = w.shape[1] if flip else 0
    g.P, g.Q = y.shape[2], y.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + tile - 1) // tile
    g.tw = (g.Q + tile - 1) // tile
    g.T = <Py_ssize_t>g.N * g.th * g.tw
    per_tile = na * (g.C + g.K) * x.itemsize
    g.own = g.K * g.C <= OWN_GEMM_MAX_KC
    nb = _block_tiles(g.T, per_tile, g.K * g.C, nt, BLOCK_BYTES, (64 // x.itemsize) if g.own else 0)
    cdef int nt_all = nt  # the filter transform splits over filters, not tile blocks
    cdef bint fused = g.own and g.K * g.C >= FUSE_MIN_KC and g.T <= nt * FUSE_TILES
    cdef bint wide = fused or (nt > 1 and g.T <= nt * WIDE_TILES and g.K * g.C >= WIDE_MIN_KC)
    cdef int kg = max(4, FUSE_FILTERS // g.C // 4 * 4) if fused else 0
    cdef bint fuse_out = FUSE_OUTPUTS
    cdef Py_ssize_t ulstride = na * (<Py_ssize_t>kg * g.C + SKEW)
    if wide:
        nb = g.T
        nt_run = 1
    else:
        nt_run = nt = max(1, min(nt, -(-g.T // nb)))
    g.nb = nb
    U = _scratch(0, (nt * ulstride) if fused else na * (g.K * g.C + SKEW), x.dtype)
    cdef Py_ssize_t wstride = na * ((g.C + g.K) * nb + 2 * SKEW)
    work = _scratch(1, nt_run * wstride, x.dtype)
    cdef Py_ssize_t mofs = <Py_ssize_t>na * (g.C * nb + SKEW)  # M after V in a block's workspace
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* pw = cnp.PyArray_DATA(w)
    cdef void* pu = cnp.PyArray_DATA(U)
    cdef void* pb = NULL if b is None else cnp.PyArray_DATA(b)
    cdef void* py = cnp.PyArray_DATA(y)
    cdef void* pk = cnp.PyArray_DATA(work)
    cdef Py_ssize_t KC = <Py_ssize_t>g.K * g.C
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            if not fused:
                _filters(<float*>pw, <float*>pu, KC, tile, nt_all, fk, fc)
            if wide:
                _run_wide(<float*>px, <float*>pu, <float*>pb, <float*>py, <float*>pk, <float*>pk + mofs, &g, tile, nt,
                          <float*>pw, fk, fc, <float*>pu, ulstride, kg, fuse_out)
            else:
                _run(<float*>px, <float*>pu, <float*>pb, <float*>py, <float*>pk, wstride, &g, tile, nt)
        else:
            if not fused:
                _filters(<double*>pw, <double*>pu, KC, tile, nt_all, fk, fc)
            if wide:
                _run_wide(<double*>px, <double*>pu, <double*>pb, <double*>py, <double*>pk, <double*>pk + mofs, &g, tile, nt,
                          <double*>pw, fk, fc, <double*>pu, ulstride, kg, fuse_out)
            else:
                _run(<double*>px, <double*>pu, <double*>pb, <double*>py, <double*>pk, wstride, &g, tile, nt)
    return y


# ---------------------------------------------------------------- backward-weight
# Y = A^T (U . V) A per tile gives dU_xi[k, c] = sum over tiles dM_xi[k, t] V_xi[c, t] with
# dM = A dY A^T (dY the dy tile, zero past the output edge), then dw = G^T dU G.
cdef inline void _gemm_tn(int m, int n, int k, real* a, int lda, real* b, int ldb, real* c, int ldc) noexcept nogil:
    """C += A^T B (column-major)."""
    cdef char ta = b'T', tb = b'N'
    cdef real one = 1
    if real is float:
        sgemm(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &one, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &one, c, &ldc)


cdef void _run_bw(const real* x, const real* dy, real* dU, Py_ssize_t ustride, real* work, Py_ssize_t wstride,
                  const WG* g, int nt, int tile) noexcept nogil:
    """dU (nt private copies, ustride apart) += sum over tile blocks of D_xi V_xi^T."""
    cdef Py_ssize_t blk, nblk = (g.T + g.nb - 1) // g.nb, t0
    cdef int nb, xi, tid = 0, na = (tile + 2) * (tile + 2)
    cdef real* V
    cdef real* D
    with parallel(num_threads=nt):
        tid = threadid()
        for blk in prange(nblk, schedule="dynamic"):
            t0 = blk * g.nb
            nb = <int>min(<Py_ssize_t>g.nb, g.T - t0)
            V = work + tid * wstride
            D = V + <Py_ssize_t>na * (g.C * g.nb + SKEW)
            _inputs(x, V, g, t0, nb, tile, 0, g.C)
            _dy_tiles(dy, D, g, t0, nb, tile)
            for xi in range(na):
                _gemm_tn(g.C, g.K, nb, V + xi * (<Py_ssize_t>g.C * nb + SKEW), nb,
                         D + xi * (<Py_ssize_t>g.K * nb + SKEW), nb,
                         dU + tid * ustride + xi * (<Py_ssize_t>g.K * g.C + SKEW), g.C)


def backward_weight(dy, x, padding, dw, int nt, int tile=0):
    """dw[:] = the weight gradient of a 3x3 / stride 1 / dilation 1 / groups 1 conv through
    F(tile x tile, 3x3), tile 2 or 4, or 0: F(4x4) where the conv has at least
    BW_F4_MIN_PIXELS output pixels and ``pick`` takes F(4x4) for its forward, else F(2x2)
    (arguments validated by the caller).  1-thread ratios against PyTorch, F(2x2) / F(4x4):
    res2 1.52 / 2.33, res3 1.37 / 1.75, CIFAR ResNet-20 16 / 32 / 64 channels 1.66 / 1.99,
    1.68 / 1.83, 1.00 / 1.15; ties or losses on few pixels: res4 1.60 / 1.62, res5 1.92 / 1.77
    (there F(4x4)'s 36 K C dU per thread also costs more on two threads)."""
    if tile == 0:
        tile = 4 if (dy.shape[0] * dy.shape[2] * dy.shape[3] >= BW_F4_MIN_PIXELS
                     and pick("conv2d_forward", x.shape, dw.shape, padding) == "winograd4") else 2
    if tile not in (2, 4):
        raise ValueError(f"winograd: tile must be 2 or 4, got {tile}")
    cdef int na = (tile + 2) * (tile + 2)
    cdef WG g
    g.N, g.C, g.H, g.W = x.shape
    g.K = dy.shape[1]
    g.P, g.Q = dy.shape[2], dy.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + tile - 1) // tile
    g.tw = (g.Q + tile - 1) // tile
    g.T = <Py_ssize_t>g.N * g.th * g.tw
    g.own = 0
    per_tile = na * (g.C + g.K) * x.itemsize
    nb = _block_tiles(g.T, per_tile, g.K * g.C, nt, BW_BLOCK_BYTES)
    g.nb = nb
    cdef int nt_all = nt  # the filter-gradient transform splits over filters, not tile blocks
    nt = max(1, min(nt, -(-g.T // nb)))
    cdef Py_ssize_t ustride = na * (g.K * g.C + SKEW)
    cdef Py_ssize_t wstride = na * ((g.C + g.K) * nb + 2 * SKEW)
    dU = _scratch(0, nt * ustride, x.dtype).reshape(nt, ustride)
    dU.fill(0)
    work = _scratch(1, nt * wstride, x.dtype)
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* pdy = cnp.PyArray_DATA(dy)
    cdef void* pu = cnp.PyArray_DATA(dU)
    cdef void* pk = cnp.PyArray_DATA(work)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _run_bw(<float*>px, <float*>pdy, <float*>pu, ustride, <float*>pk, wstride, &g, nt, tile)
        else:
            _run_bw(<double*>px, <double*>pdy, <double*>pu, ustride, <double*>pk, wstride, &g, nt, tile)
    cdef void* pdw = cnp.PyArray_DATA(dw)
    cdef Py_ssize_t KC = <Py_ssize_t>g.K * g.C
    cdef int ncopy = nt
    with nogil:
        if is32:
            _filter_grads(<float*>pu, ustride, ncopy, <float*>pdw, KC, tile, nt_all)
        else:
            _filter_grads(<double*>pu, ustride, ncopy, <double*>pdw, KC, tile, nt_all)
    return dw
