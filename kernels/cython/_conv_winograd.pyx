# cython: language_level=3
"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution (3x3, stride 1, dilation 1, groups 1).

Called by the ``conv`` module's entry points (``algo='winograd'`` or
``'winograd4'``, or ``'auto'``) after they validated the arguments; not public
entry points.  Backward-input runs ``forward`` on dy with the flipped,
transposed filters; ``backward_weight`` (F(2x2, 3x3) only) transforms dy tiles
(A dY A^T) and input tiles, does 16 GEMMs reducing over tiles, then G^T dU G.

Each 4x4 input tile d (stride 2) becomes V = B^T d B, each filter g becomes
U = G g G^T, and for each of the 16 Winograd components xi a GEMM
M_xi (K x tiles) = U_xi (K x C) V_xi (C x tiles) replaces the 3x3 products;
the 2x2 output tile is A^T M A.  That is 16 multiplications per 4 outputs
instead of 36 (2.25x fewer).  Tiles are processed in blocks (OpenMP over
blocks, one single-threaded GEMM per component and block).

F(4x4, 3x3) (``tile=4``, conv algo ``'winograd4'``) uses 6x6 tiles: 36
multiplications per 16 outputs (4x fewer than direct); its transforms cost
more, it only ties F(2x2, 3x3) on 56x56 planes and loses on small ones (mostly
edge tiles), so ``'auto'`` picks F(2x2, 3x3).  Runs of interior tiles are
transformed through local buffers so those loops vectorise.

Measured error (float32, ||y - ref|| / ||ref|| against float64 PyTorch, random
normal data, forward, backward-input and backward-weight): F(2x2, 3x3) 2e-7 to 5e-7 on the
ResNet 3x3 layers (C = 64..512) and the tests -- its transforms only add and
halve, so it is as accurate as the GEMM path; F(4x4, 3x3) 1e-6 to 2.5e-6.
Both are far inside the contract's 1e-3 bound for Winograd.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()

ctypedef fused real:
    float
    double

# The 16 component matrices sit SKEW elements off a multiple of the block size,
# so the 16 streams of a transform do not all land in the same cache sets.
cdef Py_ssize_t SKEW = 40

ctypedef struct WG:
    int N, C, H, W, K, P, Q, ph, pw, th, tw, nb
    Py_ssize_t T


cdef inline void _gemm(int m, int n, int k, real* a, int lda, real* b, int ldb, real* c, int ldc) noexcept nogil:
    cdef char t = b'N'
    cdef real one = 1, zero = 0
    if real is float:
        sgemm(&t, &t, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)
    else:
        dgemm(&t, &t, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)


cdef void _filters(const real* w, real* U, Py_ssize_t kc_total) noexcept nogil:
    """U[xi][k][c] = (G g G^T)[xi] for every filter g = w[k, c] (components KC apart)."""
    cdef Py_ssize_t kc, KC = kc_total + SKEW
    cdef int i, j
    cdef const real* g
    cdef real t[12]
    cdef real a, b, c
    for kc in range(kc_total):
        g = w + kc * 9
        for j in range(3):  # t = G g  (4 x 3)
            t[j] = g[j]
            t[3 + j] = (g[j] + g[3 + j] + g[6 + j]) * <real>0.5
            t[6 + j] = (g[j] - g[3 + j] + g[6 + j]) * <real>0.5
            t[9 + j] = g[6 + j]
        for i in range(4):  # U = t G^T  (4 x 4)
            a = t[3 * i]
            b = t[3 * i + 1]
            c = t[3 * i + 2]
            U[(4 * i + 0) * KC + kc] = a
            U[(4 * i + 1) * KC + kc] = (a + b + c) * <real>0.5
            U[(4 * i + 2) * KC + kc] = (a - b + c) * <real>0.5
            U[(4 * i + 3) * KC + kc] = c


DEF NJ = 16  # tiles per vectorised run


