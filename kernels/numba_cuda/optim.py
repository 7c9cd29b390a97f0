"""Optimizer steps: one fused, grid-stride launch per call over a flat buffer (or one tensor).

Each element is read and written once: param, grad and the state buffers
stream through at memory bandwidth.  Scalars (learning rate, bias
corrections, ...) are folded on the host and passed in the array's dtype.
The update formulas follow the reference (PyTorch's rules, including the
two-sided lerp of Adam's first moment); on a GPU the compiler may fuse
multiply-adds, so float32 results can differ from the reference in the last bit.
"""
import math

from numba import cuda

from ..reference import optim as R
from ._launch import DEVICE, THREADS, Launch, blocks, jit

__all__ = ["sgd_step", "adagrad_step", "adam_step"]


@jit
def _sgd(param, grad, buf, lr, momentum, damp1, wd, nesterov, first, use_momentum):
    i = cuda.grid(1)
    while i < param.size:
        p = param[i]
        d = grad[i]
        if wd != 0:
            d = d + wd * p
        if use_momentum:
            if first:
                b = d
            else:
                b = momentum * buf[i] + damp1 * d
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        param[i] = p - lr * d
        i += cuda.gridsize(1)


@jit
def _adagrad(param, grad, state_sum, neg_clr, wd, eps):
    i = cuda.grid(1)
    while i < param.size:
        p = param[i]
        g = grad[i]
        if wd != 0:
            g = g + wd * p
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = p + (g / (math.sqrt(s) + eps)) * neg_clr
        i += cuda.gridsize(1)


@jit
def _adam(param, grad, m, v, k, decoupled, lerp_low):
    decay_mul, wd, w1, one_minus_w1, beta2, one_minus_beta2, neg_step, bc2_sqrt, eps = k
    i = cuda.grid(1)
    while i < param.size:
        p = param[i]
        if decoupled:
            if wd != 0:
                p = p * decay_mul
            g = grad[i]
        else:
            g = grad[i]
            if wd != 0:
                g = g + wd * p
        mi = m[i]
        if lerp_low:  # torch.lerp's two-sided formula
            mi = mi + (g - mi) * w1
        else:
            mi = g - (g - mi) * one_minus_w1
        vi = v[i] * beta2 + (g * one_minus_beta2) * g
        m[i] = mi
        v[i] = vi
        param[i] = p + (mi / (math.sqrt(vi) / bc2_sqrt + eps)) * neg_step
        i += cuda.gridsize(1)


def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """SGD with optional momentum / dampening / Nesterov / weight decay (torch.optim.SGD)."""
    param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step = R.check_sgd(
        param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step, device=DEVICE)
    use_m = momentum != 0
    if param.size == 0:
        return None
    t = param.dtype.type
    L = Launch(param)
    dp = L.out(param)
    db = L.out(momentum_buf) if use_m else dp
    _sgd[blocks(param.size), THREADS, L.stream](
        dp, L.dev(grad), db, t(lr), t(momentum), t(1 - dampening), t(weight_decay),
        int(nesterov), int(first_step), int(use_m))
    L.done()
    return None


def adagrad_step(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
    """Adagrad (torch.optim.Adagrad); ``step`` is 1-based."""
    param, grad, state_sum, step, lr, lr_decay, weight_decay, eps = R.check_adagrad(
        param, grad, state_sum, step, lr, lr_decay, weight_decay, eps, device=DEVICE)
    if param.size == 0:
        return None
    t = param.dtype.type
    clr = lr / (1 + (step - 1) * lr_decay)
    L = Launch(param)
    _adagrad[blocks(param.size), THREADS, L.stream](
        L.out(param), L.dev(grad), L.out(state_sum), t(-clr), t(weight_decay), t(eps))
    L.done()
    return None


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam, or AdamW when ``decoupled``; ``step`` is 1-based."""
    param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled = R.check_adam(
        param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled, device=DEVICE)
    if param.size == 0:
        return None
    t = param.dtype.type
    w = 1 - beta1
    k = tuple(t(v) for v in (
        1 - lr * weight_decay, weight_decay, w, 1 - w, beta2, 1 - beta2,
        -(lr / (1 - beta1 ** step)), math.sqrt(1 - beta2 ** step), eps))
    L = Launch(param)
    _adam[blocks(param.size), THREADS, L.stream](
        L.out(param), L.dev(grad), L.out(exp_avg), L.out(exp_avg_sq), k, int(decoupled), int(w < 0.5))
    L.done()
    return None
