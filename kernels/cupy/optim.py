"""Optimizer steps on the GPU (optim.cu): one fused launch per call over a
single tensor or a whole flat parameter buffer, 16-byte vector loads when
every buffer is 16-byte aligned.  Same rules as the reference (PyTorch's
single-tensor formulas); host-side scalars are computed in float64."""
import math


from ..reference import optim as R
from . import _module as M

__all__ = ["sgd_step", "adagrad_step", "adam_step"]


def kernel_names():
    return [("optim.cu", f"{k}<{t},{v}>", False)
            for k in ("adam_kernel", "sgd_kernel", "adagrad_kernel")
            for t in ("float", "double") for v in ("true", "false")]


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
    param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step = R.check_sgd(
        param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step, device="cuda")
    has_mom = momentum != 0
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
    param, grad, state_sum, step, lr, lr_decay, weight_decay, eps = R.check_adagrad(
        param, grad, state_sum, step, lr, lr_decay, weight_decay, eps, device="cuda")
    t = param.dtype
    clr = lr / (1 + (step - 1) * lr_decay)
    _launch("adagrad_kernel", param, (param, grad, state_sum),
            (M.scalar(clr, t), M.scalar(weight_decay, t), M.scalar(eps, t)))
    return None


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam (decoupled=False) or AdamW (decoupled=True), in place, one launch."""
    param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled = R.check_adam(
        param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled, device="cuda")
    t = param.dtype
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    decay = 1 - lr * weight_decay if decoupled else 1.0
    args = (beta1, beta2, 1 - beta1, 1 - beta2, step_size, bc2_sqrt, eps, weight_decay, decay)
    _launch("adam_kernel", param, (param, grad, exp_avg, exp_avg_sq),
            tuple(M.scalar(a, t) for a in args) + (M.i32(decoupled),))
    return None
