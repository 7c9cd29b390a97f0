# cython: language_level=3
# distutils: libraries = m
"""Element-wise losses on the CPU: mse, huber and bce_with_logits, forward and backward.

Re-exported by ``loss.pyx`` (the family module the dispatcher imports).  One pass over the
inputs in C (``_loss_reg_impl.h``): the reduced losses never materialise the per-element loss,
and each block of 4096 elements is summed in double, the block sums added in order, so a result
does not depend on the thread count.  The reference needs 3-8 NumPy passes and temporaries.
Plain arguments (C-contiguous NumPy arrays of one float dtype, a str reduction) skip the
per-argument checks, which they would pass as is; everything else goes through
``kernels/_checks.py`` as in the reference (copying non-contiguous arrays).
"""
import numpy as np
cimport numpy as cnp

from .. import _checks as C
from ..reference.loss import REDUCTIONS
from ._threads import num_threads

__all__ = ["mse_forward", "mse_backward", "huber_forward", "huber_backward",
           "bce_with_logits_forward", "bce_with_logits_backward"]

cdef extern from "_loss_reg_impl.h" nogil:
    void fc_mse_fwd_f32(const float*, const float*, float, float, float*, double*, Py_ssize_t, int)
    void fc_mse_fwd_f64(const double*, const double*, double, double, double*, double*, Py_ssize_t, int)
    void fc_hub_fwd_f32(const float*, const float*, float, float, float*, double*, Py_ssize_t, int)
    void fc_hub_fwd_f64(const double*, const double*, double, double, double*, double*, Py_ssize_t, int)
    void fc_mse_bwd_f32(const float*, const float*, const float*, int, float, float*, Py_ssize_t, int)
    void fc_mse_bwd_f64(const double*, const double*, const double*, int, double, double*, Py_ssize_t, int)
    void fc_hub_bwd_f32(const float*, const float*, const float*, int, float, float*, Py_ssize_t, int)
    void fc_hub_bwd_f64(const double*, const double*, const double*, int, double, double*, Py_ssize_t, int)
    void fc_bce_fwd_f32(const float*, const float*, const float*, const float*, Py_ssize_t, float*, double*,
                        Py_ssize_t, int)
    void fc_bce_fwd_f64(const double*, const double*, const double*, const double*, Py_ssize_t, double*, double*,
                        Py_ssize_t, int)
    void fc_bce_bwd_f32(const float*, const float*, const float*, const float*, Py_ssize_t, const float*, int,
                        float*, Py_ssize_t, int)
    void fc_bce_bwd_f64(const double*, const double*, const double*, const double*, Py_ssize_t, const double*, int,
                        double*, Py_ssize_t, int)

DEF RB = 4096     # elements per reduction block (FC_RB)
DEF NBUF = 64     # block sums kept on the stack (n <= 256K)
DEF GRAIN = 32768  # elements per extra thread

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
cdef object _empty64 = np.empty(0, np.float64)


