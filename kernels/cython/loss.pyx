# cython: language_level=3
# distutils: libraries = m
"""Softmax cross-entropy on the CPU: one pass per row for the plain (and most common) case
(mse, huber and bce_with_logits live in _loss_reg.pyx and are re-exported here).

Class-index targets without class weights or label smoothing -- a classifier's training
loss -- run here (loops in ``_loss_impl.h``): per row the max, log-sum-exp (float32: the inlined
polynomial exp of ``_fast_exp.h``; float64: libmvec's) and the log-probabilities, the picked
-log p[t] summed in double; the backward writes g * (softmax - onehot) row by row.
Plain arguments skip the per-argument checks (see ``_check``): with the kernel at ~50 us for
256 x 1000 on two threads, Python overhead is a tenth of the call.
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
# mse, huber, bce_with_logits: element-wise losses, in their own module (_loss_reg.pyx)
from ._loss_reg import (bce_with_logits_backward, bce_with_logits_forward, huber_backward,  # noqa: F401
                        huber_forward, mse_backward, mse_forward)

__all__ = ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
           "mse_forward", "mse_backward", "huber_forward", "huber_backward",
           "bce_with_logits_forward", "bce_with_logits_backward"]

cdef extern from "_loss_impl.h" nogil:
    void fc_ce_fwd_f32(const float*, const int64_t*, float*, double*, Py_ssize_t, Py_ssize_t, int64_t, int)
    void fc_ce_fwd_f64(const double*, const int64_t*, double*, double*, Py_ssize_t, Py_ssize_t, int64_t, int)
    void fc_ce_bwd_f32(const float*, const int64_t*, const float*, int, float*, Py_ssize_t, Py_ssize_t, int64_t, int)
    void fc_ce_bwd_f64(const double*, const int64_t*, const double*, int, double*, Py_ssize_t, Py_ssize_t, int64_t,
                       int)


cdef Py_ssize_t _bad_target(const int64_t* t, Py_ssize_t N, Py_ssize_t K, int64_t ignore,
                            Py_ssize_t* count) noexcept nogil:
    """Position of the first target outside [0, K) that is not ignore_index, else -1; *count: the
    targets that are not ignore_index."""
    cdef Py_ssize_t i, c = 0
    for i in range(N):
        if t[i] != ignore:
            if t[i] < 0 or t[i] >= K:
                return i
            c += 1
    count[0] = c
    return -1


cdef inline void* _p(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


_F32, _F64, _I64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)


def _check(op, logits, target, label_smoothing, reduction, ignore_index):
    """The reference's argument checks for the unweighted case: (logits, target, ignore_index,
    number of targets that are not ignore_index)."""
    if not (type(logits) is np.ndarray and type(target) is np.ndarray and logits.ndim == 2 and target.ndim == 1
            and (logits.dtype is _F32 or logits.dtype is _F64) and target.dtype is _I64
            and logits.flags.c_contiguous and target.flags.c_contiguous and target.shape[0] == logits.shape[0]
            and (reduction == "mean" or reduction == "sum" or reduction == "none") and type(ignore_index) is int
            and (logits.shape[1] > 0 or logits.shape[0] == 0)):
        # the checks below would pass every plain call as is; they run (and copy) only off it:
        # ~4 us of the ~8 us per-call overhead of a 256 x 1000 forward (~70 us at 2 threads)
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
    cdef cnp.ndarray t = target
    cdef Py_ssize_t count = 0, bad = _bad_target(<int64_t*>cnp.PyArray_DATA(t), t.shape[0], logits.shape[1],
                                                 ignore_index, &count)
    if bad >= 0:
        raise ValueError(f"{op}: 'target' holds class index {int(target[bad])} outside [0, {logits.shape[1]}) "
                         f"(ignore_index={ignore_index})")
    return logits, target, ignore_index, count


def _plain(weight, label_smoothing, ignore_index, op):
    """True when this module's fast path applies (no class weights, no smoothing, an int64 ignore_index)."""
    if (weight is None and (type(label_smoothing) is float or type(label_smoothing) is int) and label_smoothing == 0
            and type(ignore_index) is int and -(1 << 63) <= ignore_index < (1 << 63)):
        return True
    eps = C.number(op, "label_smoothing", label_smoothing, minimum=0.0, maximum=1.0)
    small = isinstance(ignore_index, int) and -(1 << 63) <= ignore_index < (1 << 63)
    return weight is None and eps == 0.0 and small


def softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index):
    """(loss, log_probs) exactly as the reference (see there); fast path without weights/smoothing."""
    op = "softmax_cross_entropy_forward"
    if not _plain(weight, label_smoothing, ignore_index, op):
        return _ref.softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index)
    logits, target, ignore, count = _check(op, logits, target, label_smoothing, reduction, ignore_index)
    N, K = logits.shape
    dt = logits.dtype
    lp = np.empty_like(logits)
    loss = np.empty(N, np.float64)  # every row written (0 where ignored)
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
    if reduction == "none":
        return loss.astype(dt), lp
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(n_):
        total += ps[i]
    if reduction == "sum":
        return np.asarray(total, dtype=dt), lp
    return np.asarray(total / count if count else np.nan, dtype=dt), lp


def softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction, ignore_index):
    """dlogits = g * (softmax - onehot(t)), 0 on ignored rows; g = dloss (/ count for 'mean')."""
    op = "softmax_cross_entropy_backward"
    if not _plain(weight, label_smoothing, ignore_index, op):
        return _ref.softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction,
                                                   ignore_index)
    log_probs, target, ignore, count = _check(op, log_probs, target, label_smoothing, reduction, ignore_index)
    N, K = log_probs.shape
    dt = log_probs.dtype
    if not (type(dloss) is np.ndarray and dloss.dtype is dt):  # else the checks would pass as is
        dloss = C.array(op, "dloss", dloss, device="cpu")
    if dloss.dtype != dt:
        raise TypeError(f"{op}: mixed dtypes (dloss={dloss.dtype}, input={dt}); all must be the same")
    want = (N,) if reduction == "none" else ()
    if tuple(dloss.shape) != want:
        raise ValueError(f"{op}: argument 'dloss' must have shape {want} for reduction={reduction!r}, "
                         f"got {tuple(dloss.shape)}")
    g = dloss.reshape(-1)
    if reduction == "mean" and count:  # count 0: every row is ignored and gets 0 whatever g is
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
