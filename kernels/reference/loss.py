"""Losses: forward and backward side by side.

Every loss takes ``reduction`` in ``'mean' | 'sum' | 'none'``; forward
returns an array (0-d for mean/sum) and backward takes ``dloss`` of that
same shape.  Cross-entropy follows ``torch.nn.functional.cross_entropy``
exactly (class weights, ``ignore_index``, label smoothing, weighted mean).
"""
import numpy as np

from .. import _checks as C
from ._util import xp_of
from .activation import log_softmax_forward

__all__ = [
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "mse_forward", "mse_backward",
    "huber_forward", "huber_backward",
    "bce_with_logits_forward", "bce_with_logits_backward",
]

REDUCTIONS = ("mean", "sum", "none")


def _reduce(xp, loss, reduction, denom=None):
    """Reduce a per-element loss; ``denom`` defaults to the element count (0 -> NaN)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return xp.asarray(total, dtype=loss.dtype)
    denom = loss.dtype.type(loss.size) if denom is None else denom
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.asarray(total / denom, dtype=loss.dtype)


def _dloss(op, xp, dloss, reduction, shape, dtype, denom=None):
    """Broadcastable per-element upstream gradient for the given reduction."""
    dloss = C.array(op, "dloss", dloss)
    if dloss.dtype != dtype:
        raise TypeError(f"{op}: mixed dtypes (dloss={dloss.dtype}, input={dtype}); all must be the same")
    want = tuple(shape) if reduction == "none" else ()
    if tuple(dloss.shape) != want:
        raise ValueError(
            f"{op}: argument 'dloss' must have shape {want} for reduction={reduction!r}, got {tuple(dloss.shape)}"
        )
    if reduction == "mean":
        n = dtype.type(int(np.prod(shape))) if denom is None else denom
        with np.errstate(invalid="ignore", divide="ignore"):
            return dloss / n
    return dloss


def _pair(op, a_name, a, b_name, b):
    a = C.array(op, a_name, a)
    b = C.array(op, b_name, b)
    C.same_device(op, **{a_name: a, b_name: b})
    C.same_dtype(op, **{a_name: a, b_name: b})
    C.same_shape(op, a_name, a, b_name, b)
    return a, b


# ---- softmax cross-entropy --------------------------------------------------------

def _ce_args(op, logits, target, weight, label_smoothing, reduction, ignore_index):
    logits = C.array(op, "logits", logits, ndim=2)
    target = C.array(op, "target", target, ndim=1, dtypes=C.INDEX_DTYPES)
    weight = C.array(op, "weight", weight, ndim=1, allow_none=True)
    C.same_device(op, logits=logits, target=target, weight=weight)
    C.same_dtype(op, logits=logits, weight=weight)
    N, K = logits.shape
    if target.shape[0] != N:
        raise ValueError(f"{op}: 'target' shape {tuple(target.shape)} does not match batch size {N} of 'logits' shape {tuple(logits.shape)}")
    if weight is not None and weight.shape[0] != K:
        raise ValueError(f"{op}: 'weight' shape {tuple(weight.shape)} does not match {K} classes of 'logits' shape {tuple(logits.shape)}")
    eps = C.number(op, "label_smoothing", label_smoothing, minimum=0.0, maximum=1.0)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    ignore_index = C.integer(op, "ignore_index", ignore_index)
    xp = xp_of(logits)
    valid = target != ignore_index
    if N and K == 0:
        raise ValueError(f"{op}: 'logits' has no classes (shape {tuple(logits.shape)})")
    bad = valid & ((target < 0) | (target >= K))
    if bool(bad.any()):
        first = int(target[bad][0])
        raise ValueError(f"{op}: 'target' holds class index {first} outside [0, {K}) (ignore_index={ignore_index})")
    safe = xp.where(valid, target, 0).astype(xp.int64)
    w = xp.ones(K, dtype=logits.dtype) if weight is None else weight
    w_t = xp.where(valid, w[safe], xp.zeros((), logits.dtype))  # per-sample weight, 0 when ignored
    return logits, target, weight, eps, ignore_index, xp, valid, safe, w, w_t


def softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index):
    """(loss, log_probs) of cross-entropy from logits (N, C) and int targets (N,).

    Per sample: (1 - eps) * -w[t] * logp[t] + eps / C * -sum_c w[c] * logp[c],
    zero where target == ignore_index.  'mean' divides by the summed weight of
    the non-ignored targets (NaN when there are none), as PyTorch does.
    """
    op = "softmax_cross_entropy_forward"
    logits, target, weight, eps, _, xp, valid, safe, w, w_t = _ce_args(
        op, logits, target, weight, label_smoothing, reduction, ignore_index)
    N, K = logits.shape
    log_probs = log_softmax_forward(logits, 1)
    dt = logits.dtype.type
    picked = xp.take_along_axis(log_probs, safe[:, None], axis=1)[:, 0]
    loss = xp.where(valid, -w_t * picked, dt(0))
    if eps > 0:
        smooth = -(log_probs * w).sum(axis=1)
        loss = dt(1 - eps) * loss + xp.where(valid, smooth, dt(0)) * dt(eps / K)
    return _reduce(xp, loss, reduction, w_t.sum()), log_probs


def softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction, ignore_index):
    """dlogits = scale * (p * ((1-eps) w[t] + eps/C sum(w)) - (1-eps) w[t] onehot(t) - eps/C w)."""
    op = "softmax_cross_entropy_backward"
    log_probs, target, weight, eps, _, xp, valid, safe, w, w_t = _ce_args(
        op, log_probs, target, weight, label_smoothing, reduction, ignore_index)
    N, K = log_probs.shape
    dt = log_probs.dtype.type
    g = _dloss(op, xp, dloss, reduction, (N,), log_probs.dtype, w_t.sum())
    g = xp.where(valid, xp.broadcast_to(g, (N,)), dt(0))  # ignored rows get exactly 0
    p = xp.exp(log_probs)
    coef = dt(1 - eps) * w_t
    if eps > 0:
        coef = coef + dt(eps / K) * w.sum()
    d = p * coef[:, None]
    rows = xp.arange(N)
    d[rows, safe] -= dt(1 - eps) * w_t
    if eps > 0:
        d -= dt(eps / K) * w[None, :]
    return d * g[:, None]


# ---- mse --------------------------------------------------------------------------

def mse_forward(pred, target, reduction):
    op = "mse_forward"
    pred, target = _pair(op, "pred", pred, "target", target)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    d = pred - target
    return _reduce(xp_of(pred), d * d, reduction)


def mse_backward(dloss, pred, target, reduction):
    """dpred = 2 (pred - target) * dloss (/ numel for 'mean'); dtarget = -dpred."""
    op = "mse_backward"
    pred, target = _pair(op, "pred", pred, "target", target)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    g = _dloss(op, xp_of(pred), dloss, reduction, pred.shape, pred.dtype)
    return pred.dtype.type(2) * (pred - target) * g


# ---- huber ------------------------------------------------------------------------

def huber_forward(pred, target, delta, reduction):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2)."""
    op = "huber_forward"
    pred, target = _pair(op, "pred", pred, "target", target)
    delta = C.number(op, "delta", delta, minimum=0.0, min_inclusive=False)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    xp = xp_of(pred)
    dt = pred.dtype.type
    d = pred - target
    a = xp.abs(d)
    loss = xp.where(a < dt(delta), dt(0.5) * d * d, dt(delta) * (a - dt(0.5 * delta)))
    return _reduce(xp, loss, reduction)