cdef void _in_run2(const real* r0, Py_ssize_t W, real* v, Py_ssize_t cs, int nj) noexcept nogil:
    """Input transform of nj side-by-side interior tiles (top-left at r0, r0 + 2, ...) into
    v[xi * cs + j]; computed into a local buffer first so the loop vectorises (no aliasing)."""
    cdef real buf[16 * NJ]
    cdef const real* r1 = r0 + W
    cdef const real* r2 = r1 + W
    cdef const real* r3 = r2 + W
    cdef Py_ssize_t j, b, xi
    cdef real e0, e1, e2, e3, f0, f1, f2, f3, g0, g1, g2, g3, h0, h1, h2, h3
    for j in range(nj):
        b = 2 * j
        e0 = r0[b] - r2[b]
        e1 = r0[b + 1] - r2[b + 1]
        e2 = r0[b + 2] - r2[b + 2]
        e3 = r0[b + 3] - r2[b + 3]
        f0 = r1[b] + r2[b]
        f1 = r1[b + 1] + r2[b + 1]
        f2 = r1[b + 2] + r2[b + 2]
        f3 = r1[b + 3] + r2[b + 3]
        g0 = r2[b] - r1[b]
        g1 = r2[b + 1] - r1[b + 1]
        g2 = r2[b + 2] - r1[b + 2]
        g3 = r2[b + 3] - r1[b + 3]
        h0 = r1[b] - r3[b]
        h1 = r1[b + 1] - r3[b + 1]
        h2 = r1[b + 2] - r3[b + 2]
        h3 = r1[b + 3] - r3[b + 3]
        buf[0 * NJ + j] = e0 - e2
        buf[1 * NJ + j] = e1 + e2
        buf[2 * NJ + j] = e2 - e1
        buf[3 * NJ + j] = e1 - e3
        buf[4 * NJ + j] = f0 - f2
        buf[5 * NJ + j] = f1 + f2
        buf[6 * NJ + j] = f2 - f1
        buf[7 * NJ + j] = f1 - f3
        buf[8 * NJ + j] = g0 - g2
        buf[9 * NJ + j] = g1 + g2
        buf[10 * NJ + j] = g2 - g1
        buf[11 * NJ + j] = g1 - g3
        buf[12 * NJ + j] = h0 - h2
        buf[13 * NJ + j] = h1 + h2
        buf[14 * NJ + j] = h2 - h1
        buf[15 * NJ + j] = h1 - h3
    for xi in range(16):
        for j in range(nj):
            v[xi * cs + j] = buf[xi * NJ + j]


cdef void _out_run2(const real* mp, Py_ssize_t ks, real* y0, Py_ssize_t Q, int nj, real bv) noexcept nogil:
    """Output transform of nj side-by-side whole 2x2 tiles (components mp[xi * ks + j])."""
    cdef real o[4 * NJ]
    cdef real* y1 = y0 + Q
    cdef Py_ssize_t j
    cdef real s0, s1, s2, s3, t0, t1, t2, t3
    for j in range(nj):
        s0 = mp[j] + mp[4 * ks + j] + mp[8 * ks + j]
        s1 = mp[ks + j] + mp[5 * ks + j] + mp[9 * ks + j]
        s2 = mp[2 * ks + j] + mp[6 * ks + j] + mp[10 * ks + j]
        s3 = mp[3 * ks + j] + mp[7 * ks + j] + mp[11 * ks + j]
        t0 = mp[4 * ks + j] - mp[8 * ks + j] - mp[12 * ks + j]
        t1 = mp[5 * ks + j] - mp[9 * ks + j] - mp[13 * ks + j]
        t2 = mp[6 * ks + j] - mp[10 * ks + j] - mp[14 * ks + j]
        t3 = mp[7 * ks + j] - mp[11 * ks + j] - mp[15 * ks + j]
        o[j] = s0 + s1 + s2
        o[NJ + j] = s1 - s2 - s3
        o[2 * NJ + j] = t0 + t1 + t2
        o[3 * NJ + j] = t1 - t2 - t3
    for j in range(nj):
        y0[2 * j] = o[j] + bv
        y0[2 * j + 1] = o[NJ + j] + bv
        y1[2 * j] = o[2 * NJ + j] + bv
        y1[2 * j + 1] = o[3 * NJ + j] + bv


