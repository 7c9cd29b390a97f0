"""Normalization on the GPU (norm.cu): batch norm with two-pass per-channel
statistics (one block per channel, fixed-order reductions: deterministic) and
in-kernel running-stat update, layer norm (a block per row; parameter
gradients by column in row order), dropout (counter-based hash RNG: the same
seed gives the same mask on this backend; it differs from the reference's)."""

import cupy
import numpy as np

from .. import _checks as C
from ..reference import norm as R
from ..reference.norm import _affine, _norm_shape
from . import _module as M

__all__ = [
    "batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward",
    "dropout_forward", "dropout_backward",
]

_RED_THREADS = 512


def kernel_names():
    names = ("bn_stats", "bn_apply", "bn_bwd_reduce", "bn_bwd_dx", "ln_fwd", "ln_bwd_dx", "ln_bwd_params",
             "dropout_fwd")
    return [("norm.cu", f"{k}<{t}>", False) for t in ("float", "double") for k in names]


def _fn(name, dtype):
    return M.function("norm.cu", f"{name}<{M.ctype(dtype)}>")


def _layout(x):
    """(outer, C, inner) view of x (N, C, ...)."""
    inner = 1
    for d in x.shape[2:]:
        inner *= d
    return x.shape[0], x.shape[1], inner


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """(y, save_mean, save_invstd); training updates running stats in place (unbiased variance)."""
    op = "batch_norm_forward"
    x, gamma, beta, momentum, eps = R.check_batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                                               momentum, eps, device="cuda")
    outer, ch, inner = _layout(x)
    count = outer * inner
    t = x.dtype
    if training:
        if count == 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got 'x' shape {tuple(x.shape)}")
        if count == 0:
            nan = cupy.full(ch, np.nan, dtype=t)
            return cupy.empty_like(x), nan, nan.copy()
        mean = cupy.empty(ch, dtype=t)
        invstd = cupy.empty(ch, dtype=t)
        has_run = running_mean is not None
        M.launch(_fn("bn_stats", t), ch, _RED_THREADS,
                 (x, mean, invstd, M.ptr_or_null(running_mean), M.ptr_or_null(running_var), M.i64(outer),
                  M.i32(ch), M.i64(inner), M.scalar(eps, t), M.scalar(momentum, t), M.i32(has_run)))
    else:
        if running_mean is None:
            raise ValueError(f"{op}: 'running_mean' and 'running_var' are required when training=False")
        mean = running_mean.astype(t, copy=True)
        invstd = 1 / cupy.sqrt(running_var.astype(t) + t.type(eps))
    y = cupy.empty_like(x)
    if x.size:
        M.launch(_fn("bn_apply", t), M.blocks_for(x.size), M.THREADS,
                 (x, y, mean, invstd, M.ptr_or_null(gamma), M.ptr_or_null(beta), M.i64(x.size), M.i32(ch),
                  M.i64(inner)))
    return y, mean, invstd


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    dy, x, gamma, mean, invstd = R.check_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training,
                                                             device="cuda")
    ch = x.shape[1]
    t = x.dtype
    if x.size == 0:
        z = cupy.zeros(ch, dtype=t)
        return cupy.empty_like(x), (None if gamma is None else z), (None if gamma is None else z.copy())
    outer, ch, inner = _layout(x)
    sum_dy = cupy.empty(ch, dtype=t)
    sum_dy_xhat = cupy.empty(ch, dtype=t)
    M.launch(_fn("bn_bwd_reduce", t), ch, _RED_THREADS,
             (dy, x, mean, invstd, sum_dy, sum_dy_xhat, M.i64(outer), M.i32(ch), M.i64(inner)))
    dx = cupy.empty_like(x)
    M.launch(_fn("bn_bwd_dx", t), M.blocks_for(x.size), M.THREADS,
             (dy, x, mean, invstd, M.ptr_or_null(gamma), sum_dy, sum_dy_xhat, dx, M.i64(x.size), M.i32(ch),
              M.i64(inner), M.scalar(outer * inner, t), M.i32(bool(training))))
    if gamma is None:
        return dx, None, None
    return dx, sum_dy_xhat, sum_dy


# ---- layer norm -----------------------------------------------------------------

def _rows(x, ns):
    D = int(np.prod(ns))
    return x.size // D, D


