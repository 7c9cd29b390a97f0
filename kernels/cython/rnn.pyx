# cython: language_level=3
# distutils: libraries = m
"""LSTM and GRU cells on the CPU (PyTorch's formulas and gate order).

Each cell is ONE OpenMP region (two for the backward) with no NumPy temporaries
but one scratch: the hidden units are cut into one block per thread, and a
thread computes the GEMM rows of its block's gates, transposed, (G*H, N) =
W_ih x^T + W_hh h^T, then the fused gate math of its block (``_rnn_impl.h``:
sigmoid/tanh, cell update, the saved state, read through 16x16 tile
transposes) -- no barrier in between, since a block's gates need only its own
rows.  The backward's first region computes a block's gate gradients, bias
gradients (summed in the same loop) and its rows of dW_ih = d^T x and
dW_hh = d^T h; after the join, dx = d W_ih and dh = d W_hh are split by output
columns.

GEMMs: float32 on CPUs with AVX-512 use ``fc_mm_f32`` (``_mm_f32.h``), which
streams the weights unpacked as broadcast operands into 8x32 register tiles and
sums both products in the same registers -- OpenBLAS re-packs the weights on
every call, ~20% of the 64x256x512 LSTM forward (measured, one thread: that
kernel at 105-130 GFLOP/s where SciPy's sgemm gave 85-97 on the same shapes).
Otherwise (float64, older CPUs) SciPy's BLAS, called single-threaded from our
threads (``_rgemm``), in the orientation measured fastest for each product --
not NumPy's matmul, whose OpenBLAS copy keeps its own thread pool that fought
OpenMP threads still spinning after a kernel (6 ms for a 1 ms cell).

Validation is the reference's; arguments that are already C-contiguous NumPy
arrays of one float dtype and the right shapes skip it through a fast check
(the small cells take 0.1 ms, of which the reference's checks and the per-GEMM
Python wrappers were a third).

The gate loops call expf/tanhf; they vectorize through glibc's libmvec
(declared SIMD in ``_rnn_impl.h``; glibc's libm.so linker script pulls in
libmvec as needed, so ``libraries = m`` links it and stays portable).
Without it (scalar libm calls) this module was 2x SLOWER than the reference.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

from ..reference.rnn import _check_cell, _check_gru_backward, _check_lstm_backward
from ._threads import blas_threads, num_threads

__all__ = ["lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward"]

cdef extern from "_rnn_impl.h" nogil:
    void fc_lstm_fwd_f32(const float*, const float*, const float*, const float*, float*, float*, float*,
                         Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_lstm_fwd_f64(const double*, const double*, const double*, const double*, double*, double*, double*,
                         Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_lstm_bwd_f32(const float*, const float*, const float*, const float*, const float*, float*, float*,
                         float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_lstm_bwd_f64(const double*, const double*, const double*, const double*, const double*, double*,
                         double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_gru_fwd_f32(const float*, const float*, const float*, const float*, float*, float*,
                        Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_gru_fwd_f64(const double*, const double*, const double*, const double*, double*, double*,
                        Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    int fc_has_avx512()
    void fc_wx_f32(const float*, const float*, Py_ssize_t, const float*, const float*, Py_ssize_t, float*,
                   Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_mm_f32(const float*, Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t, Py_ssize_t,
                   const float*, Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t, Py_ssize_t,
                   float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int)
    void fc_gru_bwd_f32(const float*, const float*, const float*, float*, float*, float*, float*, float*,
                        Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)
    void fc_gru_bwd_f64(const double*, const double*, const double*, double*, double*, double*, double*, double*,
                        Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t)

CELL_SPLIT_FLOPS = 1 << 21  # GEMM flops per thread: below this a cell runs on one thread
cdef bint _WX = fc_has_avx512()  # float32 GEMMs by fc_mm_f32 (no weight packing) rather than BLAS


def _use_wx(flag):
    """Tests: switch the float32 GEMMs between fc_mm_f32 and BLAS; returns the previous setting."""
    global _WX
    prev = _WX
    _WX = bool(flag) and fc_has_avx512()
    return prev


# ---- row-major GEMM on a sub-block (called inside our OpenMP threads) ------------------------

cdef inline void* _at(void* p, Py_ssize_t k, bint f32) noexcept nogil:
    return <void*>(<char*>p + k * (4 if f32 else 8))


cdef void _rgemm(bint f32, bint ta, bint tb, int M, int N, int K, void* a, int lda, void* b, int ldb,
                 bint acc, void* c, int ldc) noexcept nogil:
    """Row-major C (M x N, row stride ldc) = op(a) @ op(b), or += when acc."""
    cdef char opa = b'T' if ta else b'N', opb = b'T' if tb else b'N'
    cdef float one32 = 1, beta32 = 1 if acc else 0
    cdef double one64 = 1, beta64 = 1 if acc else 0
    cdef Py_ssize_t i, j
    if M <= 0 or N <= 0:
        return
    if K <= 0:
        if not acc:
            for i in range(M):
                for j in range(N):
                    if f32:
                        (<float*>c)[i * ldc + j] = 0
                    else:
                        (<double*>c)[i * ldc + j] = 0
        return
    if f32:  # column-major C^T = op(b)^T op(a)^T
        sgemm(&opb, &opa, &N, &M, &K, &one32, <float*>b, &ldb, <float*>a, &lda, &beta32, <float*>c, &ldc)
    else:
        dgemm(&opb, &opa, &N, &M, &K, &one64, <double*>b, &ldb, <double*>a, &lda, &beta64, <double*>c, &ldc)


cdef struct Cell:
    bint f32
    int nb, ni, nh, ng          # N, I, H, gates
    bint wx                     # GEMMs by fc_mm_f32 (the forward's from xT, hT: x, h transposed)
    void* xT
    void* hT
    int nt, bw, nblk, cw, hw    # threads; hidden units per block, blocks; dx / dh columns per block
    void* x
    void* h
    void* w_ih
    void* w_hh
    void* p[12]                 # op-specific arrays (see each caller)


cdef void _fwd_gemms(Cell* s, void* gT, int j0, int j1, int gates_x, int gates_h) noexcept nogil:
    """gT (rows g*H+j0 : g*H+j1, N) = W_ih[those] x^T for the first gates_x gates, plus W_hh[those] h^T
    for the first gates_h gates (one call per gate block, one for all when whole).  Transposed
    output: with BLAS this orientation is 15-20% faster than x W^T at these shapes."""
    cdef int g, r0, rows = j1 - j0, H = s.nh, Nb = s.nb
    if s.wx:
        if rows == H:  # whole: the gates with both products, then those with x only
            fc_wx_f32(<float*>s.w_ih, <float*>s.xT, s.ni, <float*>s.w_hh, <float*>s.hT, H, <float*>gT, Nb,
                      0, gates_h * H)
            if gates_x > gates_h:
                fc_wx_f32(<float*>s.w_ih, <float*>s.xT, s.ni, <float*>s.w_hh, <float*>s.hT, 0, <float*>gT, Nb,
                          gates_h * H, gates_x * H)
            return
        for g in range(gates_x):
            r0 = g * H + j0
            fc_wx_f32(<float*>s.w_ih, <float*>s.xT, s.ni, <float*>s.w_hh, <float*>s.hT, H if g < gates_h else 0,
                      <float*>gT, Nb, r0, r0 + rows)
        return
    if rows == H:  # whole rows: one GEMM per operand
        _rgemm(s.f32, False, True, gates_x * H, Nb, s.ni, s.w_ih, s.ni, s.x, s.ni, False, gT, Nb)
        _rgemm(s.f32, False, True, gates_h * H, Nb, H, s.w_hh, H, s.h, H, True, gT, Nb)
        return
    for g in range(gates_x):
        r0 = g * H + j0
        _rgemm(s.f32, False, True, rows, Nb, s.ni, _at(s.w_ih, <Py_ssize_t>r0 * s.ni, s.f32), s.ni, s.x, s.ni,
               False, _at(gT, <Py_ssize_t>r0 * Nb, s.f32), Nb)
    for g in range(gates_h):
        r0 = g * H + j0
        _rgemm(s.f32, False, True, rows, Nb, H, _at(s.w_hh, <Py_ssize_t>r0 * H, s.f32), H, s.h, H,
               True, _at(gT, <Py_ssize_t>r0 * Nb, s.f32), Nb)


cdef void _dw(Cell* s, void* d, int ldd, void* a, int K, void* dw, int j0, int j1) noexcept nogil:
    """dw[g*H+j0 : g*H+j1] = d[:, those]^T a for every gate (a: (N, K))."""
    cdef int g, r0, H = s.nh
    if j0 == 0 and j1 == H:
        if s.wx:
            fc_mm_f32(<float*>d, 1, ldd, <float*>a, K, s.nb, <float*>d, 0, 0, <float*>a, 0, 0, <float*>dw, K, K,
                      0, s.ng * H, 0)
        else:
            _rgemm(s.f32, True, False, s.ng * H, K, s.nb, d, ldd, a, K, False, dw, K)
        return
    for g in range(s.ng):
        r0 = g * H + j0
        if s.wx:
            fc_mm_f32(<float*>d, 1, ldd, <float*>a, K, s.nb, <float*>d, 0, 0, <float*>a, 0, 0, <float*>dw, K, K,
                      r0, r0 + j1 - j0, 0)
        else:
            _rgemm(s.f32, True, False, j1 - j0, K, s.nb, _at(d, r0, s.f32), ldd, a, K, False,
                   _at(dw, <Py_ssize_t>r0 * K, s.f32), K)


cdef void _lstm_fwd_blk(Cell* s, int t) noexcept nogil:
    # p: gT (scratch, 4H x N), b_ih, b_hh, c, gates, c_new, h_new
    cdef int j0 = t * s.bw, j1 = min(s.nh, j0 + s.bw)
    if j0 >= j1:
        return
    _fwd_gemms(s, s.p[0], j0, j1, 4, 4)
    if s.f32:
        fc_lstm_fwd_f32(<float*>s.p[0], <float*>s.p[1], <float*>s.p[2], <float*>s.p[3], <float*>s.p[4],
                        <float*>s.p[5], <float*>s.p[6], s.nb, s.nh, j0, j1)
    else:
        fc_lstm_fwd_f64(<double*>s.p[0], <double*>s.p[1], <double*>s.p[2], <double*>s.p[3], <double*>s.p[4],
                        <double*>s.p[5], <double*>s.p[6], s.nb, s.nh, j0, j1)


cdef void _gru_fwd_blk(Cell* s, int t) noexcept nogil:
    # p: gT (scratch, 4H x N), b_ih, b_hh, saved, h_new
    cdef int j0 = t * s.bw, j1 = min(s.nh, j0 + s.bw), H = s.nh
    if j0 >= j1:
        return
    _fwd_gemms(s, s.p[0], j0, j1, 3, 2)  # r, z: both sides summed; n: x side
    if s.wx:  # h W_hn^T into gT's last quarter: W_hh's rows 2H + j land on gT's rows 3H + j
        fc_wx_f32(<float*>s.w_hh, <float*>s.hT, H, <float*>s.w_hh, <float*>s.hT, 0,
                  <float*>s.p[0] + <Py_ssize_t>H * s.nb, s.nb, 2 * H + j0, 2 * H + j1)
    else:
        _rgemm(s.f32, False, True, j1 - j0, s.nb, H, _at(s.w_hh, <Py_ssize_t>(2 * H + j0) * H, s.f32), H, s.h, H,
               False, _at(s.p[0], <Py_ssize_t>(3 * H + j0) * s.nb, s.f32), s.nb)
    if s.f32:
        fc_gru_fwd_f32(<float*>s.p[0], <float*>s.p[1], <float*>s.p[2], <float*>s.h, <float*>s.p[3],
                       <float*>s.p[4], s.nb, H, j0, j1)
    else:
        fc_gru_fwd_f64(<double*>s.p[0], <double*>s.p[1], <double*>s.p[2], <double*>s.h, <double*>s.p[3],
                       <double*>s.p[4], s.nb, H, j0, j1)


cdef void _lstm_bwd_blk(Cell* s, int t) noexcept nogil:
    # p: dh_new, dc_new, gates, c, c_new, d, dc, db, dw_ih, dw_hh
    cdef int j0 = t * s.bw, j1 = min(s.nh, j0 + s.bw)
    if j0 >= j1:
        return
    if s.f32:
        fc_lstm_bwd_f32(<float*>s.p[0], <float*>s.p[1], <float*>s.p[2], <float*>s.p[3], <float*>s.p[4],
                        <float*>s.p[5], <float*>s.p[6], <float*>s.p[7], s.nb, s.nh, j0, j1)
    else:
        fc_lstm_bwd_f64(<double*>s.p[0], <double*>s.p[1], <double*>s.p[2], <double*>s.p[3], <double*>s.p[4],
                        <double*>s.p[5], <double*>s.p[6], <double*>s.p[7], s.nb, s.nh, j0, j1)
    _dw(s, s.p[5], 4 * s.nh, s.x, s.ni, s.p[8], j0, j1)
    _dw(s, s.p[5], 4 * s.nh, s.h, s.nh, s.p[9], j0, j1)


cdef void _gru_bwd_blk(Cell* s, int t) noexcept nogil:
    # p: dh_new, saved, dgi, dgh, dh, dbi, dbh, dw_ih, dw_hh
    cdef int j0 = t * s.bw, j1 = min(s.nh, j0 + s.bw)
    if j0 >= j1:
        return
    if s.f32:
        fc_gru_bwd_f32(<float*>s.p[0], <float*>s.h, <float*>s.p[1], <float*>s.p[2], <float*>s.p[3],
                       <float*>s.p[4], <float*>s.p[5], <float*>s.p[6], s.nb, s.nh, j0, j1)
    else:
        fc_gru_bwd_f64(<double*>s.p[0], <double*>s.h, <double*>s.p[1], <double*>s.p[2], <double*>s.p[3],
                       <double*>s.p[4], <double*>s.p[5], <double*>s.p[6], s.nb, s.nh, j0, j1)
    _dw(s, s.p[2], 3 * s.nh, s.x, s.ni, s.p[7], j0, j1)
    _dw(s, s.p[3], 3 * s.nh, s.h, s.nh, s.p[8], j0, j1)


cdef void _dxdh_blk(Cell* s, int t, void* di, void* dg, void* dx, void* dh, bint acc_h) noexcept nogil:
    """dx[:, block t] = di W_ih[:, block t]; dh[:, block t] (+)= dg W_hh[:, block t]."""
    cdef int GH = s.ng * s.nh, c0 = t * s.cw, c1 = min(s.ni, c0 + s.cw)
    if c0 < c1:
        if s.wx:
            fc_mm_f32(<float*>di, GH, 1, <float*>s.w_ih + c0, s.ni, GH, <float*>di, 0, 0, <float*>s.w_ih, 0, 0,
                      <float*>dx + c0, s.ni, c1 - c0, 0, s.nb, 0)
        else:
            _rgemm(s.f32, False, False, s.nb, c1 - c0, GH, di, GH, _at(s.w_ih, c0, s.f32), s.ni, False,
                   _at(dx, c0, s.f32), s.ni)
    c0 = t * s.hw
    c1 = min(s.nh, c0 + s.hw)
    if c0 < c1:
        if s.wx:
            fc_mm_f32(<float*>dg, GH, 1, <float*>s.w_hh + c0, s.nh, GH, <float*>dg, 0, 0, <float*>s.w_hh, 0, 0,
                      <float*>dh + c0, s.nh, c1 - c0, 0, s.nb, acc_h)
        else:
            _rgemm(s.f32, False, False, s.nb, c1 - c0, GH, dg, GH, _at(s.w_hh, c0, s.f32), s.nh, acc_h,
                   _at(dh, c0, s.f32), s.nh)


cdef int _blocks(int n, int nb, int q):
    """Width (a multiple of q unless one block) of nb blocks covering n."""
    return n if nb <= 1 else max(q, ((n + nb - 1) // nb + q - 1) // q * q)


cdef int SUB_BLOCKS = 4  # fc_mm_f32 path: blocks per thread, handed out dynamically (below)


cdef Cell _cell(bint f32, int N, int I, int H, int G, x, h, w_ih, w_hh, double flops):
    """Pointers, dims and the split.  Threaded, the fc_mm_f32 path cuts the work into
    SUB_BLOCKS blocks per thread taken dynamically: on a shared machine one descheduled thread
    then holds up only its current block, not half the cell (the LSTM 64x256x512 forward had a
    9 ms median at 2 threads in `fastconv bench` on a loaded machine with one static block per
    thread); its kernels lose nothing on 32-row blocks.  BLAS keeps one block per thread."""
    cdef Cell s
    s.f32, s.nb, s.ni, s.nh, s.ng = f32, N, I, H, G
    s.x, s.h = cnp.PyArray_DATA(x), cnp.PyArray_DATA(h)
    s.w_ih, s.w_hh = cnp.PyArray_DATA(w_ih), cnp.PyArray_DATA(w_hh)
    s.wx, s.xT, s.hT = f32 and _WX, NULL, NULL
    cdef int nt = max(1, min(num_threads(flops, CELL_SPLIT_FLOPS), (H + 15) // 16))
    cdef int q = 32 if s.wx else 16
    s.bw = _blocks(H, nt * (SUB_BLOCKS if s.wx and nt > 1 else 1), q)
    s.nblk = (H + s.bw - 1) // s.bw if H else 0
    s.nt = max(1, min(nt, s.nblk))
    s.cw = _blocks(I, s.nblk, q)
    s.hw = _blocks(H, s.nblk, q)
    return s


cdef void _set(Cell* s, list arrays):
    cdef Py_ssize_t k
    for k in range(len(arrays)):
        s.p[k] = cnp.PyArray_DATA(<cnp.ndarray>arrays[k])


cdef void _transposed(Cell* s, x, h, list keep):
    """For fc_wx_f32 (float32 where the CPU has AVX-512): x and h transposed, kept alive in keep."""
    if s.wx:
        xT, hT = np.ascontiguousarray(x.T), np.ascontiguousarray(h.T)
        keep += [xT, hT]
        s.xT, s.hT = cnp.PyArray_DATA(xT), cnp.PyArray_DATA(hT)


# ---- fast argument check: already-right arrays skip the reference's validation ---------------

cdef object F32 = np.dtype(np.float32), F64 = np.dtype(np.float64)


cdef inline bint _ok(a, Py_ssize_t d0, Py_ssize_t d1, dt):
    """a is a C-contiguous NumPy array of dtype dt and shape (d0, d1), or (d0,) when d1 < 0."""
    if type(a) is not np.ndarray:
        return False
    cdef cnp.ndarray b = <cnp.ndarray>a
    if <object>cnp.PyArray_DESCR(b) is not dt or not cnp.PyArray_IS_C_CONTIGUOUS(b):
        return False
    if d1 < 0:
        return b.ndim == 1 and b.shape[0] == d0
    return b.ndim == 2 and b.shape[0] == d0 and b.shape[1] == d1


cdef tuple _fast_dims(x, h, int G, w_ih, w_hh, b_ih, b_hh):
    """(N, I, H, dtype) when x, h, w_*, b_* need no validation or copy; None otherwise."""
    if type(x) is not np.ndarray or type(h) is not np.ndarray:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x, ha = <cnp.ndarray>h
    if xa.ndim != 2 or ha.ndim != 2:
        return None
    dt = <object>cnp.PyArray_DESCR(xa)
    if dt is not F32 and dt is not F64:
        return None
    cdef Py_ssize_t N = xa.shape[0], I = xa.shape[1], H = ha.shape[1]
    if not (_ok(x, N, I, dt) and _ok(h, N, H, dt) and _ok(w_ih, G * H, I, dt) and _ok(w_hh, G * H, H, dt)
            and (b_ih is None or _ok(b_ih, G * H, -1, dt)) and (b_hh is None or _ok(b_hh, G * H, -1, dt))):
        return None
    return N, I, H, dt


def _cpu(op, **arrays):
    for name, a in arrays.items():
        if a is not None and type(a) is not np.ndarray:
            raise TypeError(f"{op}: argument '{name}' is a {type(a).__name__}; this CPU kernel needs a NumPy array")


def _zeros_for(b, n, dt):
    return np.zeros(n, dt) if b is None else b


# ---- LSTM ------------------------------------------------------------------------------------

def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, c_new, gates); gates (N, 4H) holds the activated i, f, g, o."""
    dims = _fast_dims(x, h, 4, w_ih, w_hh, b_ih, b_hh)
    if dims is None or not _ok(c, dims[0], dims[2], dims[3]):
        op = "lstm_cell_forward"
        _cpu(op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
        x, h, c, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 4, x, h, w_ih, w_hh, b_ih, b_hh, c)
        dt = x.dtype
    else:
        N, I, H, dt = dims
    gates = np.empty((N, 4 * H), dt)
    c_new = np.empty((N, H), dt)
    h_new = np.empty((N, H), dt)
    if N == 0 or H == 0:
        return h_new, c_new, gates
    cdef Cell s = _cell(dt == F32, N, I, H, 4, x, h, w_ih, w_hh, 8.0 * N * H * (I + H))
    keep = [np.empty((4 * H, N), dt), _zeros_for(b_ih, 4 * H, dt), _zeros_for(b_hh, 4 * H, dt), c, gates, c_new, h_new]
    _set(&s, keep)  # keep: the scratch and zero biases live until the kernel is done
    _transposed(&s, x, h, keep)
    cdef int t
    with blas_threads("scipy", None if s.wx else 1):  # fc_mm_f32 calls no BLAS
        with nogil:
            if s.nt == 1:
                for t in range(s.nblk):
                    _lstm_fwd_blk(&s, t)
            else:
                for t in prange(s.nblk, num_threads=s.nt, schedule="dynamic"):
                    _lstm_fwd_blk(&s, t)
    return h_new, c_new, gates


def lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new, has_bias=True):
    """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh); db_* are None when not has_bias (db_ih == db_hh)."""
    dims = _fast_dims(x, h, 4, w_ih, w_hh, None, None)
    if dims is None or not (_ok(c, dims[0], dims[2], dims[3]) and _ok(dh_new, dims[0], dims[2], dims[3])
                            and _ok(dc_new, dims[0], dims[2], dims[3]) and _ok(c_new, dims[0], dims[2], dims[3])
                            and _ok(gates, dims[0], 4 * dims[2], dims[3])):
        _cpu("lstm_cell_backward", dh_new=dh_new, dc_new=dc_new, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, gates=gates,
             c_new=c_new)
        dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new, (N, I, H) = _check_lstm_backward(
            dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new)
        dt = x.dtype
    else:
        N, I, H, dt = dims
    d = np.empty((N, 4 * H), dt)
    dc, dh, dx = np.empty((N, H), dt), np.empty((N, H), dt), np.empty((N, I), dt)
    dw_ih, dw_hh, db = np.empty((4 * H, I), dt), np.empty((4 * H, H), dt), np.empty(4 * H, dt)
    if H:
        _run_bwd(_cell(dt == F32, N, I, H, 4, x, h, w_ih, w_hh, 16.0 * N * H * (I + H)),
                 [dh_new, dc_new, gates, c, c_new, d, dc, db, dw_ih, dw_hh], d, d, dx, dh, False, True)
    if not has_bias:
        return dx, dh, dc, dw_ih, dw_hh, None, None
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy()


