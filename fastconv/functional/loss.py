"""Loss ops with torch.nn.functional's names and semantics."""
import numpy as np

from ..tensor import Function, Tensor
from ._base import KernelFunction, data, prepare, tensor_arg

__all__ = [
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss",
    "binary_cross_entropy_with_logits",
]

_INT_KINDS = "iu"


def _const(op, name, v):
    """A non-differentiable argument (class weights, targets of index losses) as a raw array."""
    if v is None:
        return None
    if isinstance(v, Tensor) and v.requires_grad:
        raise ValueError(f"{op}: gradient with respect to '{name}' is not supported; pass it detached")
    v = data(v)
    if not (hasattr(v, "dtype") and hasattr(v, "shape")):
        raise TypeError(f"{op}: argument '{name}' must be a fastconv.Tensor or an array, got {type(v).__name__}")
    return v


def _flatten_classes(op, input, target):
    """(N, C, d1, ...) logits and (N, d1, ...) targets -> (M, C) and (M,); returns the loss shape for 'none'."""
    if input.ndim == 0:
        raise ValueError(f"{op}: 'input' must have a class dimension, got a 0-d tensor")
    if target.dtype.kind not in _INT_KINDS:
        raise TypeError(f"{op}: 'target' must hold integer class indices, got dtype {target.dtype}")
    target = target.astype(np.int64, copy=False)
    if input.ndim == 1:  # unbatched (C,) with a 0-d target
        if target.ndim != 0:
            raise ValueError(f"{op}: unbatched 'input' shape {input.shape} needs a 0-d 'target', got shape {tuple(target.shape)}")
        return input.reshape(1, input.shape[0]), target.reshape(1), ()
    want = (input.shape[0],) + input.shape[2:]
    if tuple(target.shape) != want:
        raise ValueError(f"{op}: 'target' shape {tuple(target.shape)} does not match 'input' shape {input.shape} (expected {want})")
    if input.ndim == 2:
        return input, target, want
    perm = (0,) + tuple(range(2, input.ndim)) + (1,)
    flat = input.permute(*perm).reshape(-1, input.shape[1])
    return flat, target.reshape(-1), want


class CrossEntropy(KernelFunction, Function):
    def forward(self, logits, target, weight, label_smoothing, reduction, ignore_index, backend=None):
        prepare(self, logits, backend)
        self.args = (target, weight, label_smoothing, reduction, ignore_index)
        loss, log_probs = self.k("softmax_cross_entropy_forward")(
            logits, target, weight, label_smoothing, reduction, ignore_index)
        self.save_for_backward(log_probs)
        return loss

    def backward(self, dloss):
        (log_probs,) = self.saved
        dlogits = self.k("softmax_cross_entropy_backward")(dloss, log_probs, *self.args)
        return dlogits, None, None, None, None, None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                  backend=None):
    """Softmax cross-entropy from logits (N, C) or (N, C, d1, ...).

    ``target`` holds integer class indices (N,) / (N, d1, ...) -- the fused kernel path,
    with weights, ignore_index and label smoothing exactly as PyTorch -- or, like
    PyTorch, class probabilities of input's own shape and dtype.
    """
    op = "cross_entropy"
    input = tensor_arg("input", input, op)
    target = _const(op, "target", target)
    weight = _const(op, "weight", weight)
    if target.dtype.kind == "f" and tuple(target.shape) == input.shape and input.ndim >= 1:
        return _soft_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    flat, t, shape = _flatten_classes(op, input, target)
    loss = CrossEntropy.apply(flat, t, weight, label_smoothing, reduction, ignore_index, backend=backend)
    if reduction == "none" and tuple(loss.shape) != shape:
        loss = loss.reshape(shape)
    return loss


