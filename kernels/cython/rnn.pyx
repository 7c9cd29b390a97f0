# cython: language_level=3
# distutils: libraries = m
"""LSTM and GRU cells on the CPU (PyTorch's formulas and gate order).

The products x W_ih^T and h W_hh^T are two BLAS GEMMs (``_mm``: SciPy's BLAS on our OpenMP
threads, not NumPy's matmul and its separate BLAS thread pool); all the
element-wise gate math then runs as ONE fused pass over the (N, G*H) gate
block (loops in ``_rnn_impl.h``: sigmoid/tanh, cell update, the saved state),
instead of the reference's dozen NumPy passes with temporaries.  The
backward likewise computes every gate gradient in one fused pass, then the
four GEMMs.  Validation and return conventions are the reference's.

The gate loops call expf/tanhf; they vectorize through glibc's libmvec
(declared SIMD in ``_rnn_impl.h``; glibc's libm.so linker script pulls in
libmvec as needed, so ``libraries = m`` links it and stays portable).
Without it (scalar libm calls) this module was 2x SLOWER than the reference.
Measured (float32, one core, min of 200 interleaved runs; ms, ours /
reference / torch, torch's backward column is its forward+backward):
  LSTM N=64 I=128 H=256   fwd 0.91 / 1.11 / 0.98   bwd 1.30 / 1.31 / 2.77
  LSTM N=256 I=64 H=128   fwd 0.69 / 1.21 / 0.84   bwd 1.15 / 1.26 / 2.36
  GRU  N=64 I=128 H=256   fwd 0.57 / 0.73 / 0.60   bwd 0.92 / 0.93 / 1.82
  GRU  N=256 I=64 H=128   fwd 0.50 / 0.85 / 0.61   bwd 0.89 / 0.96 / 1.75
The backward is bound by its four GEMMs (1.05 of the 1.12 ms in the first
row), so fusing its gate math gains only 1-8%.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

from .. import _checks as C
from ..reference.rnn import _check_cell
from ._threads import blas_threads, num_threads

__all__ = ["lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward"]

cdef extern from "_rnn_impl.h" nogil:
    void fc_lstm_fwd_f32(float*, const float*, const float*, const float*, float*, float*, Py_ssize_t, Py_ssize_t,
                         int)
    void fc_lstm_fwd_f64(double*, const double*, const double*, const double*, double*, double*, Py_ssize_t,
                         Py_ssize_t, int)
    void fc_lstm_bwd_f32(const float*, const float*, const float*, const float*, const float*, float*, float*,
                         Py_ssize_t, Py_ssize_t, int)
    void fc_lstm_bwd_f64(const double*, const double*, const double*, const double*, const double*, double*,
                         double*, Py_ssize_t, Py_ssize_t, int)
    void fc_gru_fwd_f32(const float*, const float*, const float*, const float*, const float*, float*, float*,
                        Py_ssize_t, Py_ssize_t, int)
    void fc_gru_fwd_f64(const double*, const double*, const double*, const double*, const double*, double*,
                        double*, Py_ssize_t, Py_ssize_t, int)
    void fc_gru_bwd_f32(const float*, const float*, const float*, float*, float*, float*, Py_ssize_t, Py_ssize_t,
                        int)
    void fc_gru_bwd_f64(const double*, const double*, const double*, double*, double*, double*, Py_ssize_t,
                        Py_ssize_t, int)

cdef Py_ssize_t GRAIN = 65536  # gate elements per thread: below this an OpenMP barrier (and its clash with
# BLAS threads on a busy machine) costs more than the split saves


# ---- GEMMs on OUR thread pool ----------------------------------------------------------------
# NumPy's matmul runs on NumPy's OpenBLAS, which keeps its own pool of threads.  In a process
# where OpenMP threads are still spinning after a kernel (PyTorch's, or ours under OpenMP's
# default wait policy) that pool fights them for the cores: the LSTM 64x256x512 forward took
# 6 ms in `fastconv bench` where its arithmetic needs 1, and the 32x128x128 cells 4 ms where
# they need 0.05.  Here the output columns are split over our OpenMP threads, each calling
# SciPy's BLAS single-threaded (conv's scheme), so the process has one pool.
MM_SPLIT_FLOPS = 1 << 22  # below this one thread, no parallel region


cdef void _mm_run(bint ta, bint tb, int M, int N, int K, void* pa, int lda, void* pb, int ldb, void* pc,
                  int nblk, int bw, int nt, bint f32) noexcept nogil:
    cdef int i, n0, nn
    cdef char opa = b'T' if tb else b'N', opb = b'T' if ta else b'N'
    cdef float one32 = 1, zero32 = 0
    cdef double one64 = 1, zero64 = 0
    for i in prange(nblk, num_threads=nt, schedule="static"):
        n0 = i * bw
        nn = min(bw, N - n0)
        if f32:
            sgemm(&opa, &opb, &nn, &M, &K, &one32, <float*>pb + (<Py_ssize_t>n0 * ldb if tb else n0), &ldb,
                  <float*>pa, &lda, &zero32, <float*>pc + n0, &N)
        else:
            dgemm(&opa, &opb, &nn, &M, &K, &one64, <double*>pb + (<Py_ssize_t>n0 * ldb if tb else n0), &ldb,
                  <double*>pa, &lda, &zero64, <double*>pc + n0, &N)


def _mm(a, b, bint ta=False, bint tb=False):
    """op(a) @ op(b) for C-contiguous 2-D float arrays of one dtype (op: transpose when ta / tb),
    a new C-contiguous array; column blocks over OpenMP threads, BLAS single-threaded."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    cdef int M = a.shape[1] if ta else a.shape[0], K = a.shape[0] if ta else a.shape[1]
    cdef int N = b.shape[0] if tb else b.shape[1]
    out = np.empty((M, N), a.dtype)
    if M == 0 or N == 0:
        return out
    if K == 0:
        out.fill(0)
        return out
    cdef int nt = max(1, min(num_threads(2 * <Py_ssize_t>M * N * K, MM_SPLIT_FLOPS), max(1, N // 16)))
    cdef int bw = N if nt == 1 else ((N + nt - 1) // nt + 15) // 16 * 16
    cdef int nblk = (N + bw - 1) // bw
    cdef void* pa = cnp.PyArray_DATA(a)
    cdef void* pb = cnp.PyArray_DATA(b)
    cdef void* pc = cnp.PyArray_DATA(out)
    cdef int lda = a.shape[1], ldb = b.shape[1]
    cdef bint f32 = a.dtype == np.float32
    with blas_threads("scipy", 1):
        with nogil:
            _mm_run(ta, tb, M, N, K, pa, lda, pb, ldb, pc, nblk, bw, min(nt, nblk), f32)
    return out


def _weight_grads(dgi, dgh, x, h, has_bias):
    """(dw_ih, dw_hh, db_ih, db_hh) from the pre-activation gate gradients (the reference's, on _mm)."""
    dw_ih = _mm(dgi, x, True, False)
    dw_hh = _mm(dgh, h, True, False)
    if not has_bias:
        return dw_ih, dw_hh, None, None
    return dw_ih, dw_hh, dgi.sum(axis=0), dgh.sum(axis=0)


def _cpu(op, **arrays):
    for name, a in arrays.items():
        if a is not None and type(a) is not np.ndarray:
            raise TypeError(f"{op}: argument '{name}' is a {type(a).__name__}; this CPU kernel needs a NumPy array")


def _bias(b, n, dtype):
    return np.zeros(n, dtype) if b is None else b


def _nt(N, H, G):
    return max(1, min(num_threads(N * G * H, GRAIN), N))


# ---- LSTM ------------------------------------------------------------------------------------

def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, c_new, gates); gates (N, 4H) holds the activated i, f, g, o."""
    op = "lstm_cell_forward"
    _cpu(op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    x, h, c, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 4, x, h, w_ih, w_hh, b_ih, b_hh, c)
    dt = x.dtype
    if b_ih is None or b_hh is None:
        b = _bias(b_ih if b_hh is None else b_hh, 4 * H, dt)
    else:
        b = b_ih + b_hh
    cdef cnp.ndarray gates = _mm(x, w_ih, False, True)
    cdef cnp.ndarray gh = _mm(h, w_hh, False, True)
    cdef cnp.ndarray cc = c, bb = b
    cdef cnp.ndarray c_new = np.empty((N, H), dt)
    cdef cnp.ndarray h_new = np.empty((N, H), dt)
    cdef Py_ssize_t n_ = N, h_ = H
    cdef void* ptr[8]
    cdef Py_ssize_t k
    cdef int nt = _nt(N, H, 4)
    if N and H:
        P = [gates, gh, bb, cc, c_new, h_new]
        for k in range(6):
            ptr[k] = cnp.PyArray_DATA(<cnp.ndarray>P[k])
        if dt == np.float32:
            with nogil:
                fc_lstm_fwd_f32(<float*>ptr[0], <float*>ptr[1], <float*>ptr[2], <float*>ptr[3],
                                <float*>ptr[4], <float*>ptr[5], n_, h_, nt)
        else:
            with nogil:
                fc_lstm_fwd_f64(<double*>ptr[0], <double*>ptr[1], <double*>ptr[2], <double*>ptr[3],
                                <double*>ptr[4], <double*>ptr[5], n_, h_, nt)
    return h_new, c_new, gates


def lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new, has_bias=True):
    """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh); db_* are None when not has_bias (db_ih == db_hh)."""
    op = "lstm_cell_backward"
    _cpu(op, dh_new=dh_new, dc_new=dc_new, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, gates=gates, c_new=c_new)
    x, h, c, w_ih, w_hh, _, _, (N, I, H) = _check_cell(op, 4, x, h, w_ih, w_hh, None, None, c)
    dh_new = C.array(op, "dh_new", dh_new, ndim=2)
    dc_new = C.array(op, "dc_new", dc_new, ndim=2)
    gates = C.array(op, "gates", gates, ndim=2)
    c_new = C.array(op, "c_new", c_new, ndim=2)
    C.same_dtype(op, x=x, dh_new=dh_new, dc_new=dc_new, gates=gates, c_new=c_new)
    for name, a in (("dh_new", dh_new), ("dc_new", dc_new), ("c_new", c_new)):
        C.same_shape(op, name, a, "h", h)
    if gates.shape != (N, 4 * H):
        raise ValueError(f"{op}: 'gates' shape {tuple(gates.shape)} must be (N, 4*hidden_size) = ({N}, {4 * H})")
    dt = x.dtype
    cdef cnp.ndarray d = np.empty((N, 4 * H), dt)
    cdef cnp.ndarray dc = np.empty((N, H), dt)
    cdef cnp.ndarray a0 = dh_new, a1 = dc_new, a2 = gates, a3 = c, a4 = c_new
    cdef Py_ssize_t n_ = N, h_ = H
    cdef void* ptr[8]
    cdef Py_ssize_t k
    cdef int nt = _nt(N, H, 4)
    if N and H:
        P = [a0, a1, a2, a3, a4, d, dc]
        for k in range(7):
            ptr[k] = cnp.PyArray_DATA(<cnp.ndarray>P[k])
        if dt == np.float32:
            with nogil:
                fc_lstm_bwd_f32(<float*>ptr[0], <float*>ptr[1], <float*>ptr[2], <float*>ptr[3], <float*>ptr[4],
                                <float*>ptr[5], <float*>ptr[6], n_, h_, nt)
        else:
            with nogil:
                fc_lstm_bwd_f64(<double*>ptr[0], <double*>ptr[1], <double*>ptr[2], <double*>ptr[3],
                                <double*>ptr[4], <double*>ptr[5], <double*>ptr[6], n_, h_, nt)
    dx = _mm(d, w_ih)
    dh = _mm(d, w_hh)
    return (dx, dh, dc) + _weight_grads(d, d, x, h, has_bias)


# ---- GRU -------------------------------------------------------------------------------------

def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, saved); saved (N, 4H) = r, z, n, hn with hn = W_hn h + b_hn."""
    op = "gru_cell_forward"
    _cpu(op, x=x, h=h, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    x, h, _, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 3, x, h, w_ih, w_hh, b_ih, b_hh)
    dt = x.dtype
    cdef cnp.ndarray gi = _mm(x, w_ih, False, True)
    cdef cnp.ndarray gh = _mm(h, w_hh, False, True)
    cdef cnp.ndarray bi = _bias(b_ih, 3 * H, dt), bh = _bias(b_hh, 3 * H, dt), hh = h
    cdef cnp.ndarray saved = np.empty((N, 4 * H), dt)
    cdef cnp.ndarray h_new = np.empty((N, H), dt)
    cdef Py_ssize_t n_ = N, h_ = H
    cdef void* ptr[8]
    cdef Py_ssize_t k
    cdef int nt = _nt(N, H, 3)
    if N and H:
        P = [gi, gh, bi, bh, hh, saved, h_new]
        for k in range(7):
            ptr[k] = cnp.PyArray_DATA(<cnp.ndarray>P[k])
        if dt == np.float32:
            with nogil:
                fc_gru_fwd_f32(<float*>ptr[0], <float*>ptr[1], <float*>ptr[2], <float*>ptr[3], <float*>ptr[4],
                               <float*>ptr[5], <float*>ptr[6], n_, h_, nt)
        else:
            with nogil:
                fc_gru_fwd_f64(<double*>ptr[0], <double*>ptr[1], <double*>ptr[2], <double*>ptr[3],
                               <double*>ptr[4], <double*>ptr[5], <double*>ptr[6], n_, h_, nt)
    return h_new, saved


def gru_cell_backward(dh_new, x, h, w_ih, w_hh, saved, has_bias=True):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); db_* are None when not has_bias."""
    op = "gru_cell_backward"
    _cpu(op, dh_new=dh_new, x=x, h=h, w_ih=w_ih, w_hh=w_hh, saved=saved)
    x, h, _, w_ih, w_hh, _, _, (N, I, H) = _check_cell(op, 3, x, h, w_ih, w_hh, None, None)
    dh_new = C.array(op, "dh_new", dh_new, ndim=2)
    saved = C.array(op, "saved", saved, ndim=2)
    C.same_dtype(op, x=x, dh_new=dh_new, saved=saved)
    C.same_shape(op, "dh_new", dh_new, "h", h)
    if saved.shape != (N, 4 * H):
        raise ValueError(f"{op}: 'saved' shape {tuple(saved.shape)} must be (N, 4*hidden_size) = ({N}, {4 * H})")
    dt = x.dtype
    cdef cnp.ndarray dgi = np.empty((N, 3 * H), dt)
    cdef cnp.ndarray dgh = np.empty((N, 3 * H), dt)
    cdef cnp.ndarray dhz = np.empty((N, H), dt)
    cdef cnp.ndarray a0 = dh_new, a1 = h, a2 = saved
    cdef Py_ssize_t n_ = N, h_ = H
    cdef void* ptr[8]
    cdef Py_ssize_t k
    cdef int nt = _nt(N, H, 3)
    if N and H:
        P = [a0, a1, a2, dgi, dgh, dhz]
        for k in range(6):
            ptr[k] = cnp.PyArray_DATA(<cnp.ndarray>P[k])
        if dt == np.float32:
            with nogil:
                fc_gru_bwd_f32(<float*>ptr[0], <float*>ptr[1], <float*>ptr[2], <float*>ptr[3], <float*>ptr[4],
                               <float*>ptr[5], n_, h_, nt)
        else:
            with nogil:
                fc_gru_bwd_f64(<double*>ptr[0], <double*>ptr[1], <double*>ptr[2], <double*>ptr[3],
                               <double*>ptr[4], <double*>ptr[5], n_, h_, nt)
    dx = _mm(dgi, w_ih)
    dh = _mm(dgh, w_hh)
    dh += dhz
    return (dx, dh) + _weight_grads(dgi, dgh, x, h, has_bias)
