"""Batch normalization: per-channel block reductions, then one element-wise pass.

Statistics are reduced over (N, spatial) for each channel by a (C, splits)
grid: each block reduces one contiguous slice of the channel (two passes over
its slice: sum, then squared deviations from the slice mean), and a small
finalize kernel merges the slices in a fixed order with Chan's formula.
Deterministic, no atomics; enough blocks even when C is small.  The same
layout reduces sum(dy) and sum(dy * xhat) in backward.  layer_norm and
dropout are not written here and fall back to the reference.
"""
import math

import numpy as np
from numba import cuda

from ..reference import norm as R
from ._launch import DEVICE, SMALL, THREADS, Launch, block_sum, blocks, cdiv, jit

__all__ = ["batch_norm_forward", "batch_norm_backward"]

TARGET_BLOCKS = 4 if SMALL else 264  # ~2 blocks per SM on an H100/H200
MIN_SLICE = THREADS * (2 if SMALL else 16)  # elements per block at least


def _splits(count, channels):
    splits = max(1, min(cdiv(TARGET_BLOCKS, channels), cdiv(count, MIN_SLICE)))
    chunk = cdiv(count, splits)
    return chunk, cdiv(count, chunk)


@jit(device=True)
def _addr(j, c, Cc, inner):
    n = j // inner
    return (n * Cc + c) * inner + (j - n * inner)


@jit
def _stats_partial(x, ws, Cc, inner, count, chunk, zero):
    """ws[0/1/2, c, s] = (n, mean, M2) of slice s of channel c."""
    sm = cuda.shared.array(THREADS, dtype=ws.dtype)
    c = cuda.blockIdx.x
    s = cuda.blockIdx.y
    splits = cuda.gridDim.y
    j0 = s * chunk
    j1 = min(count, j0 + chunk)
    acc = zero
    for j in range(j0 + cuda.threadIdx.x, j1, THREADS):
        acc += x[_addr(j, c, Cc, inner)]
    nb = cuda.local.array(1, dtype=ws.dtype)
    nb[0] = j1 - j0
    mean = block_sum(sm, acc) / nb[0]
    acc = zero
    for j in range(j0 + cuda.threadIdx.x, j1, THREADS):
        d = x[_addr(j, c, Cc, inner)] - mean
        acc += d * d
    m2 = block_sum(sm, acc)
    if cuda.threadIdx.x == 0:
        k = c * splits + s
        ws[k] = nb[0]
        ws[Cc * splits + k] = mean
        ws[2 * Cc * splits + k] = m2


@jit
def _stats_final(ws, mean_out, invstd_out, rmean, rvar, splits, has_running, k):
    """Merge the slices of each channel (Chan et al.), in slice order; update running stats."""
    eps, mom, one_minus_mom, unbias, zero, one = k
    c = cuda.grid(1)
    Cc = mean_out.size
    if c < Cc:
        n = zero
        mean = zero
        m2 = zero
        for s in range(splits):
            i = c * splits + s
            nb = ws[i]
            mb = ws[Cc * splits + i]
            if nb > zero:
                tot = n + nb
                delta = mb - mean
                mean = mean + delta * (nb / tot)
                m2 = m2 + ws[2 * Cc * splits + i] + delta * delta * (n * nb / tot)
                n = tot
        var = m2 / n
        mean_out[c] = mean
        invstd_out[c] = one / math.sqrt(var + eps)
        if has_running:
            rmean[c] = rmean[c] * one_minus_mom + mom * mean
            rvar[c] = rvar[c] * one_minus_mom + mom * (var * unbias)