cdef _run_bwd(Cell s, list arrays, di, dg, dx, dh, bint acc_h, bint lstm):
    """Region 1: each block's gate and bias gradients and its rows of dW; region 2: dx, dh by columns."""
    _set(&s, arrays)
    cdef void* pdi = cnp.PyArray_DATA(di)
    cdef void* pdg = cnp.PyArray_DATA(dg)
    cdef void* pdx = cnp.PyArray_DATA(dx)
    cdef void* pdh = cnp.PyArray_DATA(dh)
    cdef int t
    with blas_threads("scipy", None if s.wx else 1):  # fc_mm_f32 calls no BLAS
        with nogil:
            if s.nt == 1:
                for t in range(s.nblk):
                    if lstm:
                        _lstm_bwd_blk(&s, t)
                    else:
                        _gru_bwd_blk(&s, t)
                for t in range(s.nblk):
                    _dxdh_blk(&s, t, pdi, pdg, pdx, pdh, acc_h)
            else:
                for t in prange(s.nblk, num_threads=s.nt, schedule="dynamic"):
                    if lstm:
                        _lstm_bwd_blk(&s, t)
                    else:
                        _gru_bwd_blk(&s, t)
                for t in prange(s.nblk, num_threads=s.nt, schedule="dynamic"):
                    _dxdh_blk(&s, t, pdi, pdg, pdx, pdh, acc_h)