def _soft_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    """Class-probability targets of input's shape (PyTorch's second form), composed from log_softmax."""
    from .activation import log_softmax

    op = "cross_entropy"
    if ignore_index != -100:
        raise ValueError(f"{op}: ignore_index is not supported for class-probability (float) targets")
    if target.dtype != input.dtype:
        raise TypeError(f"{op}: mixed dtypes (input={input.dtype}, target={target.dtype}); all must be the same")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"{op}: argument 'label_smoothing' must be in [0, 1], got {label_smoothing!r}")
    cdim = 1 if input.ndim > 1 else 0
    K = input.shape[cdim]
    dt = input.dtype.type
    if label_smoothing > 0:
        target = target * dt(1 - label_smoothing) + dt(label_smoothing / K)
    if weight is not None:
        if tuple(weight.shape) != (K,):
            raise ValueError(f"{op}: 'weight' shape {tuple(weight.shape)} does not match {K} classes")
        target = target * weight.reshape((K,) + (1,) * (input.ndim - cdim - 1))
    loss = -(log_softmax(input, dim=cdim) * Tensor(target)).sum(axis=cdim)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.ndim else loss
    raise ValueError(f"{op}: argument 'reduction' must be one of ('mean', 'sum', 'none'), got {reduction!r}")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities (N, C) or (N, C, d1, ...); composed from indexing."""
    op = "nll_loss"
    input = tensor_arg("input", input, op)
    target = _const(op, "target", target)
    weight = _const(op, "weight", weight)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: argument 'reduction' must be one of ('mean', 'sum', 'none'), got {reduction!r}")
    flat, t, shape = _flatten_classes(op, input, target)
    xp = input.xp
    M, K = flat.shape
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= K))
    if bool(bad.any()):
        raise ValueError(f"{op}: 'target' holds class index {int(t[bad][0])} outside [0, {K}) (ignore_index={ignore_index})")
    if weight is not None and tuple(weight.shape) != (K,):
        raise ValueError(f"{op}: 'weight' shape {tuple(weight.shape)} does not match {K} classes")
    safe = xp.where(valid, t, 0).astype(np.int64)
    w = xp.ones(K, dtype=flat.dtype) if weight is None else weight.astype(flat.dtype, copy=False)
    w_t = xp.where(valid, w[safe], xp.zeros((), flat.dtype))
    picked = flat[(xp.arange(M), safe)]
    loss = -(picked * Tensor(w_t))
    if reduction == "none":
        return loss.reshape(shape)
    total = loss.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / Tensor(xp.asarray(w_t.sum(), dtype=flat.dtype))


class _PairLoss(KernelFunction, Function):
    """Loss of (pred, target) whose target gradient is minus the pred gradient."""

    name = None

    def forward(self, pred, target, *params, backend=None):
        prepare(self, pred, backend)
        self.params = params
        self.save_for_backward(pred, target)
        return self.k(f"{self.name}_forward")(pred, target, *params)

    def backward(self, dloss):
        pred, target = self.saved
        d = self.k(f"{self.name}_backward")(dloss, pred, target, *self.params)
        return (d, -d if self.needs_input_grad[1] else None) + (None,) * len(self.params)


class MSE(_PairLoss):
    name = "mse"


class Huber(_PairLoss):
    name = "huber"


def _pair(op, input, target):
    return tensor_arg("input", input, op), tensor_arg("target", target, op)


def mse_loss(input, target, reduction="mean", backend=None):
    """Mean squared error; input and target must have the same shape."""
    input, target = _pair("mse_loss", input, target)
    return MSE.apply(input, target, reduction, backend=backend)


def huber_loss(input, target, reduction="mean", delta=1.0, backend=None):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2)."""
    input, target = _pair("huber_loss", input, target)
    return Huber.apply(input, target, delta, reduction, backend=backend)


def _reduce(op, loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"{op}: argument 'reduction' must be one of ('mean', 'sum', 'none'), got {reduction!r}")


def l1_loss(input, target, reduction="mean"):
    """|input - target|, composed from tensor ops."""
    input, target = _pair("l1_loss", input, target)
    if input.shape != target.shape:
        raise ValueError(f"l1_loss: 'input' shape {input.shape} does not match 'target' shape {target.shape}")
    return _reduce("l1_loss", (input - target).abs(), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0, backend=None):
    """PyTorch's smooth L1: huber(delta=beta) / beta; plain L1 when beta == 0."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"smooth_l1_loss: argument 'beta' must be a number >= 0, got {beta!r}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, delta=beta, backend=backend) / float(beta)


class BCEWithLogits(KernelFunction, Function):
    def forward(self, logits, target, weight, pos_weight, reduction, backend=None):
        prepare(self, logits, backend)
        self.args = (weight, pos_weight, reduction)
        self.save_for_backward(logits, target)
        return self.k("bce_with_logits_forward")(logits, target, weight, pos_weight, reduction)

    def backward(self, dloss):
        logits, target = self.saved
        d = self.k("bce_with_logits_backward")(dloss, logits, target, *self.args)
        return d, None, None, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None, backend=None):
    """Sigmoid + binary cross-entropy in PyTorch's stable form (no gradient for target/weights)."""
    op = "binary_cross_entropy_with_logits"
    input = tensor_arg("input", input, op)
    target = _const(op, "target", target)
    weight = _const(op, "weight", weight)
    pos_weight = _const(op, "pos_weight", pos_weight)
    return BCEWithLogits.apply(input, target, weight, pos_weight, reduction, backend=backend)