@jit
def _bn_apply(x, y, mean, invstd, gamma, beta, Cc, inner, has_gamma, has_beta):
    i = cuda.grid(1)
    while i < x.size:
        c = (i // inner) % Cc
        scale = invstd[c] * gamma[c] if has_gamma else invstd[c]
        v = (x[i] - mean[c]) * scale
        if has_beta:
            v = v + beta[c]
        y[i] = v
        i += cuda.gridsize(1)


@jit
def _grad_partial(dy, x, mean, invstd, ws, Cc, inner, count, chunk, zero):
    """ws[0/1, c, s] = sum(dy), sum(dy * xhat) over slice s of channel c."""
    sm = cuda.shared.array(THREADS, dtype=ws.dtype)
    c = cuda.blockIdx.x
    s = cuda.blockIdx.y
    splits = cuda.gridDim.y
    j0 = s * chunk
    j1 = min(count, j0 + chunk)
    m = mean[c]
    istd = invstd[c]
    a = zero
    b = zero
    for j in range(j0 + cuda.threadIdx.x, j1, THREADS):
        i = _addr(j, c, Cc, inner)
        g = dy[i]
        a += g
        b += g * ((x[i] - m) * istd)
    a = block_sum(sm, a)
    b = block_sum(sm, b)
    if cuda.threadIdx.x == 0:
        ws[c * splits + s] = a
        ws[Cc * splits + c * splits + s] = b


@jit
def _grad_final(ws, sum_dy, sum_dy_xhat, splits, zero):
    c = cuda.grid(1)
    Cc = sum_dy.size
    if c < Cc:
        a = zero
        b = zero
        for s in range(splits):
            a += ws[c * splits + s]
            b += ws[Cc * splits + c * splits + s]
        sum_dy[c] = a
        sum_dy_xhat[c] = b


@jit
def _bn_dx(dy, x, dx, mean, invstd, gamma, sum_dy, sum_dy_xhat, Cc, inner, has_gamma, training, count):
    i = cuda.grid(1)
    while i < x.size:
        c = (i // inner) % Cc
        g = invstd[c] * gamma[c] if has_gamma else invstd[c]
        if training:
            xhat = (x[i] - mean[c]) * invstd[c]
            dx[i] = (dy[i] - sum_dy[c] / count - xhat * (sum_dy_xhat[c] / count)) * g
        else:
            dx[i] = dy[i] * g
        i += cuda.gridsize(1)


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """(y, save_mean, save_invstd) for x (N, C) or (N, C, ...); running stats updated in place when training."""
    op = "batch_norm_forward"
    x, gamma, beta, momentum, eps = R.check_batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                                               momentum, eps, device=DEVICE)
    Cc = x.shape[1]
    t = x.dtype.type
    count = x.size // Cc if Cc else 0
    inner = count // x.shape[0] if x.shape[0] else 0
    L = Launch(x)
    if training:
        if count == 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got 'x' shape {tuple(x.shape)}")
        if count == 0:  # empty batch: nothing to normalize, statistics untouched
            nan = L.xp.full(Cc, np.nan, dtype=x.dtype)
            return L.empty(x.shape, x.dtype), nan, nan.copy()
        chunk, splits = _splits(count, Cc)
        ws = L.empty(3 * Cc * splits, x.dtype)
        mean = L.empty(Cc, x.dtype)
        invstd = L.empty(Cc, x.dtype)
        dws = L.out(ws)
        dx_ = L.dev(x)
        _stats_partial[(Cc, splits), THREADS, L.stream](dx_, dws, Cc, inner, count, chunk, t(0))
        has_r = running_mean is not None
        dmean, dinv = L.out(mean), L.out(invstd)
        drm = L.out(running_mean) if has_r else dmean
        drv = L.out(running_var) if has_r else dinv
        k = tuple(t(v) for v in (eps, momentum, 1 - momentum, count / (count - 1), 0, 1))
        _stats_final[blocks(Cc, cap=1 << 30), THREADS, L.stream](dws, dmean, dinv, drm, drv, splits, int(has_r), k)
    else:
        if running_mean is None:
            raise ValueError(f"{op}: 'running_mean' and 'running_var' are required when training=False")
        mean = running_mean.astype(x.dtype, copy=True)
        invstd = t(1) / L.xp.sqrt(running_var.astype(x.dtype) + t(eps))
        dx_, dmean, dinv = L.dev(x), L.dev(mean), L.dev(invstd)
    y = L.empty(x.shape, x.dtype)
    if y.size:
        _bn_apply[blocks(y.size), THREADS, L.stream](
            dx_, L.out(y), dmean, dinv, L.dev(gamma if gamma is not None else mean),
            L.dev(beta if beta is not None else mean), Cc, inner, int(gamma is not None), int(beta is not None))
    return L.done((y, mean, invstd))


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training):
    """(dx, dgamma, dbeta); dgamma and dbeta are None when gamma is None."""
    dy, x, gamma, mean, invstd = R.check_batch_norm_backward(dy, x, gamma, save_mean, save_invstd, training,
                                                             device=DEVICE)
    Cc = x.shape[1]
    L = Launch(x)
    t = x.dtype.type
    if x.size == 0:
        z = L.zeros(Cc, x.dtype)
        return L.empty(x.shape, x.dtype), (None if gamma is None else z), (None if gamma is None else z.copy())
    count = x.size // Cc
    inner = count // x.shape[0]
    chunk, splits = _splits(count, Cc)
    ws = L.empty(2 * Cc * splits, x.dtype)
    sum_dy = L.empty(Cc, x.dtype)
    sum_dy_xhat = L.empty(Cc, x.dtype)
    ddy, dxx, dmean, dinv = L.dev(dy), L.dev(x), L.dev(mean), L.dev(invstd)
    dws, dsum, dsumx = L.out(ws), L.out(sum_dy), L.out(sum_dy_xhat)
    need_sums = training or gamma is not None
    if need_sums:
        _grad_partial[(Cc, splits), THREADS, L.stream](ddy, dxx, dmean, dinv, dws, Cc, inner, count, chunk, t(0))
        _grad_final[blocks(Cc, cap=1 << 30), THREADS, L.stream](dws, dsum, dsumx, splits, t(0))
    dx = L.empty(x.shape, x.dtype)
    _bn_dx[blocks(dx.size), THREADS, L.stream](
        ddy, dxx, L.out(dx), dmean, dinv, L.dev(gamma if gamma is not None else mean), dsum, dsumx,
        Cc, inner, int(gamma is not None), int(bool(training)), t(count))
    L.done()
    if gamma is None:
        return dx, None, None
    return dx, sum_dy_xhat, sum_dy
