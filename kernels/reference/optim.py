"""Optimizer steps, in place, with PyTorch's exact update rules.

Each kernel updates ``param`` and its state buffers in place and returns None.
All arrays share one shape and dtype; they are single tensors or whole flat
buffers (one call per parameter group).  In-place arrays must be C-contiguous
and writeable (``_checks.inplace``); ``grad`` is only read.  ``step`` is the
1-based count of the step being taken.
"""
import math

from .. import _checks as C
from ._util import xp_of

__all__ = ["sgd_step", "adagrad_step", "adam_step"]


def _validate(op, param, grad, device=None, **buffers):
    """Check param/grad and the in-place buffers (None entries are skipped)."""
    param = C.inplace(op, "param", param, device=device)
    grad = C.array(op, "grad", grad, device=device)
    C.same_shape(op, "grad", grad, "param", param)
    C.same_dtype(op, param=param, grad=grad)
    for name, buf in buffers.items():
        if buf is not None:
            C.inplace(op, name, buf, like=param, device=device)
    C.same_device(op, param=param, grad=grad, **buffers)
    return param, grad


# ---- argument checks, shared by every backend (device='cpu'/'cuda' for compiled kernels) ----

def check_sgd(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step,
              device=None):
    """Validated (param, grad, momentum_buf or None, lr, momentum, dampening, weight_decay, nesterov, first_step)."""
    op = "sgd_step"
    lr = C.number(op, "lr", lr, minimum=0)
    momentum = C.number(op, "momentum", momentum, minimum=0)
    dampening = C.number(op, "dampening", dampening)
    weight_decay = C.number(op, "weight_decay", weight_decay, minimum=0)
    nesterov = _flag(op, "nesterov", nesterov)
    first_step = _flag(op, "first_step", first_step)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{op}: Nesterov momentum requires momentum > 0 and dampening = 0 "
                         f"(got momentum={momentum}, dampening={dampening})")
    if momentum != 0 and momentum_buf is None:
        raise ValueError(f"{op}: argument 'momentum_buf' is required when momentum != 0")
    buf = momentum_buf if momentum != 0 else None
    param, grad = _validate(op, param, grad, device, momentum_buf=buf)
    return param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step


def check_adagrad(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps, device=None):
    """Validated (param, grad, state_sum, step, lr, lr_decay, weight_decay, eps)."""
    op = "adagrad_step"
    step = C.integer(op, "step", step, minimum=1)
    lr = C.number(op, "lr", lr, minimum=0)
    lr_decay = C.number(op, "lr_decay", lr_decay, minimum=0)
    weight_decay = C.number(op, "weight_decay", weight_decay, minimum=0)
    eps = C.number(op, "eps", eps, minimum=0)
    param, grad = _validate(op, param, grad, device, state_sum=state_sum)
    return param, grad, state_sum, step, lr, lr_decay, weight_decay, eps


def check_adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled,
               device=None):
    """Validated (param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled)."""
    op = "adam_step"
    step = C.integer(op, "step", step, minimum=1)
    lr = C.number(op, "lr", lr, minimum=0)
    beta1 = C.number(op, "beta1", beta1, minimum=0, maximum=1, max_inclusive=False)
    beta2 = C.number(op, "beta2", beta2, minimum=0, maximum=1, max_inclusive=False)
    eps = C.number(op, "eps", eps, minimum=0)
    weight_decay = C.number(op, "weight_decay", weight_decay, minimum=0)
    decoupled = _flag(op, "decoupled", decoupled)
    param, grad = _validate(op, param, grad, device, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    return param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled


def _flag(op, name, v):
    if not isinstance(v, bool):
        raise TypeError(f"{op}: argument '{name}' must be a bool, got {v!r}")
    return v


def _decayed(grad, param, weight_decay):
    """grad + weight_decay * param (L2 penalty folded into the gradient), a new array."""
    return grad + weight_decay * param if weight_decay != 0 else grad


def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """SGD with optional momentum / dampening / Nesterov / weight decay (torch.optim.SGD).

        d = grad + weight_decay * param
        momentum != 0:  buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d
                        d = d + momentum * buf (Nesterov) or d = buf
        param -= lr * d
    Plain SGD is the same update with momentum = 0 (``momentum_buf`` is then unused
    and may be None).
    """
    param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step = check_sgd(
        param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step)
    d = _decayed(grad, param, weight_decay)
    if momentum != 0:
        if first_step:
            momentum_buf[...] = d
        else:
            momentum_buf *= momentum
            momentum_buf += (1 - dampening) * d
        d = d + momentum * momentum_buf if nesterov else momentum_buf
    param -= lr * d


def adagrad_step(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad):

        g = grad + weight_decay * param
        state_sum += g * g
        param -= lr / (1 + (step - 1) * lr_decay) * g / (sqrt(state_sum) + eps)
    """
    param, grad, state_sum, step, lr, lr_decay, weight_decay, eps = check_adagrad(
        param, grad, state_sum, step, lr, lr_decay, weight_decay, eps)
    xp = xp_of(param)
    g = _decayed(grad, param, weight_decay)
    clr = lr / (1 + (step - 1) * lr_decay)
    std = xp.multiply(g, g)
    state_sum += std
    xp.sqrt(state_sum, out=std)
    std += eps
    xp.divide(g, std, out=std)
    std *= -clr
    param += std


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam, or AdamW when ``decoupled`` (torch.optim.Adam / AdamW):

        decoupled:  param *= 1 - lr * weight_decay     else:  g = grad + weight_decay * param
        exp_avg    = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        param -= lr / (1 - beta1**step) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2**step) + eps)
    """
    param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled = check_adam(
        param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled)
    xp = xp_of(param)
    if decoupled:
        if weight_decay != 0:
            param *= 1 - lr * weight_decay
        g = grad
    else:
        g = _decayed(grad, param, weight_decay)
    t = xp.empty_like(param)  # two scratch arrays instead of a temporary per operation
    w = 1 - beta1
    if w < 0.5:  # torch.lerp's two-sided formula, for the same rounding
        xp.subtract(g, exp_avg, out=t)
        t *= w
        exp_avg += t
    else:
        xp.subtract(g, exp_avg, out=t)
        t *= 1 - w
        xp.subtract(g, t, out=exp_avg)
    exp_avg_sq *= beta2
    xp.multiply(g, 1 - beta2, out=t)
    t *= g
    exp_avg_sq += t
    step_size = lr / (1 - beta1 ** step)
    denom = xp.sqrt(exp_avg_sq)
    denom /= math.sqrt(1 - beta2 ** step)
    denom += eps
    xp.divide(exp_avg, denom, out=t)
    t *= -step_size
    param += t
