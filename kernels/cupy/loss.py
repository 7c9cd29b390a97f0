"""Fused softmax cross-entropy on the GPU (loss.cu).  Argument checking and the
final reduction are the reference's (composed, not copied); the per-row work
(log-softmax, weighted/smoothed loss) is one warp per row, the backward one
pass over (N, C).  mse / huber / bce fall back to the reference (on CuPy)."""
import cupy

from .. import _checks as C
from ..reference import loss as _ref
from . import _module as M

__all__ = ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]


def kernel_names():
    return [("loss.cu", f"{k}<{t}>", False) for t in ("float", "double") for k in ("ce_fwd", "ce_bwd")]


def _on_gpu(op, **arrays):
    for name, a in arrays.items():
        if a is not None:
            C.array(op, name, a, dtypes=None, device="cuda")


def softmax_cross_entropy_forward(logits, target, weight, label_smoothing, reduction, ignore_index):
    """(loss, log_probs), exactly the reference's semantics."""
    op = "softmax_cross_entropy_forward"
    _on_gpu(op, logits=logits, target=target, weight=weight)
    logits, target, weight, ls, ignore_index, xp, valid, safe, w, w_t = _ref._ce_args(
        op, logits, target, weight, label_smoothing, reduction, ignore_index)
    N, K = logits.shape
    t = logits.dtype
    log_probs = cupy.empty_like(logits)
    loss = cupy.empty(N, dtype=t)
    wt = cupy.empty(N, dtype=t)
    if N:
        tgt = target if target.dtype == cupy.int64 else target.astype(cupy.int64)
        fn = M.function("loss.cu", f"ce_fwd<{M.ctype(t)}>")
        M.launch(fn, -(-N // (M.THREADS // 32)), M.THREADS,
                 (logits, tgt, M.ptr_or_null(weight), log_probs, loss, wt, M.i64(N), M.i32(K),
                  M.scalar(ls, t), M.i64(ignore_index)))
    return _ref._reduce(cupy, loss, reduction, wt.sum()), log_probs


def softmax_cross_entropy_backward(dloss, log_probs, target, weight, label_smoothing, reduction, ignore_index):
    """dlogits from the saved log-probabilities."""
    op = "softmax_cross_entropy_backward"
    _on_gpu(op, dloss=dloss, log_probs=log_probs, target=target, weight=weight)
    log_probs, target, weight, ls, ignore_index, xp, valid, safe, w, w_t = _ref._ce_args(
        op, log_probs, target, weight, label_smoothing, reduction, ignore_index)
    N, K = log_probs.shape
    t = log_probs.dtype
    g = _ref._dloss(op, cupy, dloss, reduction, (N,), t, w_t.sum())
    g = cupy.ascontiguousarray(cupy.where(valid, cupy.broadcast_to(g, (N,)), t.type(0)).astype(t, copy=False))
    coef = (t.type(1 - ls) * w_t).astype(t, copy=False)
    if ls > 0:
        coef = coef + t.type(ls / K) * w.sum()
    coef = cupy.ascontiguousarray(coef.astype(t, copy=False))
    w_t = cupy.ascontiguousarray(w_t.astype(t, copy=False))
    dlogits = cupy.empty_like(log_probs)
    if N and K:
        tgt = target if target.dtype == cupy.int64 else target.astype(cupy.int64)
        fn = M.function("loss.cu", f"ce_bwd<{M.ctype(t)}>")
        M.launch(fn, M.blocks_for(N * K), M.THREADS,
                 (log_probs, tgt, M.ptr_or_null(weight), g, coef, w_t, dlogits, M.i64(N), M.i32(K),
                  M.scalar(ls, t), M.i64(ignore_index)))
    return dlogits