def huber_backward(dloss, pred, target, delta, reduction):
    """dpred = clip(pred - target, -delta, delta) * dloss; dtarget = -dpred."""
    op = "huber_backward"
    pred, target = _pair(op, "pred", pred, "target", target)
    delta = C.number(op, "delta", delta, minimum=0.0, min_inclusive=False)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    xp = xp_of(pred)
    g = _dloss(op, xp, dloss, reduction, pred.shape, pred.dtype)
    dt = pred.dtype.type
    return xp.clip(pred - target, dt(-delta), dt(delta)) * g


# ---- binary cross-entropy with logits ---------------------------------------------

def _bce_args(op, logits, target, weight, pos_weight, reduction):
    logits, target = _pair(op, "logits", logits, "target", target)
    weight = C.array(op, "weight", weight, allow_none=True)
    pos_weight = C.array(op, "pos_weight", pos_weight, allow_none=True)
    C.same_device(op, logits=logits, weight=weight, pos_weight=pos_weight)
    C.same_dtype(op, logits=logits, weight=weight, pos_weight=pos_weight)
    C.choice(op, "reduction", reduction, REDUCTIONS)
    xp = xp_of(logits)
    for name, a in (("weight", weight), ("pos_weight", pos_weight)):
        if a is None:
            continue
        try:
            ok = np.broadcast_shapes(tuple(a.shape), tuple(logits.shape)) == tuple(logits.shape)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: '{name}' shape {tuple(a.shape)} does not broadcast to 'logits' shape {tuple(logits.shape)}")
    return logits, target, weight, pos_weight, xp


def _softplus_neg(xp, x):
    """log(1 + exp(-x)) without overflow."""
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, x.dtype.type(0))


def bce_with_logits_forward(logits, target, weight, pos_weight, reduction):
    """weight * ((1 - t) x + (1 + (pos_weight - 1) t) log(1 + exp(-x))), PyTorch's stable form."""
    op = "bce_with_logits_forward"
    x, t, weight, pos_weight, xp = _bce_args(op, logits, target, weight, pos_weight, reduction)
    one = x.dtype.type(1)
    sp = _softplus_neg(xp, x)
    if pos_weight is not None:
        sp = (one + (pos_weight - one) * t) * sp
    loss = (one - t) * x + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(xp, loss, reduction)


def bce_with_logits_backward(dloss, logits, target, weight, pos_weight, reduction):
    """dlogits = weight * ((1 - t) - (1 + (pos_weight - 1) t) sigmoid(-x)) * dloss."""
    op = "bce_with_logits_backward"
    x, t, weight, pos_weight, xp = _bce_args(op, logits, target, weight, pos_weight, reduction)
    g = _dloss(op, xp, dloss, reduction, x.shape, x.dtype)
    one = x.dtype.type(1)
    e = xp.exp(-xp.abs(x))
    sig_neg = xp.where(x >= 0, e / (one + e), one / (one + e))  # sigmoid(-x)
    if pos_weight is None:
        d = (one - t) - sig_neg
    else:
        d = (one - t) - (one + (pos_weight - one) * t) * sig_neg
    if weight is not None:
        d = d * weight
    return d * g
