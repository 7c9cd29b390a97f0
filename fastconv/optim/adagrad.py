"""Adagrad (torch.optim.Adagrad)."""
from ._validate import number
from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 *, flat=False, backend=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, defaults, flat=flat, backend=backend)

    def _check_group(self, g):
        for k in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            number("Adagrad", k, g[k], 0.0)

    def _update(self, group, param, grad, state):
        state_sum = self._buffer(state, "sum", param, group["initial_accumulator_value"])
        step = state.get("step", 0) + 1
        self._kernel("adagrad_step", param)(
            param, grad, state_sum, step, group["lr"], group["lr_decay"], group["weight_decay"], group["eps"])
        state["step"] = step  # counted only once the kernel has accepted the step