# ---- GRU -------------------------------------------------------------------------------------

def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, saved); saved (N, 4H) = r, z, n, hn with hn = W_hn h + b_hn."""
    dims = _fast_dims(x, h, 3, w_ih, w_hh, b_ih, b_hh)
    if dims is None:
        op = "gru_cell_forward"
        _cpu(op, x=x, h=h, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
        x, h, _, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 3, x, h, w_ih, w_hh, b_ih, b_hh)
        dt = x.dtype
    else:
        N, I, H, dt = dims
    saved = np.empty((N, 4 * H), dt)
    h_new = np.empty((N, H), dt)
    if N == 0 or H == 0:
        return h_new, saved
    cdef Cell s = _cell(dt == F32, N, I, H, 3, x, h, w_ih, w_hh, 6.0 * N * H * (I + H))
    keep = [np.empty((4 * H, N), dt), _zeros_for(b_ih, 3 * H, dt), _zeros_for(b_hh, 3 * H, dt), saved, h_new]
    _set(&s, keep)
    _transposed(&s, x, h, keep)
    cdef int t
    with blas_threads("scipy", None if s.wx else 1):  # fc_mm_f32 calls no BLAS
        with nogil:
            if s.nt == 1:
                for t in range(s.nblk):
                    _gru_fwd_blk(&s, t)
            else:
                for t in prange(s.nblk, num_threads=s.nt, schedule="dynamic"):
                    _gru_fwd_blk(&s, t)
    return h_new, saved


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, saved, has_bias=True):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); db_* are None when not has_bias."""
    dims = _fast_dims(x, h, 3, w_ih, w_hh, None, None)
    if dims is None or not (_ok(dh_new, dims[0], dims[2], dims[3]) and _ok(saved, dims[0], 4 * dims[2], dims[3])):
        _cpu("gru_cell_backward", dh_new=dh_new, x=x, h=h, w_ih=w_ih, w_hh=w_hh, saved=saved)
        dh_new, x, h, w_ih, w_hh, saved, (N, I, H) = _check_gru_backward(dh_new, x, h, w_ih, w_hh, saved)
        dt = x.dtype
    else:
        N, I, H, dt = dims
    dgi, dgh = np.empty((N, 3 * H), dt), np.empty((N, 3 * H), dt)
    dh, dx = np.empty((N, H), dt), np.empty((N, I), dt)
    dw_ih, dw_hh = np.empty((3 * H, I), dt), np.empty((3 * H, H), dt)
    dbi, dbh = np.empty(3 * H, dt), np.empty(3 * H, dt)
    if H:
        _run_bwd(_cell(dt == F32, N, I, H, 3, x, h, w_ih, w_hh, 12.0 * N * H * (I + H)),
                 [dh_new, saved, dgi, dgh, dh, dbi, dbh, dw_ih, dw_hh], dgi, dgh, dx, dh, True, False)
    if not has_bias:
        return dx, dh, dw_ih, dw_hh, None, None
    return dx, dh, dw_ih, dw_hh, dbi, dbh
