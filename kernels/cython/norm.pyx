# cython: language_level=3
"""Batch normalization, layer normalization and dropout on the CPU.

Batch norm (loops in ``_norm_impl.h``): one OpenMP task per channel: the
statistics pass and the normalize pass run back to back over that channel's
N planes, so the second pass reads from cache (a 56x56x8 channel is 100 KB)
and each element crosses DRAM about once in and once out.  Statistics
accumulate in double, shifted by the channel's first element, so
E[x^2] - E[x]^2 does not cancel catastrophically.  ``batch_norm_act_*`` fuse a
residual block's tail into the same passes, y = relu(bn(x) + residual): the
forward skips writing and re-reading bn(x) and the sum, the backward masks
the gradient with y > 0 while it reduces (and writes the residual's gradient
in that same pass) instead of separate relu/add kernels.  The backward works on
groups of adjacent channels (inputs ~1 MB) walked n-major, so ResNet-20's small
planes (8x8 = 256 B) are read as G*S contiguous runs rather than one short
plane per page, and sums each plane in 64-byte vectors folded into per-channel
double vectors (no horizontal reduction per plane); see ``_norm_impl.h``.

Layer norm (loops in ``_norm_impl.h``): one OpenMP task per block of rows;
each row's statistics come from one shifted pass in double, then one fused
normalize+affine pass while the row is still in cache.  The backward does
the two per-row reductions in one pass and the dx formula in a second; the
dgamma/dbeta column sums go to per-thread double buffers summed at the end.

Dropout: the mask is a pure function of (seed, element index) -- a
splitmix64-style counter hash, keep iff its top 53 bits >= ceil(p * 2^53) --
so it is identical for any thread count.  It is NOT the NumPy reference's
mask for the same seed (that one comes from numpy.random.default_rng); the
contract only promises "same seed -> same mask" within one backend.
Measured (float32, one core, min of 30 interleaved runs; ms, ours /
reference / torch): layer norm (8192, 512) forward 1.55 / 47.8 / 21.6,
backward 2.67 / 63.1 (torch forward+backward 9.3); (256, 768) forward
0.07 / 0.29 / 0.07, backward 0.14 / 0.53; dropout (8192, 512) forward
1.92 / 31.0 / 97.6.
dropout_backward (dy * mask) is left to the reference: NumPy's multiply is
already memory-bound and a C loop measured the same (2.3 ms for 4M float32).
"""
import numpy as np
cimport numpy as cnp

from .. import _checks as C
from libc.stdint cimport uint64_t
from ..reference.norm import _affine, _norm_shape, check_batch_norm_backward, check_batch_norm_forward
from ._threads import num_threads

__all__ = ["batch_norm_forward", "batch_norm_backward", "batch_norm_act_forward", "batch_norm_act_backward",
           "layer_norm_forward", "layer_norm_backward",
           "dropout_forward"]

cdef extern from "_norm_impl.h" nogil:
    void fc_ln_fwd_f32(const float*, float*, const float*, const float*, float*, float*, Py_ssize_t, Py_ssize_t,
                       double, int)
    void fc_ln_fwd_f64(const double*, double*, const double*, const double*, double*, double*, Py_ssize_t,
                       Py_ssize_t, double, int)
    void fc_ln_bwd_f32(const float*, const float*, const float*, const float*, const float*, float*, double*,
                       Py_ssize_t, Py_ssize_t, int)
    void fc_ln_bwd_f64(const double*, const double*, const double*, const double*, const double*, double*,
                       double*, Py_ssize_t, Py_ssize_t, int)
    void fc_dropout_fwd_f32(const float*, float*, float*, Py_ssize_t, uint64_t, uint64_t, float, int)
    void fc_dropout_fwd_f64(const double*, double*, double*, Py_ssize_t, uint64_t, uint64_t, double, int)
    void fc_bn_fwd_f32(const float*, const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const float*,
                       const float*, int, double, const float*, const float*, int, float*, float*, double*, double*,
                       int)
    void fc_bn_fwd_f64(const double*, const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                       const double*, int, double, const double*, const double*, int, double*, double*, double*,
                       double*, int)
    void fc_bn_bwd_f32(const float*, const float*, const float*, float*, float*, Py_ssize_t, Py_ssize_t,
                       Py_ssize_t, const float*, const float*, const float*, int, double*, double*, int)
    void fc_bn_bwd_f64(const double*, const double*, const double*, double*, double*, Py_ssize_t, Py_ssize_t,
                       Py_ssize_t, const double*, const double*, const double*, int, double*, double*, int)


