"""Optimizer steps on the GPU (optim.cu): one fused launch per call over a
single tensor or a whole flat parameter buffer, 16-byte vector loads when
every buffer is 16-byte aligned.  Same rules as the reference (PyTorch's
single-tensor formulas); host-side scalars are computed in float64."""
import math

import numpy as np

from .. import _checks as C
from . import _module as M

__all__ = ["sgd_step", "adagrad_step", "adam_step"]


def kernel_names():
    return [("optim.cu", f"{k}<{t},{v}>", False)
            for k in ("adam_kernel", "sgd_kernel", "adagrad_kernel")
            for t in ("float", "double") for v in ("true", "false")]


def _validate(op, param, grad, **buffers):
    param = C.inplace(op, "param", param)
    grad = C.array(op, "grad", grad, device="cuda")
    if C._xp(param) is np:
        raise TypeError(f"{op}: argument 'param' is a {type(param).__name__}; this GPU kernel needs a CuPy array")
    C.same_shape(op, "grad", grad, "param", param)
    C.same_dtype(op, param=param, grad=grad)
    for name, buf in buffers.items():
        if buf is not None:
            C.inplace(op, name, buf, like=param)
            if C._xp(buf) is np:
                raise TypeError(f"{op}: argument '{name}' is a {type(buf).__name__}; this GPU kernel needs a CuPy array")
    return param, grad


def _flag(op, name, v):
    if not isinstance(v, bool):
        raise TypeError(f"{op}: argument '{name}' must be a bool, got {v!r}")
    return v


def _launch(kernel, param, arrays, args):
    n = param.size
    if n == 0:
        return
    vec = M.aligned16(*arrays)
    fn = M.function("optim.cu", f"{kernel}<{M.ctype(param.dtype)},{'true' if vec else 'false'}>")
    per = (16 // param.dtype.itemsize) if vec else 1
    M.launch(fn, M.blocks_for(n, per_thread=per), M.THREADS, tuple(arrays) + (M.i64(n),) + args)


def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """torch.optim.SGD's rule, in place (momentum_buf may be None when momentum == 0)."""
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
    has_mom = momentum != 0
    param, grad = _validate(op, param, grad, momentum_buf=momentum_buf if has_mom else None)
    t = param.dtype
    arrays = (param, grad, momentum_buf if has_mom else None)
    vec_arrays = arrays if has_mom else arrays[:2]
    n = param.size
    if n == 0:
        return None
    vec = M.aligned16(*vec_arrays)
    fn = M.function("optim.cu", f"sgd_kernel<{M.ctype(t)},{'true' if vec else 'false'}>")
    per = (16 // t.itemsize) if vec else 1
    M.launch(fn, M.blocks_for(n, per_thread=per), M.THREADS,
             (param, grad, M.ptr_or_null(arrays[2]), M.i64(n), M.scalar(lr, t), M.scalar(momentum, t),
              M.scalar(1 - dampening, t), M.scalar(weight_decay, t), M.i32(has_mom), M.i32(nesterov),
              M.i32(first_step)))
    return None


def adagrad_step(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
    """torch.optim.Adagrad's rule, in place; step is 1-based."""
    op = "adagrad_step"
    step = C.integer(op, "step", step, minimum=1)
    lr = C.number(op, "lr", lr, minimum=0)
    lr_decay = C.number(op, "lr_decay", lr_decay, minimum=0)
    weight_decay = C.number(op, "weight_decay", weight_decay, minimum=0)
    eps = C.number(op, "eps", eps, minimum=0)
    param, grad = _validate(op, param, grad, state_sum=state_sum)
    t = param.dtype
    clr = lr / (1 + (step - 1) * lr_decay)
    _launch("adagrad_kernel", param, (param, grad, state_sum),
            (M.scalar(clr, t), M.scalar(weight_decay, t), M.scalar(eps, t)))
    return None


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam (decoupled=False) or AdamW (decoupled=True), in place, one launch."""
    op = "adam_step"
    step = C.integer(op, "step", step, minimum=1)
    lr = C.number(op, "lr", lr, minimum=0)
    beta1 = C.number(op, "beta1", beta1, minimum=0, maximum=1, max_inclusive=False)
    beta2 = C.number(op, "beta2", beta2, minimum=0, maximum=1, max_inclusive=False)
    eps = C.number(op, "eps", eps, minimum=0)
    weight_decay = C.number(op, "weight_decay", weight_decay, minimum=0)
    decoupled = _flag(op, "decoupled", decoupled)
    param, grad = _validate(op, param, grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    t = param.dtype
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    decay = 1 - lr * weight_decay if decoupled else 1.0
    args = (beta1, beta2, 1 - beta1, 1 - beta2, step_size, bc2_sqrt, eps, weight_decay, decay)
    _launch("adam_kernel", param, (param, grad, exp_avg, exp_avg_sq),
            tuple(M.scalar(a, t) for a in args) + (M.i32(decoupled),))
    return None
