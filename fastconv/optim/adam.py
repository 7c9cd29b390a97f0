"""Adam and AdamW (torch.optim.Adam / AdamW): one ``adam_step`` kernel, ``decoupled`` tells them apart."""
from ._validate import number
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam; weight decay is an L2 term added to the gradient."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, flat=False, backend=None):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, flat=flat, backend=backend)

    def _check_group(self, g):
        name = type(self).__name__
        number(name, "lr", g["lr"], 0.0)
        number(name, "eps", g["eps"], 0.0)
        number(name, "weight_decay", g["weight_decay"], 0.0)
        betas = g["betas"]
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair, got {betas!r}")
        number(name, "beta1", betas[0], 0.0, 1.0)
        number(name, "beta2", betas[1], 0.0, 1.0)

    def _update(self, group, param, grad, state):
        exp_avg = self._buffer(state, "exp_avg", param)
        exp_avg_sq = self._buffer(state, "exp_avg_sq", param)
        step = state.get("step", 0) + 1
        beta1, beta2 = group["betas"]
        self._kernel("adam_step", param)(
            param, grad, exp_avg, exp_avg_sq, step, group["lr"], beta1, beta2, group["eps"],
            group["weight_decay"], self.decoupled)
        state["step"] = step  # counted only once the kernel has accepted the step


class AdamW(Adam):
    """Adam with decoupled weight decay: param *= 1 - lr * weight_decay before the Adam update."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *, flat=False, backend=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, flat=flat, backend=backend)