cdef inline void* _p(a):
    """Data pointer of a NumPy array, NULL for None."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


def _dims(x):
    N, Cn = x.shape[0], x.shape[1]
    S = x.size // (N * Cn) if N * Cn else 0
    return N, Cn, S


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


cdef inline bint _plain(a, dt, shape):
    """A C-contiguous NumPy array of dtype ``dt`` and this shape: the checks would pass it as is."""
    return type(a) is np.ndarray and a.dtype is dt and a.shape == shape and a.flags.c_contiguous


cdef inline bint _vec(a, dt, Py_ssize_t C, bint allow_none=True, bint write=False):
    if a is None:
        return allow_none
    return _plain(a, dt, (C,)) and (not write or a.flags.writeable)


cdef inline bint _plain_x(x):
    return type(x) is np.ndarray and (x.dtype is _F32 or x.dtype is _F64) and x.ndim >= 2 and x.flags.c_contiguous


def _like_x(op, name, a, x):
    """A same-shape, same-dtype companion of x (residual, forward output), C-contiguous."""
    a = C.array(op, name, a, device="cpu")
    C.same_shape(op, name, a, "x", x)
    C.same_dtype(op, x=x, **{name: a})
    return a


# ---- batch norm ------------------------------------------------------------------------------

def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """(y, save_mean, save_invstd) for x (N, C) or (N, C, ...); see the reference for semantics."""
    return batch_norm_act_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, None, False)


def batch_norm_act_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, residual, relu):
    """batch_norm_forward with the residual block's tail fused: y = relu(bn(x) + residual).

    ``residual`` (x's shape and dtype) may be None, ``relu`` is a bool; with neither this
    is batch_norm_forward.  One pass per channel: statistics, then the normalized,
    shifted, rectified output while the channel is still in cache.
    """
    op = "batch_norm_act_forward"
    if (_plain_x(x) and _vec(gamma, x.dtype, x.shape[1]) and _vec(beta, x.dtype, x.shape[1])
            and (running_mean is None) == (running_var is None)
            and _vec(running_mean, x.dtype, x.shape[1], True, True) and _vec(running_var, x.dtype, x.shape[1], True, True)
            and type(training) is bool):  # common case: only the scalars left to check
        momentum = C.number("batch_norm_forward", "momentum", momentum, minimum=0.0, maximum=1.0)
        eps = C.number("batch_norm_forward", "eps", eps, minimum=0.0)
    else:
        x, gamma, beta, momentum, eps = check_batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                                                 momentum, eps, device="cpu")
    if residual is not None and not _plain(residual, x.dtype, x.shape):
        residual = _like_x(op, "residual", residual, x)
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: argument 'relu' must be a bool, got {relu!r}")
    N, Cn, S = _dims(x)
    count = N * S
    dt = x.dtype
    y = np.empty_like(x)
    scale = shift = None
    if training:
        if count == 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got 'x' shape {tuple(x.shape)}")
        if count == 0:
            nan = np.full(Cn, np.nan, dtype=dt)
            return y, nan, nan.copy()
        mean = np.empty(Cn, dt)
        invstd = np.empty(Cn, dt)
    else:
        if running_mean is None:
            raise ValueError(f"{op}: 'running_mean' and 'running_var' are required when training=False")
        mean = running_mean.astype(dt, copy=True)
        invstd = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(dt)
        scale = invstd if gamma is None else (invstd * gamma).astype(dt)
        shift = (-mean * scale if beta is None else beta - mean * scale).astype(dt)
    mean64 = np.empty(Cn, np.float64)
    var64 = np.empty(Cn, np.float64)
    cdef int nt = max(1, min(num_threads(x.size, 32768), Cn))
    cdef Py_ssize_t n_ = N, c_ = Cn, s_ = S
    cdef int tr = bool(training), rl = bool(relu)
    cdef double e = eps
    cdef void* px = _p(x)
    cdef void* pr = _p(residual)
    cdef void* py = _p(y)
    cdef void* pg = _p(gamma)
    cdef void* pb = _p(beta)
    cdef void* psc = _p(scale)
    cdef void* psh = _p(shift)
    cdef void* pm = _p(mean)
    cdef void* pi = _p(invstd)
    cdef double* bm = <double*>_p(mean64)
    cdef double* bv = <double*>_p(var64)
    if x.size:
        if dt == np.float32:
            with nogil:
                fc_bn_fwd_f32(<float*>px, <float*>pr, <float*>py, n_, c_, s_, <float*>pg, <float*>pb, tr, e,
                              <float*>psc, <float*>psh, rl, <float*>pm, <float*>pi, bm, bv, nt)
        else:
            with nogil:
                fc_bn_fwd_f64(<double*>px, <double*>pr, <double*>py, n_, c_, s_, <double*>pg, <double*>pb, tr, e,
                              <double*>psc, <double*>psh, rl, <double*>pm, <double*>pi, bm, bv, nt)
    if training and running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += (momentum * mean64).astype(running_mean.dtype)
        running_var *= 1 - momentum
        running_var += (momentum * var64 * (count / (count - 1))).astype(running_var.dtype)
    return y, mean, invstd


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    return batch_norm_act_backward(dy, x, None, gamma, save_mean, save_invstd, training, False, False)[:3]


def batch_norm_act_backward(dy, x, y, gamma, save_mean, save_invstd, training, relu, residual):
    """(dx, dgamma, dbeta, dresidual) of batch_norm_act_forward.

    ``y`` is the forward output (needed only when ``relu``: the gradient passes where
    y > 0, and where y is NaN, as ReLU's does); ``residual`` (bool) asks for dresidual,
    the masked gradient (dy itself without relu), else it is None.
    """
    op = "batch_norm_act_backward"
    if not (_plain_x(x) and _plain(dy, x.dtype, x.shape) and _vec(gamma, x.dtype, x.shape[1])
            and _vec(save_mean, x.dtype, x.shape[1], False) and _vec(save_invstd, x.dtype, x.shape[1], False)
            and type(training) is bool):
        dy, x, gamma, save_mean, save_invstd = check_batch_norm_backward(dy, x, gamma, save_mean, save_invstd,
                                                                         training, device="cpu")
    if not isinstance(relu, (bool, np.bool_)) or not isinstance(residual, (bool, np.bool_)):
        raise TypeError(f"{op}: arguments 'relu' and 'residual' must be bools, got {relu!r}, {residual!r}")
    if relu:
        if not _plain(y, x.dtype, x.shape):
            y = _like_x(op, "y", y, x)
    else:
        y = None
    N, Cn, S = _dims(x)
    dt = x.dtype
    dx = np.empty_like(x)
    dr = (np.empty_like(x) if relu else dy) if residual else None
    dgamma = np.zeros(Cn, np.float64)
    dbeta = np.zeros(Cn, np.float64)
    cdef int nt = max(1, min(num_threads(x.size, 32768), Cn))
    cdef Py_ssize_t n_ = N, c_ = Cn, s_ = S
    cdef int tr = bool(training)
    cdef void* pdy = _p(dy)
    cdef void* px = _p(x)
    cdef void* py = _p(y)
    cdef void* pdr = _p(dr) if (residual and relu) else NULL
    cdef void* pdx = _p(dx)
    cdef void* pm = _p(save_mean)
    cdef void* pi = _p(save_invstd)
    cdef void* pg = _p(gamma)
    cdef double* dg = <double*>_p(dgamma)
    cdef double* db = <double*>_p(dbeta)
    if x.size:
        if dt == np.float32:
            with nogil:
                fc_bn_bwd_f32(<float*>pdy, <float*>px, <float*>py, <float*>pdr, <float*>pdx, n_, c_, s_, <float*>pm,
                              <float*>pi, <float*>pg, tr, dg, db, nt)
        else:
            with nogil:
                fc_bn_bwd_f64(<double*>pdy, <double*>px, <double*>py, <double*>pdr, <double*>pdx, n_, c_, s_,
                              <double*>pm, <double*>pi, <double*>pg, tr, dg, db, nt)
    if gamma is None:
        return dx, None, None, dr
    return dx, dgamma.astype(dt), dbeta.astype(dt), dr


# ---- layer norm ------------------------------------------------------------------------------


def layer_norm_forward(x, normalized_shape, gamma, beta, eps):
    """(y, mean, rstd) over the trailing ``normalized_shape`` dims (see the reference)."""
    op = "layer_norm_forward"
    x = C.array(op, "x", x, device="cpu")
    ns = _norm_shape(op, x, normalized_shape)
    gamma = _affine(op, "gamma", gamma, ns, x)
    beta = _affine(op, "beta", beta, ns, x)
    eps = C.number(op, "eps", eps, minimum=0.0)
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None and type(a) is not np.ndarray:
            raise TypeError(f"{op}: argument '{name}' must be a NumPy array for the CPU kernel")
    stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
    y = np.empty_like(x)
    mean = np.empty(stat_shape, x.dtype)
    rstd = np.empty(stat_shape, x.dtype)
    cdef Py_ssize_t D = int(np.prod(ns))
    cdef Py_ssize_t M = x.size // D
    cdef int nt = max(1, min(num_threads(M * D, 16384), M))
    cdef void* px = _p(x)
    cdef void* py = _p(y)
    cdef void* pg = _p(gamma)
    cdef void* pb = _p(beta)
    cdef void* pm = _p(mean)
    cdef void* pr = _p(rstd)
    cdef double e = eps
    if M == 0:
        return y, mean, rstd
    if x.dtype == np.float32:
        with nogil:
            fc_ln_fwd_f32(<float*>px, <float*>py, <float*>pg, <float*>pb, <float*>pm, <float*>pr, M, D, e, nt)
    else:
        with nogil:
            fc_ln_fwd_f64(<double*>px, <double*>py, <double*>pg, <double*>pb, <double*>pm, <double*>pr, M, D, e, nt)
    return y, mean, rstd


def layer_norm_backward(dy, x, normalized_shape, gamma, mean, rstd):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    op = "layer_norm_backward"
    x = C.array(op, "x", x, device="cpu")
    dy = C.array(op, "dy", dy, device="cpu")
    C.same_shape(op, "dy", dy, "x", x)
    C.same_dtype(op, dy=dy, x=x)
    ns = _norm_shape(op, x, normalized_shape)
    gamma = _affine(op, "gamma", gamma, ns, x)
    if gamma is not None and type(gamma) is not np.ndarray:
        raise TypeError(f"{op}: argument 'gamma' must be a NumPy array for the CPU kernel")
    stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
    mean = C.array(op, "mean", mean, device="cpu")
    rstd = C.array(op, "rstd", rstd, device="cpu")
    for name, a in (("mean", mean), ("rstd", rstd)):
        C.same_dtype(op, x=x, **{name: a})
        if tuple(a.shape) != stat_shape:
            raise ValueError(f"{op}: '{name}' shape {tuple(a.shape)} does not match {stat_shape} for 'x' shape {tuple(x.shape)}")
    cdef Py_ssize_t D = int(np.prod(ns))
    cdef Py_ssize_t M = x.size // D
    cdef int nt = max(1, min(num_threads(M * D, 16384), M))
    dx = np.empty_like(x)
    acc = np.zeros((nt, 2, D), np.float64) if gamma is not None else None
    cdef void* pdy = _p(dy)
    cdef void* px = _p(x)
    cdef void* pg = _p(gamma)
    cdef void* pm = _p(mean)
    cdef void* pr = _p(rstd)
    cdef void* pdx = _p(dx)
    cdef double* pa = <double*>_p(acc)
    if M:
        if x.dtype == np.float32:
            with nogil:
                fc_ln_bwd_f32(<float*>pdy, <float*>px, <float*>pg, <float*>pm, <float*>pr, <float*>pdx, pa, M, D, nt)
        else:
            with nogil:
                fc_ln_bwd_f64(<double*>pdy, <double*>px, <double*>pg, <double*>pm, <double*>pr, <double*>pdx, pa,
                              M, D, nt)
    if gamma is None:
        return dx, None, None
    tot = acc.sum(axis=0) if nt > 1 else acc[0]
    return dx, tot[0].astype(x.dtype).reshape(ns), tot[1].astype(x.dtype).reshape(ns)


# ---- dropout ---------------------------------------------------------------------------------

def dropout_forward(x, p, seed):
    """(y, mask): mask is 0 or 1/(1-p) in x's dtype, a counter-hash function of (seed, index).

    p = 0 gives an all-ones mask, p = 1 an all-zeros mask.  Not the reference's
    mask for the same seed (see the module docstring).  The seed is taken
    modulo 2**64.
    """
    op = "dropout_forward"
    x = C.array(op, "x", x, device="cpu")
    p = C.number(op, "p", p, minimum=0.0, maximum=1.0)
    seed = C.integer(op, "seed", seed, minimum=0)
    cdef uint64_t s = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    cdef uint64_t thresh
    cdef Py_ssize_t n = x.size
    cdef int nt = num_threads(n, 32768)
    y = np.empty_like(x)
    mask = np.empty_like(x)
    if p == 1.0:
        thresh = (<uint64_t>1) << 53  # nothing kept
    else:
        thresh = <uint64_t>min(int(np.ceil(p * 2.0 ** 53)), 1 << 53)
    cdef double scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    cdef void* px = _p(x)
    cdef void* py = _p(y)
    cdef void* pm = _p(mask)
    if x.dtype == np.float32:
        with nogil:
            fc_dropout_fwd_f32(<float*>px, <float*>py, <float*>pm, n, s, thresh, <float>scale, nt)
    else:
        with nogil:
            fc_dropout_fwd_f64(<double*>px, <double*>py, <double*>pm, n, s, thresh, scale, nt)
    return y, mask

