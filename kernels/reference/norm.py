"""Normalization and dropout: forward and backward side by side."""
import numbers

import numpy as np

from .. import _checks as C
from ._util import xp_of

__all__ = [
    "batch_norm_forward", "batch_norm_backward",
    "layer_norm_forward", "layer_norm_backward",
    "dropout_forward", "dropout_backward",
]


# ---- batch norm -------------------------------------------------------------------

def _channel_vec(op, name, a, C_, like, allow_none=True, device=None):
    a = C.array(op, name, a, ndim=1, allow_none=allow_none, device=device)
    if a is None:
        return None
    C.same_device(op, x=like, **{name: a})
    C.same_dtype(op, x=like, **{name: a})
    if a.shape[0] != C_:
        raise ValueError(f"{op}: '{name}' shape {tuple(a.shape)} does not match C={C_} of 'x' shape {tuple(like.shape)}")
    return a


def _bshape(x):
    """Shape that broadcasts a per-channel (C,) vector against x (N, C, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _reduce_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def check_batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, device=None):
    """Shared argument checks of batch_norm_forward (every backend): (x, gamma, beta, momentum, eps)."""
    op = "batch_norm_forward"
    x = C.array(op, "x", x, min_ndim=2, device=device)
    C_ = x.shape[1]
    gamma = _channel_vec(op, "gamma", gamma, C_, x, device=device)
    beta = _channel_vec(op, "beta", beta, C_, x, device=device)
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is not None:
            C.inplace(op, name, r, device=device)
            _channel_vec(op, name, r, C_, x, device=device)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: argument 'training' must be a bool, got {training!r}")
    momentum = C.number(op, "momentum", momentum, minimum=0.0, maximum=1.0)
    eps = C.number(op, "eps", eps, minimum=0.0)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: pass both 'running_mean' and 'running_var' or neither")
    return x, gamma, beta, momentum, eps


def check_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training, device=None):
    """Shared argument checks of batch_norm_backward: (dy, x, gamma, save_mean, save_invstd)."""
    op = "batch_norm_backward"
    x = C.array(op, "x", x, min_ndim=2, device=device)
    dy = C.array(op, "dy", dy, device=device)
    C.same_device(op, dy=dy, x=x)
    C.same_shape(op, "dy", dy, "x", x)
    C.same_dtype(op, dy=dy, x=x)
    C_ = x.shape[1]
    gamma = _channel_vec(op, "gamma", gamma, C_, x, device=device)
    mean = _channel_vec(op, "save_mean", save_mean, C_, x, allow_none=False, device=device)
    invstd = _channel_vec(op, "save_invstd", save_invstd, C_, x, allow_none=False, device=device)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: argument 'training' must be a bool, got {training!r}")
    return dy, x, gamma, mean, invstd


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """(y, save_mean, save_invstd) for x (N, C) or (N, C, ...).

    Training: batch statistics (biased variance for normalizing); running stats,
    when given, are updated in place: r = (1 - momentum) r + momentum * stat,
    with the unbiased variance, as PyTorch does.  Eval: the running stats.
    """
    op = "batch_norm_forward"
    x, gamma, beta, momentum, eps = check_batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                                             momentum, eps)
    C_ = x.shape[1]
    xp = xp_of(x)
    dt = x.dtype.type
    axes = _reduce_axes(x)
    count = x.size // C_ if C_ else 0
    if training:
        if count == 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got 'x' shape {tuple(x.shape)}")
        if count == 0:  # empty batch: nothing to normalize, statistics untouched
            nan = xp.full(C_, np.nan, dtype=x.dtype)
            return xp.empty_like(x), nan, nan.copy()
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(_bshape(x))) ** 2).mean(axis=axes)
        invstd = dt(1) / xp.sqrt(var + dt(eps))
        if running_mean is not None:
            m = running_mean.dtype.type(momentum)
            running_mean *= 1 - m
            running_mean += m * mean.astype(running_mean.dtype)
            unbiased = var * dt(count / (count - 1))
            running_var *= 1 - m
            running_var += m * unbiased.astype(running_var.dtype)
    else:
        if running_mean is None:
            raise ValueError(f"{op}: 'running_mean' and 'running_var' are required when training=False")
        mean = running_mean.astype(x.dtype, copy=True)
        invstd = dt(1) / xp.sqrt(running_var.astype(x.dtype) + dt(eps))
    scale = invstd if gamma is None else invstd * gamma
    y = (x - mean.reshape(_bshape(x))) * scale.reshape(_bshape(x))
    if beta is not None:
        y = y + beta.reshape(_bshape(x))
    return y, mean, invstd


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    dy, x, gamma, mean, invstd = check_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training)
    C_ = x.shape[1]
    xp = xp_of(x)
    dt = x.dtype.type
    axes = _reduce_axes(x)
    bs = _bshape(x)
    if x.size == 0:
        z = xp.zeros(C_, dtype=x.dtype)
        return xp.empty_like(x), (None if gamma is None else z), (None if gamma is None else z.copy())
    xhat = (x - mean.reshape(bs)) * invstd.reshape(bs)
    sum_dy = dy.sum(axis=axes)
    sum_dy_xhat = (dy * xhat).sum(axis=axes)
    g = invstd if gamma is None else invstd * gamma
    if training:
        count = dt(x.size // C_)
        dx = (dy - (sum_dy / count).reshape(bs) - xhat * (sum_dy_xhat / count).reshape(bs)) * g.reshape(bs)
    else:
        dx = dy * g.reshape(bs)
    if gamma is None:
        return dx, None, None
    return dx, sum_dy_xhat, sum_dy


# ---- layer norm -------------------------------------------------------------------

def _norm_shape(op, x, normalized_shape):
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (int(normalized_shape),)
    try:
        ns = tuple(C.integer(op, "normalized_shape", s, minimum=1) for s in normalized_shape)
    except TypeError:
        raise TypeError(f"{op}: argument 'normalized_shape' must be an int or a tuple of ints, got {normalized_shape!r}") from None
    if not ns:
        raise ValueError(f"{op}: argument 'normalized_shape' is empty")
    if x.ndim < len(ns) or tuple(x.shape[x.ndim - len(ns):]) != ns:
        raise ValueError(f"{op}: 'x' shape {tuple(x.shape)} does not end with normalized_shape {ns}")
    return ns


def _affine(op, name, a, ns, x, device=None):
    a = C.array(op, name, a, allow_none=True, device=device)
    if a is None:
        return None
    C.same_device(op, x=x, **{name: a})
    C.same_dtype(op, x=x, **{name: a})
    if tuple(a.shape) != ns:
        raise ValueError(f"{op}: '{name}' shape {tuple(a.shape)} does not match normalized_shape {ns}")
    return a


def layer_norm_forward(x, normalized_shape, gamma, beta, eps):
    """(y, mean, rstd) over the trailing ``normalized_shape`` dims.

    mean and rstd have shape x.shape[:-k] + (1,) * k (PyTorch's native_layer_norm
    layout), so they broadcast against x.
    """
    op = "layer_norm_forward"
    x = C.array(op, "x", x)
    ns = _norm_shape(op, x, normalized_shape)
    gamma = _affine(op, "gamma", gamma, ns, x)
    beta = _affine(op, "beta", beta, ns, x)
    eps = C.number(op, "eps", eps, minimum=0.0)
    xp = xp_of(x)
    dt = x.dtype.type
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    if x.size == 0:
        stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
        return xp.empty_like(x), xp.empty(stat_shape, x.dtype), xp.empty(stat_shape, x.dtype)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    rstd = dt(1) / xp.sqrt((xc * xc).mean(axis=axes, keepdims=True) + dt(eps))
    y = xc * rstd
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y, mean, rstd


def layer_norm_backward(dy, x, normalized_shape, gamma, mean, rstd):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    op = "layer_norm_backward"
    x = C.array(op, "x", x)
    dy = C.array(op, "dy", dy)
    C.same_device(op, dy=dy, x=x)
    C.same_shape(op, "dy", dy, "x", x)
    C.same_dtype(op, dy=dy, x=x)
    ns = _norm_shape(op, x, normalized_shape)
    gamma = _affine(op, "gamma", gamma, ns, x)
    stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
    mean = C.array(op, "mean", mean)
    rstd = C.array(op, "rstd", rstd)
    for name, a in (("mean", mean), ("rstd", rstd)):
        C.same_dtype(op, x=x, **{name: a})
        if tuple(a.shape) != stat_shape:
            raise ValueError(f"{op}: '{name}' shape {tuple(a.shape)} does not match {stat_shape} for 'x' shape {tuple(x.shape)}")
    xp = xp_of(x)
    dt = x.dtype.type
    k = len(ns)
    axes = tuple(range(x.ndim - k, x.ndim))
    batch_axes = tuple(range(x.ndim - k))
    xhat = (x - mean) * rstd
    dxhat = dy if gamma is None else dy * gamma
    count = dt(int(np.prod(ns)))
    dx = rstd * (dxhat - dxhat.sum(axis=axes, keepdims=True) / count
                 - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True) / count)
    if gamma is None:
        return dx, None, None
    return dx, (dy * xhat).sum(axis=batch_axes), dy.sum(axis=batch_axes)


# ---- dropout ----------------------------------------------------------------------

def _uniform(xp, seed, shape):
    if xp is np:
        return np.random.default_rng(seed).random(shape)
    return xp.random.RandomState(seed).random_sample(shape)


def dropout_forward(x, p, seed):
    """(y, mask): mask is 0 or 1/(1-p) in x's dtype, drawn from ``seed``.

    NumPy: numpy.random.default_rng(seed); CuPy: cupy.random.RandomState(seed).
    p = 0 gives an all-ones mask, p = 1 an all-zeros mask.
    """
    op = "dropout_forward"
    x = C.array(op, "x", x)
    p = C.number(op, "p", p, minimum=0.0, maximum=1.0)
    seed = C.integer(op, "seed", seed, minimum=0)
    xp = xp_of(x)
    if p == 0.0:
        mask = xp.ones_like(x)
    elif p == 1.0:
        mask = xp.zeros_like(x)
    else:
        keep = _uniform(xp, seed, x.shape) >= p
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, mask):
    """dx = dy * mask."""
    op = "dropout_backward"
    dy = C.array(op, "dy", dy)
    mask = C.array(op, "mask", mask)
    C.same_device(op, dy=dy, mask=mask)
    C.same_shape(op, "dy", dy, "mask", mask)
    C.same_dtype(op, dy=dy, mask=mask)
    return dy * mask
