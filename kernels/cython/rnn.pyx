# cython: language_level=3
# distutils: libraries = m
"""LSTM and GRU cells on the CPU (PyTorch's formulas and gate order).

The products x W_ih^T and h W_hh^T are two BLAS GEMMs (NumPy matmul); all the
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

from .. import _checks as C
from ..reference.rnn import _check_cell, _weight_grads
from ._threads import num_threads

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
    cdef cnp.ndarray gates = np.matmul(x, w_ih.T)
    cdef cnp.ndarray gh = np.matmul(h, w_hh.T)
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
    dx = d @ w_ih
    dh = d @ w_hh
    return (dx, dh, dc) + _weight_grads(d, d, x, h, has_bias)


# ---- GRU -------------------------------------------------------------------------------------

def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """-> (h_new, saved); saved (N, 4H) = r, z, n, hn with hn = W_hn h + b_hn."""
    op = "gru_cell_forward"
    _cpu(op, x=x, h=h, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    x, h, _, w_ih, w_hh, b_ih, b_hh, (N, I, H) = _check_cell(op, 3, x, h, w_ih, w_hh, b_ih, b_hh)
    dt = x.dtype
    cdef cnp.ndarray gi = np.matmul(x, w_ih.T)
    cdef cnp.ndarray gh = np.matmul(h, w_hh.T)
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
    dx = dgi @ w_ih
    dh = dgh @ w_hh
    dh += dhz
    return (dx, dh) + _weight_grads(dgi, dgh, x, h, has_bias)