def _row_grid(rows):
    return max(1, min(rows, 65535 * 32))


def layer_norm_forward(x, normalized_shape, gamma, beta, eps):
    """(y, mean, rstd); mean/rstd shaped x.shape[:-k] + (1,)*k like the reference."""
    op = "layer_norm_forward"
    x = C.array(op, "x", x, device="cuda")
    ns = _norm_shape(op, x, normalized_shape)
    gamma = _affine(op, "gamma", gamma, ns, x, device="cuda")
    beta = _affine(op, "beta", beta, ns, x, device="cuda")
    eps = C.number(op, "eps", eps, minimum=0.0)
    stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
    y = cupy.empty_like(x)
    mean = cupy.empty(stat_shape, x.dtype)
    rstd = cupy.empty(stat_shape, x.dtype)
    if x.size == 0:
        return y, mean, rstd
    rows, D = _rows(x, ns)
    M.launch(_fn("ln_fwd", x.dtype), _row_grid(rows), M.THREADS,
             (x, M.ptr_or_null(gamma), M.ptr_or_null(beta), y, mean, rstd, M.i64(rows), M.i64(D),
              M.scalar(eps, x.dtype)))
    return y, mean, rstd


def layer_norm_backward(dy, x, normalized_shape, gamma, mean, rstd):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    op = "layer_norm_backward"
    x = C.array(op, "x", x, device="cuda")
    dy = C.array(op, "dy", dy, device="cuda")
    C.same_shape(op, "dy", dy, "x", x)
    C.same_dtype(op, dy=dy, x=x)
    ns = _norm_shape(op, x, normalized_shape)
    gamma = _affine(op, "gamma", gamma, ns, x, device="cuda")
    stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
    mean = C.array(op, "mean", mean, device="cuda")
    rstd = C.array(op, "rstd", rstd, device="cuda")
    for name, a in (("mean", mean), ("rstd", rstd)):
        C.same_dtype(op, x=x, **{name: a})
        if tuple(a.shape) != stat_shape:
            raise ValueError(f"{op}: '{name}' shape {tuple(a.shape)} does not match {stat_shape} for 'x' shape {tuple(x.shape)}")
    dx = cupy.empty_like(x)
    dgamma = None if gamma is None else cupy.zeros(ns, x.dtype)
    dbeta = None if gamma is None else cupy.zeros(ns, x.dtype)
    if x.size == 0:
        return dx, dgamma, dbeta
    rows, D = _rows(x, ns)
    M.launch(_fn("ln_bwd_dx", x.dtype), _row_grid(rows), M.THREADS,
             (dy, x, M.ptr_or_null(gamma), mean, rstd, dx, M.i64(rows), M.i64(D)))
    if gamma is not None:
        M.launch(_fn("ln_bwd_params", x.dtype), M.blocks_for(D), M.THREADS,
                 (dy, x, mean, rstd, dgamma, dbeta, M.i64(rows), M.i64(D)))
    return dx, dgamma, dbeta


# ---- dropout --------------------------------------------------------------------

def dropout_forward(x, p, seed):
    """(y, mask): mask 0 or 1/(1-p) from a hash of (seed, element index)."""
    op = "dropout_forward"
    x = C.array(op, "x", x, device="cuda")
    p = C.number(op, "p", p, minimum=0.0, maximum=1.0)
    seed = C.integer(op, "seed", seed, minimum=0)
    if p == 0.0:
        mask = cupy.ones_like(x)
        return x * mask, mask
    if p == 1.0:
        mask = cupy.zeros_like(x)
        return x * mask, mask
    y = cupy.empty_like(x)
    mask = cupy.empty_like(x)
    if x.size:
        M.launch(_fn("dropout_fwd", x.dtype), M.blocks_for(x.size), M.THREADS,
                 (x, y, mask, M.i64(x.size), np.uint64(seed % 2**64), np.float64(p),
                  M.scalar(1.0 / (1.0 - p), x.dtype)))
    return y, mask


def dropout_backward(dy, mask):
    """dx = dy * mask."""
    op = "dropout_backward"
    dy = C.array(op, "dy", dy, device="cuda")
    mask = C.array(op, "mask", mask, device="cuda")
    C.same_shape(op, "dy", dy, "mask", mask)
    C.same_dtype(op, dy=dy, mask=mask)
    return dy * mask
