# cython: language_level=3
# distutils: libraries = m
"""Softmax cross-entropy on the CPU: one pass per row for the plain (and most common) case.

Class-index targets without class weights or label smoothing -- a classifier's training
loss -- run here (loops in ``_loss_impl.h``): per row the max, log-sum-exp with libmvec's
SIMD exp and the log-probabilities, the picked -log p[t] summed in double; the backward
writes g * (softmax - onehot) row by row.
The reference's NumPy version makes ~15 array passes and temporaries, which is most of a
small model's loss time (LeNet, 64 x 10: 0.3 ms -> a few us).  Weighted or smoothed losses
are handed to the reference kernels, which implement every PyTorch option.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t

from .. import _checks as C
from ..reference import loss as _ref
from ..reference.loss import REDUCTIONS
from ._threads import num_threads

__all__ = ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]

cdef extern from "_loss_impl.h" nogil:
    void fc_ce_fwd_f32(const float*, const int64_t*, float*, double*, Py_ssize_t, Py_ssize_t, int64_t, int)
    void fc_ce_fwd_f64(const double*, const int64_t*, double*, double*, Py_ssize_t, Py_ssize_t, int64_t, int)
    void fc_ce_bwd_f32(const float*, const int64_t*, const float*, int, float*, Py_ssize_t, Py_ssize_t, int64_t, int)
    void fc_ce_bwd_f64(const double*, const int64_t*, const double*, int, double*, Py_ssize_t, Py_ssize_t, int64_t,
                       int)


cdef Py_ssize_t _bad_target(const int64_t[::1] t, Py_ssize_t K, int64_t ignore) noexcept nogil:
    """Position of the first target outside [0, K) that is not ignore_index, else -1."""
    cdef Py_ssize_t i
    for i in range(t.shape[0]):
        if t[i] != ignore and (t[i] < 0 or t[i] >= K):
            return i
    return -1


cdef inline void* _p(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


def _check(op, logits, target, label_smoothing, reduction, ignore_index):
    """The reference's argument checks for the unweighted case: (logits, target, ignore_index)."""
    logits = C.array(op, "logits", logits, ndim=2, device="cpu")
    target = C.array(op, "target", target, ndim=1, dtypes=C.INDEX_DTYPES, device="cpu")
    N, K = logits.shape
    if target.shape[0] != N:
        raise ValueError(f"{op}: 'target' shape {tuple(target.shape)} does not match batch size {N} of 'logits' shape {tuple(logits.shape)}")
    C.choice(op, "reduction", reduction, REDUCTIONS)
    ignore_index = C.integer(op, "ignore_index", ignore_index)
    if N and K == 0:
        raise ValueError(f"{op}: 'logits' has no classes (shape {tuple(logits.shape)})")
    target = target.astype(np.int64, copy=False)
    if N:
        bad = _bad_target(target, K, ignore_index)
        if bad >= 0:
            raise ValueError(f"{op}: 'target' holds class index {int(target[bad])} outside [0, {K}) "
                             f"(ignore_index={ignore_index})")
    return logits, target, ignore_index


def _plain(weight, label_smoothing, ignore_index, op):
    """True when this module's fast path applies (no class weights, no smoothing, an int64 ignore_index)."""
    eps = C.number(op, "label_smoothing", label_smoothing, minimum=0.0, maximum=1.0)
    small = isinstance(ignore_index, int) and -(1 << 63) <= ignore_index < (1 << 63)
    return weight is None and eps == 0.0 and small


def softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index):
    """(loss, log_probs) exactly as the reference (see there); fast path without weights/smoothing."""
    op = "softmax_cross_entropy_forward"
    if not _plain(weight, label_smoothing, ignore_index, op):
        return _ref.softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index)
    logits, target, ignore = _check(op, logits, target, label_smoothing, reduction, ignore_index)
    N, K = logits.shape
    dt = logits.dtype
    lp = np.empty_like(logits)
    loss = np.zeros(N, np.float64)
    cdef Py_ssize_t n_ = N, k_ = K
    cdef int64_t ig = ignore
    cdef int nt = max(1, min(num_threads(N * K, 16384), N))
    cdef void* px = _p(logits)
    cdef void* pt = _p(target)
    cdef void* pl = _p(lp)
    cdef double* ps = <double*>_p(loss)
    if N:
        if dt == np.float32:
            with nogil:
                fc_ce_fwd_f32(<float*>px, <int64_t*>pt, <float*>pl, ps, n_, k_, ig, nt)
        else:
            with nogil:
                fc_ce_fwd_f64(<double*>px, <int64_t*>pt, <double*>pl, ps, n_, k_, ig, nt)
    count = int(N - np.count_nonzero(target == ignore)) if N else 0
    total = float(loss.sum())
    if reduction == "none":
        return loss.astype(dt), lp
    if reduction == "sum":
        return np.asarray(total, dtype=dt), lp
    return np.asarray(total / count if count else np.nan, dtype=dt), lp


def softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction, ignore_index):
    """dlogits = g * (softmax - onehot(t)), 0 on ignored rows; g = dloss (/ count for 'mean')."""
    op = "softmax_cross_entropy_backward"
    if not _plain(weight, label_smoothing, ignore_index, op):
        return _ref.softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction,
                                                   ignore_index)
    log_probs, target, ignore = _check(op, log_probs, target, label_smoothing, reduction, ignore_index)
    N, K = log_probs.shape
    dt = log_probs.dtype
    dloss = C.array(op, "dloss", dloss, device="cpu")
    if dloss.dtype != dt:
        raise TypeError(f"{op}: mixed dtypes (dloss={dloss.dtype}, input={dt}); all must be the same")
    want = (N,) if reduction == "none" else ()
    if tuple(dloss.shape) != want:
        raise ValueError(f"{op}: argument 'dloss' must have shape {want} for reduction={reduction!r}, "
                         f"got {tuple(dloss.shape)}")
    g = dloss.reshape(-1)
    if reduction == "mean":
        count = int(N - np.count_nonzero(target == ignore)) if N else 0
        with np.errstate(invalid="ignore", divide="ignore"):
            g = (g / dt.type(count)).astype(dt)
    g = np.ascontiguousarray(g, dtype=dt)
    d = np.empty_like(log_probs)
    cdef int nt2 = max(1, min(num_threads(N * K, 16384), N))
    cdef int per_row = reduction == "none"
    cdef Py_ssize_t n2 = N, k2 = K
    cdef int64_t ig2 = ignore
    cdef void* plp = _p(log_probs)
    cdef void* pt2 = _p(target)
    cdef void* pg = _p(g)
    cdef void* pd = _p(d)
    if N:
        if dt == np.float32:
            with nogil:
                fc_ce_bwd_f32(<float*>plp, <int64_t*>pt2, <float*>pg, per_row, <float*>pd, n2, k2, ig2, nt2)
        else:
            with nogil:
                fc_ce_bwd_f64(<double*>plp, <int64_t*>pt2, <double*>pg, per_row, <double*>pd, n2, k2, ig2, nt2)
    return d
