"""Stochastic gradient descent (torch.optim.SGD)."""
from ._validate import number
from .optimizer import Optimizer


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and weight decay.

    Plain SGD and momentum SGD are the one ``sgd_step`` kernel; the momentum
    buffer is created on a parameter's first step and set to its gradient there.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 *, flat=False, backend=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults, flat=flat, backend=backend)

    def _check_group(self, g):
        number("SGD", "lr", g["lr"], 0.0)
        number("SGD", "momentum", g["momentum"], 0.0)
        number("SGD", "dampening", g["dampening"])
        number("SGD", "weight_decay", g["weight_decay"], 0.0)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")

    def _update(self, group, param, grad, state):
        buf = state.get("momentum_buffer") if group["momentum"] != 0 else None
        first = group["momentum"] != 0 and buf is None
        if first:
            buf = self._full(param)  # the kernel sets it to the gradient
        self._kernel("sgd_step", param)(
            param, grad, buf, group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
            bool(group["nesterov"]), first)
        if first:  # kept only once the kernel has accepted the step
            state["momentum_buffer"] = buf