cdef void _inputs(const real* x, real* V, const WG* g, Py_ssize_t t0, int nb) noexcept nogil:
    """V[xi][c][i] = (B^T d B)[xi] for the 4x4 tile d of tile t0 + i, channel c."""
    cdef int i, c, n, ti, tj, h0, w0, a, b, r, run
    cdef int jhi = (g.W - 4 + g.pw) // 2 + 1 if g.W - 4 + g.pw >= 0 else 0  # tiles tj < jhi end inside x
    cdef Py_ssize_t hw = <Py_ssize_t>g.H * g.W, cs = <Py_ssize_t>g.C * nb + SKEW
    cdef const real* xp
    cdef real* v
    cdef real d[16]
    cdef real e[16]
    for c in range(g.C):
        n = t0 // (g.th * g.tw)
        r = t0 % (g.th * g.tw)
        ti = r // g.tw
        tj = r % g.tw
        v = V + c * nb
        i = 0
        while i < nb:
            xp = x + (<Py_ssize_t>n * g.C + c) * hw
            h0 = 2 * ti - g.ph
            w0 = 2 * tj - g.pw
            run = min(NJ, min(jhi - tj, min(g.tw - tj, nb - i)))
            if h0 >= 0 and h0 + 4 <= g.H and w0 >= 0 and run >= 2:  # a run of interior tiles
                _in_run2(xp + h0 * g.W + w0, g.W, v + i, cs, run)
                i = i + run
                tj = tj + run
                if tj == g.tw:
                    tj = 0
                    ti = ti + 1
                    if ti == g.th:
                        ti = 0
                        n = n + 1
                continue
            if h0 >= 0 and w0 >= 0 and h0 + 4 <= g.H and w0 + 4 <= g.W:
                xp = xp + h0 * g.W + w0
                for a in range(4):
                    for b in range(4):
                        d[4 * a + b] = xp[a * g.W + b]
            else:
                for a in range(4):
                    for b in range(4):
                        if 0 <= h0 + a < g.H and 0 <= w0 + b < g.W:
                            d[4 * a + b] = xp[(h0 + a) * g.W + w0 + b]
                        else:
                            d[4 * a + b] = 0
            for b in range(4):  # e = B^T d (columns)
                e[b] = d[b] - d[8 + b]
                e[4 + b] = d[4 + b] + d[8 + b]
                e[8 + b] = d[8 + b] - d[4 + b]
                e[12 + b] = d[4 + b] - d[12 + b]
            for a in range(4):  # V = e B (rows)
                v[(4 * a + 0) * cs + i] = e[4 * a] - e[4 * a + 2]
                v[(4 * a + 1) * cs + i] = e[4 * a + 1] + e[4 * a + 2]
                v[(4 * a + 2) * cs + i] = e[4 * a + 2] - e[4 * a + 1]
                v[(4 * a + 3) * cs + i] = e[4 * a + 1] - e[4 * a + 3]
            i = i + 1
            tj = tj + 1  # next tile
            if tj == g.tw:
                tj = 0
                ti = ti + 1
                if ti == g.th:
                    ti = 0
                    n = n + 1


