"""Gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_), in place on ``p.grad``."""
import math
import numbers

from .._xp import get_xp
from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    params = list(parameters)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"gradient clipping takes fastconv Tensors, got {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


def _real(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"gradient clipping: '{name}' must be a number, got {v!r}")
    return float(v)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint ``norm_type`` norm is at most ``max_norm``.

    The total norm is the norm of the per-gradient norms; every gradient is
    multiplied by min(1, max_norm / (total + 1e-6)), as in PyTorch.  Returns the
    total norm (before clipping) as a 0-d Tensor.
    """
    grads = _grads(parameters)
    max_norm = _real("max_norm", max_norm)
    norm_type = math.inf if norm_type in ("inf", "Inf") else _real("norm_type", norm_type)
    if not grads:
        return Tensor(0.0)
    xp = get_xp(grads[0])
    if norm_type == math.inf:
        norms = [xp.abs(g).max() if g.size else xp.zeros((), g.dtype) for g in grads]
        total = xp.stack(norms).max()
    else:
        norms = [xp.linalg.norm(g.reshape(-1), norm_type) for g in grads]
        total = xp.linalg.norm(xp.stack(norms), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} is non-finite ({float(total)}), "
                           "so it cannot be clipped; pass error_if_nonfinite=False to scale anyway")
    coef = xp.minimum(total.dtype.type(max_norm) / (total + total.dtype.type(1e-6)), total.dtype.type(1.0))
    for g in grads:
        g *= coef.astype(g.dtype)
    return Tensor(total)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value] (NaN stays NaN)."""
    clip_value = _real("clip_value", clip_value)
    for g in _grads(parameters):
        get_xp(g).clip(g, -clip_value, clip_value, out=g)
