"""Fused softmax cross-entropy (PyTorch semantics: class weights, ignore_index, label smoothing).

Forward: one row per LANES threads computes the log-softmax row, writes it
(saved for backward) and the row's loss in the same pass; the (N,) row
losses are then reduced (CuPy / NumPy sum, deterministic).  Backward: one
element-wise pass over (N, C) from the saved log-probabilities.  Target
validation (class indices in range) reads the targets back to the host, as
the reference does: a bad index is an error, never a silent wrong answer.
mse, huber and bce_with_logits are not written here and fall back to the
reference.
"""
import math

import numpy as np
from numba import cuda

from .. import _checks as C
from ._launch import DEVICE, LANES, ROWS, THREADS, Launch, blocks, jit, lanes_sum, row_max_sumexp

__all__ = ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]

REDUCTIONS = ("mean", "sum", "none")


@jit
def _ce_fwd(x, target, w, logp, rowloss, rowweight, N, K, ignore, k):
    ninf, zero, one_minus_eps, eps_over_k, smoothing = k
    sm = cuda.shared.array((ROWS, LANES), dtype=logp.dtype)
    lane = cuda.threadIdx.x
    for row0 in range(cuda.blockIdx.x * ROWS, N, cuda.gridDim.x * ROWS):
        row = row0 + cuda.threadIdx.y
        base = row * K
        m, s = row_max_sumexp(x, base, K, row < N, sm, ninf, zero)
        ls = zero
        ws = zero  # sum_c w[c] * logp[c], for label smoothing
        if row < N:
            ls = math.log(s)
            for j in range(lane, K, LANES):
                lp = (x[base + j] - m) - ls
                logp[base + j] = lp
                if smoothing:
                    ws += w[j] * lp
        ws = lanes_sum(sm, ws)
        if row < N and lane == 0:
            t = target[row]
            if t != ignore:
                wt = w[t]
                loss = -wt * ((x[base + t] - m) - ls)
                if smoothing:
                    loss = one_minus_eps * loss + (-ws) * eps_over_k
                rowloss[row] = loss
                rowweight[row] = wt
            else:
                rowloss[row] = zero
                rowweight[row] = zero


@jit
def _ce_bwd(logp, target, w, g, dx, K, ignore, wsum, k):
    zero, one_minus_eps, eps_over_k, smoothing = k
    i = cuda.grid(1)
    while i < logp.size:
        row = i // K
        j = i - row * K
        t = target[row]
        if t == ignore:
            dx[i] = zero
        else:
            wt = w[t]
            coef = one_minus_eps * wt
            if smoothing:
                coef = coef + eps_over_k * wsum
            d = math.exp(logp[i]) * coef
            if j == t:
                d -= one_minus_eps * wt
            if smoothing:
                d -= eps_over_k * w[j]
            dx[i] = d * g[row]
        i += cuda.gridsize(1)


def _ce_args(op, logits, target, weight, label_smoothing, reduction, ignore_index, name="logits"):
    logits = C.array(op, name, logits, ndim=2, device=DEVICE)
    target = C.array(op, "target", target, ndim=1, dtypes=C.INDEX_DTYPES, device=DEVICE)
    weight = C.array(op, "weight", weight, ndim=1, allow_none=True, device=DEVICE)
    C.same_device(op, **{name: logits}, target=target, weight=weight)
    C.same_dtype(op, **{name: logits}, weight=weight)
    N, K = logits.shape
    if target.shape[0] != N:
        raise ValueError(f"{op}: 'target' shape {tuple(target.shape)} does not match batch size {N} of "
                         f"'{name}' shape {tuple(logits.shape)}")
    if weight is not None and weight.shape[0] != K:
        raise ValueError(f"{op}: 'weight' shape {tuple(weight.shape)} does not match {K} classes of "
                         f"'{name}' shape {tuple(logits.shape)}")
    eps = C.number(op, "label_smoothing", label_smoothing, minimum=0.0, maximum=1.0)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    ignore_index = C.integer(op, "ignore_index", ignore_index)
    if N and K == 0:
        raise ValueError(f"{op}: '{name}' has no classes (shape {tuple(logits.shape)})")
    L = Launch(logits)
    xp = L.xp
    target = target.astype(np.int64, copy=False)
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= K))
    if N and bool(bad.any()):
        first = int(target[bad][0])
        raise ValueError(f"{op}: 'target' holds class index {first} outside [0, {K}) (ignore_index={ignore_index})")
    w = xp.ones(K, dtype=logits.dtype) if weight is None else weight
    return L, logits, target, w, eps, ignore_index, valid


def _consts(t, eps, K):
    return t(1 - eps), t(eps / K) if K else t(0), int(eps > 0)


def softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index):
    """(loss, log_probs) of cross-entropy from logits (N, C) and int targets (N,)."""
    op = "softmax_cross_entropy_forward"
    L, logits, target, w, eps, ignore, _ = _ce_args(
        op, logits, target, weight, label_smoothing, reduction, ignore_index)
    N, K = logits.shape
    t = logits.dtype.type
    xp = L.xp
    logp = L.empty((N, K), logits.dtype)
    rowloss = L.empty(N, logits.dtype)
    roww = L.empty(N, logits.dtype)
    if N:
        _ce_fwd[blocks(N, ROWS), (LANES, ROWS), L.stream](
            L.dev(logits), L.dev(target), L.dev(w), L.out(logp), L.out(rowloss), L.out(roww), N, K, ignore,
            (t(-math.inf), t(0)) + _consts(t, eps, K))
        L.done()
    if reduction == "none":
        return rowloss, logp
    total = rowloss.sum(dtype=logits.dtype)
    if reduction == "sum":
        return xp.asarray(total, dtype=logits.dtype), logp
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.asarray(total / roww.sum(dtype=logits.dtype), dtype=logits.dtype), logp


def softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction, ignore_index):
    """dlogits from the saved log-probabilities, in one element-wise pass."""
    op = "softmax_cross_entropy_backward"
    L, logp, target, w, eps, ignore, valid = _ce_args(
        op, log_probs, target, weight, label_smoothing, reduction, ignore_index, name="log_probs")
    N, K = logp.shape
    t = logp.dtype.type
    xp = L.xp
    dloss = C.array(op, "dloss", dloss, device=DEVICE)
    if dloss.dtype != logp.dtype:
        raise TypeError(f"{op}: mixed dtypes (dloss={dloss.dtype}, input={logp.dtype}); all must be the same")
    want = (N,) if reduction == "none" else ()
    if tuple(dloss.shape) != want:
        raise ValueError(f"{op}: argument 'dloss' must have shape {want} for reduction={reduction!r}, "
                         f"got {tuple(dloss.shape)}")
    dx = L.empty((N, K), logp.dtype)
    if dx.size == 0:
        return dx
    g = dloss
    if reduction == "mean":
        safe = xp.where(valid, target, 0)
        denom = xp.where(valid, w[safe], t(0)).sum(dtype=logp.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = dloss / denom
    g = xp.ascontiguousarray(xp.broadcast_to(g, (N,)))
    wsum = t(float(w.sum())) if eps > 0 else t(0)  # float(): a CuPy 0-d array reads back explicitly
    _ce_bwd[blocks(dx.size), THREADS, L.stream](
        L.dev(logp), L.dev(target), L.dev(w), L.dev(g), L.out(dx), K, ignore, wsum, (t(0),) + _consts(t, eps, K))
    return L.done(dx)