cdef void _outputs(const real* M, const real* bias, real* y, const WG* g, Py_ssize_t t0, int nb) noexcept nogil:
    """y tile = A^T M A (+ bias), clipped at the bottom/right edges."""
    cdef int i, k, n, ti, tj, p0, q0, a, r, xi, run
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q
    cdef const real* mp
    cdef real m[16]
    cdef real s[8]
    cdef real o[4]
    cdef real bv
    cdef real* yp
    for k in range(g.K):
        bv = bias[k] if bias != NULL else 0
        n = t0 // (g.th * g.tw)
        r = t0 % (g.th * g.tw)
        ti = r // g.tw
        tj = r % g.tw
        mp = M + k * nb
        i = 0
        while i < nb:
            run = min(NJ, min(g.Q // 2 - tj, min(g.tw - tj, nb - i)))
            if 2 * ti + 2 <= g.P and run >= 2:  # a run of whole 2x2 output tiles
                _out_run2(mp + i, ks, y + (<Py_ssize_t>n * g.K + k) * pq + 2 * ti * g.Q + 2 * tj, g.Q, run, bv)
                i = i + run
                tj = tj + run
                if tj == g.tw:
                    tj = 0
                    ti = ti + 1
                    if ti == g.th:
                        ti = 0
                        n = n + 1
                continue
            for xi in range(16):
                m[xi] = mp[xi * ks + i]
            for a in range(4):  # s = A^T m  (2 x 4)
                s[a] = m[a] + m[4 + a] + m[8 + a]
                s[4 + a] = m[4 + a] - m[8 + a] - m[12 + a]
            for a in range(2):  # o = s A  (2 x 2)
                o[2 * a] = s[4 * a] + s[4 * a + 1] + s[4 * a + 2]
                o[2 * a + 1] = s[4 * a + 1] - s[4 * a + 2] - s[4 * a + 3]
            p0 = 2 * ti
            q0 = 2 * tj
            yp = y + (<Py_ssize_t>n * g.K + k) * pq + p0 * g.Q + q0
            yp[0] = o[0] + bv
            if q0 + 1 < g.Q:
                yp[1] = o[1] + bv
            if p0 + 1 < g.P:
                yp[g.Q] = o[2] + bv
                if q0 + 1 < g.Q:
                    yp[g.Q + 1] = o[3] + bv
            i = i + 1
            tj = tj + 1
            if tj == g.tw:
                tj = 0
                ti = ti + 1
                if ti == g.th:
                    ti = 0
                    n = n + 1


include "_conv_winograd4.pxi"


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
            if tile == 2:
                _inputs(x, V, g, t0, nb)
            else:
                _inputs4(x, V, g, t0, nb)
            for xi in range(na):
                _gemm(nb, g.K, g.C, V + xi * (<Py_ssize_t>g.C * nb + SKEW), nb,
                      <real*>U + xi * (<Py_ssize_t>g.K * g.C + SKEW), g.C, M + xi * (<Py_ssize_t>g.K * nb + SKEW), nb)
            if tile == 2:
                _outputs(M, bias, y, g, t0, nb)
            else:
                _outputs4(M, bias, y, g, t0, nb)


BLOCK_BYTES = 4 << 20  # V + M workspace per thread
MIN_TILES = 64  # smallest block when splitting for balance (keeps the GEMMs efficient)
GEMM_TILES = 128  # blocks at least this many tiles even past BLOCK_BYTES (GEMM m >= 128)


def pick(op, x_shape, w_shape, padding):
    """Algorithm for a 3x3 / stride-1 conv that ``conv``'s 'auto' found Winograd-eligible:
    'winograd' (F(2x2)), 'winograd4' (F(4x4); not for conv2d_backward_weight) or 'gemm'."""
    return "winograd"


def _block_tiles(T, per_tile, nt):
    """Tiles per block: BLOCK_BYTES of workspace but at least GEMM_TILES; with several
    threads, about 4 blocks per thread (balance on a busy machine) unless that drops
    below MIN_TILES."""
    nb = max(BLOCK_BYTES // per_tile, GEMM_TILES)
    if nt > 1:
        nb = min(nb, max(-(-T // (4 * nt)), min(MIN_TILES, -(-T // nt))))
    return max(1, min(nb, T))


def forward(x, w, b, padding, y, int nt, int tile=2):
    """y[:] = conv2d(x, w, b) for 3x3 / stride 1 / dilation 1 / groups 1 through F(tile x tile, 3x3),
    tile 2 or 4 (arguments validated by the caller)."""
    if tile not in (2, 4):
        raise ValueError(f"winograd: tile must be 2 or 4, got {tile}")
    cdef int na = (tile + 2) * (tile + 2)
    cdef WG g
    g.N, g.C, g.H, g.W = x.shape
    g.K = w.shape[0]
    g.P, g.Q = y.shape[2], y.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + tile - 1) // tile
    g.tw = (g.Q + tile - 1) // tile
    g.T = <Py_ssize_t>g.N * g.th * g.tw
    per_tile = na * (g.C + g.K) * x.itemsize
    # blocks: within BLOCK_BYTES, and about 4 per thread (balance on a busy machine) unless tiny
    nb = _block_tiles(g.T, per_tile, nt)
    g.nb = nb
    nt = max(1, min(nt, -(-g.T // nb)))
    U = np.empty(na * (g.K * g.C + SKEW), dtype=x.dtype)
    cdef Py_ssize_t wstride = na * ((g.C + g.K) * nb + 2 * SKEW)
    work = np.empty(nt * wstride, dtype=x.dtype)
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
            if tile == 2:
                _filters(<float*>pw, <float*>pu, KC)
            else:
                _filters4(<float*>pw, <float*>pu, KC)
            _run(<float*>px, <float*>pu, <float*>pb, <float*>py, <float*>pk, wstride, &g, tile, nt)
        else:
            if tile == 2:
                _filters(<double*>pw, <double*>pu, KC)
            else:
                _filters4(<double*>pw, <double*>pu, KC)
            _run(<double*>px, <double*>pu, <double*>pb, <double*>py, <double*>pk, wstride, &g, tile, nt)
    return y


# ---------------------------------------------------------------- backward-weight, F(2x2, 3x3)
# Y = A^T (U . V) A per tile gives dU_xi[k, c] = sum over tiles dM_xi[k, t] V_xi[c, t] with
# dM = A dY A^T (dY the 2x2 dy tile, zero past the output edge), then dw = G^T dU G.
cdef void _dy_tiles(const real* dy, real* D, const WG* g, Py_ssize_t t0, int nb) noexcept nogil:
    """D[xi][k][i] = (A dY A^T)[xi] for the 2x2 dy tile of tile t0 + i."""
    cdef int i, k, n, ti, tj, r, p0, q0, a
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q
    cdef const real* yp
    cdef real y00, y01, y10, y11
    cdef real t[8]
    for k in range(g.K):
        n = t0 // (g.th * g.tw)
        r = t0 % (g.th * g.tw)
        ti = r // g.tw
        tj = r % g.tw
        for i in range(nb):
            p0 = 2 * ti
            q0 = 2 * tj
            yp = dy + (<Py_ssize_t>n * g.K + k) * pq + p0 * g.Q + q0
            y00 = yp[0]
            y01 = yp[1] if q0 + 1 < g.Q else 0
            y10 = yp[g.Q] if p0 + 1 < g.P else 0
            y11 = yp[g.Q + 1] if p0 + 1 < g.P and q0 + 1 < g.Q else 0
            t[0] = y00  # T = A dY (4 x 2)
            t[1] = y01
            t[2] = y00 + y10
            t[3] = y01 + y11
            t[4] = y00 - y10
            t[5] = y01 - y11
            t[6] = -y10
            t[7] = -y11
            for a in range(4):  # dM = T A^T (4 x 4)
                D[(4 * a + 0) * ks + k * nb + i] = t[2 * a]
                D[(4 * a + 1) * ks + k * nb + i] = t[2 * a] + t[2 * a + 1]
                D[(4 * a + 2) * ks + k * nb + i] = t[2 * a] - t[2 * a + 1]
                D[(4 * a + 3) * ks + k * nb + i] = -t[2 * a + 1]
            tj = tj + 1
            if tj == g.tw:
                tj = 0
                ti = ti + 1
                if ti == g.th:
                    ti = 0
                    n = n + 1


cdef inline void _gemm_tn(int m, int n, int k, real* a, int lda, real* b, int ldb, real* c, int ldc) noexcept nogil:
    """C += A^T B (column-major)."""
    cdef char ta = b'T', tb = b'N'
    cdef real one = 1
    if real is float:
        sgemm(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &one, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &one, c, &ldc)


cdef void _run_bw(const real* x, const real* dy, real* dU, Py_ssize_t ustride, real* work, Py_ssize_t wstride,
                  const WG* g, int nt) noexcept nogil:
    """dU (nt private copies, ustride apart) += sum over tile blocks of D_xi V_xi^T."""
    cdef Py_ssize_t blk, nblk = (g.T + g.nb - 1) // g.nb, t0
    cdef int nb, xi, tid = 0
    cdef real* V
    cdef real* D
    with parallel(num_threads=nt):
        tid = threadid()
        for blk in prange(nblk, schedule="dynamic"):
            t0 = blk * g.nb
            nb = <int>min(<Py_ssize_t>g.nb, g.T - t0)
            V = work + tid * wstride
            D = V + <Py_ssize_t>16 * (g.C * g.nb + SKEW)
            _inputs(x, V, g, t0, nb)
            _dy_tiles(dy, D, g, t0, nb)
            for xi in range(16):
                _gemm_tn(g.C, g.K, nb, V + xi * (<Py_ssize_t>g.C * nb + SKEW), nb,
                         D + xi * (<Py_ssize_t>g.K * nb + SKEW), nb,
                         dU + tid * ustride + xi * (<Py_ssize_t>g.K * g.C + SKEW), g.C)


cdef void _filter_grads(const real* dU, real* dw, Py_ssize_t kc_total) noexcept nogil:
    """dw[k, c] = G^T dU[:, k, c] G (4x4 -> 3x3)."""
    cdef Py_ssize_t kc, KC = kc_total + SKEW
    cdef int a, b
    cdef real u[16]
    cdef real r[12]
    for kc in range(kc_total):
        for a in range(16):
            u[a] = dU[a * KC + kc]
        for b in range(4):  # R = G^T dU (3 x 4)
            r[b] = u[b] + <real>0.5 * (u[4 + b] + u[8 + b])
            r[4 + b] = <real>0.5 * (u[4 + b] - u[8 + b])
            r[8 + b] = <real>0.5 * (u[4 + b] + u[8 + b]) + u[12 + b]
        for a in range(3):  # dw = R G (3 x 3)
            dw[kc * 9 + 3 * a] = r[4 * a] + <real>0.5 * (r[4 * a + 1] + r[4 * a + 2])
            dw[kc * 9 + 3 * a + 1] = <real>0.5 * (r[4 * a + 1] - r[4 * a + 2])
            dw[kc * 9 + 3 * a + 2] = <real>0.5 * (r[4 * a + 1] + r[4 * a + 2]) + r[4 * a + 3]


def backward_weight(dy, x, padding, dw, int nt):
    """dw[:] = the weight gradient of a 3x3 / stride 1 / dilation 1 / groups 1 conv through
    F(2x2, 3x3) (arguments validated by the caller)."""
    cdef WG g
    g.N, g.C, g.H, g.W = x.shape
    g.K = dy.shape[1]
    g.P, g.Q = dy.shape[2], dy.shape[3]
    g.ph, g.pw = padding
    g.th = (g.P + 1) // 2
    g.tw = (g.Q + 1) // 2
    g.T = <Py_ssize_t>g.N * g.th * g.tw
    per_tile = 16 * (g.C + g.K) * x.itemsize
    # blocks: within BLOCK_BYTES, and about 4 per thread (balance on a busy machine) unless tiny
    nb = _block_tiles(g.T, per_tile, nt)
    g.nb = nb
    nt = max(1, min(nt, -(-g.T // nb)))
    cdef Py_ssize_t ustride = 16 * (g.K * g.C + SKEW)
    cdef Py_ssize_t wstride = 16 * ((g.C + g.K) * nb + 2 * SKEW)
    dU = np.zeros((nt, ustride), dtype=x.dtype)
    work = np.empty(nt * wstride, dtype=x.dtype)
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* pdy = cnp.PyArray_DATA(dy)
    cdef void* pu = cnp.PyArray_DATA(dU)
    cdef void* pk = cnp.PyArray_DATA(work)
    cdef bint is32 = x.dtype == np.float32
    with nogil:
        if is32:
            _run_bw(<float*>px, <float*>pdy, <float*>pu, ustride, <float*>pk, wstride, &g, nt)
        else:
            _run_bw(<double*>px, <double*>pdy, <double*>pu, ustride, <double*>pk, wstride, &g, nt)
    dUs = dU.sum(axis=0) if nt > 1 else dU[0]
    cdef void* pus = cnp.PyArray_DATA(dUs)
    cdef void* pdw = cnp.PyArray_DATA(dw)
    cdef Py_ssize_t KC = <Py_ssize_t>g.K * g.C
    with nogil:
        if is32:
            _filter_grads(<float*>pus, <float*>pdw, KC)
        else:
            _filter_grads(<double*>pus, <double*>pdw, KC)
    return dw