cdef inline void* _p(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


cdef inline int _threads(Py_ssize_t n):
    if n < 2 * GRAIN:  # skip the config lookup on small calls
        return 1
    return max(1, min(num_threads(n, GRAIN), (n + RB - 1) // RB))


def _pair(op, a_name, a, b_name, b, reduction):
    """(a, b) checked as the reference's ``_pair`` + reduction check; plain calls pass as is."""
    if not (type(a) is np.ndarray and type(b) is np.ndarray and (a.dtype is _F32 or a.dtype is _F64)
            and b.dtype is a.dtype and a.shape == b.shape and a.flags.c_contiguous and b.flags.c_contiguous
            and type(reduction) is str and (reduction == "mean" or reduction == "sum" or reduction == "none")):
        a = C.array(op, a_name, a, device="cpu")
        b = C.array(op, b_name, b, device="cpu")
        C.same_dtype(op, **{a_name: a, b_name: b})
        C.same_shape(op, a_name, a, b_name, b)
        C.choice(op, "reduction", reduction, REDUCTIONS)
    return a, b


def _grad(op, dloss, reduction, shape, dt):
    """dloss checked (dtype, shape () or the input's for 'none'), C-contiguous."""
    if not (type(dloss) is np.ndarray and dloss.dtype is dt and dloss.flags.c_contiguous):
        dloss = np.asarray(C.array(op, "dloss", dloss, device="cpu"), order="C")  # NumPy scalars too
        if dloss.dtype != dt:
            raise TypeError(f"{op}: mixed dtypes (dloss={dloss.dtype}, input={dt}); all must be the same")
    want = shape if reduction == "none" else ()
    if dloss.shape != want:
        raise ValueError(f"{op}: argument 'dloss' must have shape {tuple(want)} for reduction={reduction!r}, "
                         f"got {tuple(dloss.shape)}")
    return dloss


def _delta(op, delta):
    if type(delta) is float and delta > 0 and delta != float("inf"):
        return delta
    return C.number(op, "delta", delta, minimum=0.0, min_inclusive=False)


cdef object _reduce(double* bsum, Py_ssize_t n, object reduction, object dt):
    cdef double total = 0
    cdef Py_ssize_t b, nb = (n + RB - 1) // RB
    for b in range(nb):
        total += bsum[b]
    if reduction == "sum":
        return np.asarray(total, dtype=dt)
    return np.asarray(total / n if n else np.nan, dtype=dt)


cdef double[:] _bufs(Py_ssize_t n):
    return np.empty((n + RB - 1) // RB, np.float64)


# ---- mse / huber ----------------------------------------------------------------------------

cdef object _pair_fwd(int kind, object op, object pred, object target, double delta, object reduction):
    """kind 0: mse, 1: huber."""
    pred, target = _pair(op, "pred", pred, "target", target, reduction)
    dt = pred.dtype
    cdef Py_ssize_t n = pred.size
    cdef int nt = _threads(n), f32 = dt is _F32
    cdef double stack[NBUF]
    cdef double* bs = stack
    cdef double[:] heap
    cdef void* po = NULL
    out = None
    if reduction == "none":
        out = np.empty(pred.shape, dt)
        po = _p(out)
    elif (n + RB - 1) // RB > NBUF:
        heap = _bufs(n)
        bs = &heap[0]
    cdef void* pp = _p(pred)
    cdef void* pq = _p(target)
    cdef float hf = <float>(0.5 * delta)
    if n:
        with nogil:
            if kind == 0 and f32:
                fc_mse_fwd_f32(<float*>pp, <float*>pq, 0, 0, <float*>po, bs, n, nt)
            elif kind == 0:
                fc_mse_fwd_f64(<double*>pp, <double*>pq, 0, 0, <double*>po, bs, n, nt)
            elif f32:
                fc_hub_fwd_f32(<float*>pp, <float*>pq, <float>delta, hf, <float*>po, bs, n, nt)
            else:
                fc_hub_fwd_f64(<double*>pp, <double*>pq, delta, 0.5 * delta, <double*>po, bs, n, nt)
    if out is not None:
        return out
    return _reduce(bs, n, reduction, dt)


cdef void* _g(cnp.ndarray dloss, object reduction, Py_ssize_t n, int f32, int* per_elem, float* gf, double* gd):
    """The upstream gradient for the C loop: dloss's data ('none': per element; 'sum': one value)
    or, for 'mean', dloss / n divided in the input's dtype like the reference, in *gf / *gd."""
    per_elem[0] = reduction == "none"
    cdef void* p = _p(dloss)
    if reduction != "mean":
        return p
    if f32:
        gf[0] = (<float*>p)[0] / <float>n if n else 0
        return gf
    gd[0] = (<double*>p)[0] / <double>n if n else 0
    return gd
    if reduction == "mean":
        if dt is _F32:
            return np.asarray(<float>dloss[()] / <float>n if n else 0, dtype=dt)
        return np.asarray(<double>dloss[()] / <double>n if n else 0, dtype=dt)
    return dloss


cdef object _pair_bwd(int kind, object op, object dloss, object pred, object target, double delta,
                      object reduction):
    pred, target = _pair(op, "pred", pred, "target", target, reduction)
    dt = pred.dtype
    dloss = _grad(op, dloss, reduction, pred.shape, dt)
    cdef Py_ssize_t n = pred.size
    cdef int nt = _threads(n), f32 = dt is _F32, pe = 0
    cdef float gf
    cdef double gd
    cdef void* pg = _g(dloss, reduction, n, f32, &pe, &gf, &gd)
    out = np.empty(pred.shape, dt)
    cdef void* pp = _p(pred)
    cdef void* pq = _p(target)
    cdef void* po = _p(out)
    if n:
        with nogil:
            if kind == 0 and f32:
                fc_mse_bwd_f32(<float*>pp, <float*>pq, <float*>pg, pe, 0, <float*>po, n, nt)
            elif kind == 0:
                fc_mse_bwd_f64(<double*>pp, <double*>pq, <double*>pg, pe, 0, <double*>po, n, nt)
            elif f32:
                fc_hub_bwd_f32(<float*>pp, <float*>pq, <float*>pg, pe, <float>delta, <float*>po, n, nt)
            else:
                fc_hub_bwd_f64(<double*>pp, <double*>pq, <double*>pg, pe, delta, <double*>po, n, nt)
    return out


def mse_forward(pred, target, reduction):
    """mean/sum/none of (pred - target)^2, as the reference."""
    return _pair_fwd(0, "mse_forward", pred, target, 0.0, reduction)


def mse_backward(dloss, pred, target, reduction):
    """dpred = 2 (pred - target) * dloss (/ numel for 'mean'); dtarget = -dpred."""
    return _pair_bwd(0, "mse_backward", dloss, pred, target, 0.0, reduction)


def huber_forward(pred, target, delta, reduction):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2); d = pred - target."""
    op = "huber_forward"
    return _pair_fwd(1, op, pred, target, _delta(op, delta), reduction)


def huber_backward(dloss, pred, target, delta, reduction):
    """dpred = clip(pred - target, -delta, delta) * dloss (/ numel for 'mean')."""
    op = "huber_backward"
    return _pair_bwd(1, op, dloss, pred, target, _delta(op, delta), reduction)


# ---- bce_with_logits ------------------------------------------------------------------------

def _bce_args(op, logits, target, weight, pos_weight, reduction):
    """The reference's checks; returns (logits, target, w, pw, P): w / pw None or C-contiguous
    buffers of period P such that the broadcast weight at flat index i is w[i % P]."""
    logits, target = _pair(op, "logits", logits, "target", target, reduction)
    if weight is None and pos_weight is None:
        return logits, target, None, None, 1
    dt = logits.dtype
    shape = logits.shape
    nd = len(shape)
    k = nd
    arrs = []
    for name, a in (("weight", weight), ("pos_weight", pos_weight)):
        if a is None:
            arrs.append(None)
            continue
        if not (type(a) is np.ndarray and a.dtype is dt):
            a = C.array(op, name, a, device="cpu")
            C.same_dtype(op, logits=logits, **{name: a})
        s = a.shape
        ok = a.ndim <= nd and all(d == 1 or d == e for d, e in zip(s[::-1], shape[::-1]))
        if not ok:
            raise ValueError(f"{op}: '{name}' shape {tuple(s)} does not broadcast to 'logits' shape {tuple(shape)}")
        s = (1,) * (nd - a.ndim) + s
        j = 0
        while j < nd and s[j] == 1:
            j += 1
        k = min(k, j)
        arrs.append(a.reshape(s))
    sub = shape[k:]
    P = 1
    for d in sub:
        P *= d
    n = logits.size
    bufs = []
    for a in arrs:
        if a is not None:
            a = np.ascontiguousarray(np.broadcast_to(a.reshape(a.shape[k:]), sub)).reshape(-1)
            if P < 256 and P < n:  # a longer period: longer simd segments
                a = np.tile(a, -(-256 // P))
        bufs.append(a)
    if P < 256 and P < n:
        P *= -(-256 // P)
    return logits, target, bufs[0], bufs[1], P


def bce_with_logits_forward(logits, target, weight, pos_weight, reduction):
    """weight * ((1 - t) x + (1 + (pos_weight - 1) t) log(1 + exp(-x))), PyTorch's stable form."""
    op = "bce_with_logits_forward"
    x, t, w, pw, P = _bce_args(op, logits, target, weight, pos_weight, reduction)
    dt = x.dtype
    cdef Py_ssize_t n = x.size, per = P
    cdef int nt = _threads(n * 4), f32 = dt is _F32
    cdef double stack[NBUF]
    cdef double* bs = stack
    cdef double[:] heap
    cdef void* po = NULL
    out = None
    if reduction == "none":
        out = np.empty(x.shape, dt)
        po = _p(out)
    elif (n + RB - 1) // RB > NBUF:
        heap = _bufs(n)
        bs = &heap[0]
    cdef void* px = _p(x)
    cdef void* pt = _p(t)
    cdef void* pw_ = NULL if w is None else _p(w)
    cdef void* ppw = NULL if pw is None else _p(pw)
    if n:
        with nogil:
            if f32:
                fc_bce_fwd_f32(<float*>px, <float*>pt, <float*>pw_, <float*>ppw, per, <float*>po, bs, n, nt)
            else:
                fc_bce_fwd_f64(<double*>px, <double*>pt, <double*>pw_, <double*>ppw, per, <double*>po, bs, n, nt)
    if out is not None:
        return out
    return _reduce(bs, n, reduction, dt)


def bce_with_logits_backward(dloss, logits, target, weight, pos_weight, reduction):
    """dlogits = weight * ((1 - t) - (1 + (pos_weight - 1) t) sigmoid(-x)) * dloss (/ numel for 'mean')."""
    op = "bce_with_logits_backward"
    x, t, w, pw, P = _bce_args(op, logits, target, weight, pos_weight, reduction)
    dt = x.dtype
    dloss = _grad(op, dloss, reduction, x.shape, dt)
    cdef Py_ssize_t n = x.size, per = P
    cdef int nt = _threads(n * 4), f32 = dt is _F32, pe = 0
    cdef float gf
    cdef double gd
    cdef void* pg = _g(dloss, reduction, n, f32, &pe, &gf, &gd)
    out = np.empty(x.shape, dt)
    cdef void* px = _p(x)
    cdef void* pt = _p(t)
    cdef void* pw_ = NULL if w is None else _p(w)
    cdef void* ppw = NULL if pw is None else _p(pw)
    cdef void* po = _p(out)
    if n:
        with nogil:
            if f32:
                fc_bce_bwd_f32(<float*>px, <float*>pt, <float*>pw_, <float*>ppw, per, <float*>pg, pe, <float*>po, n, nt)
            else:
                fc_bce_bwd_f64(<double*>px, <double*>pt, <double*>pw_, <double*>ppw, per, <double*>pg, pe,
                               <double*>po, n, nt)
    return out
