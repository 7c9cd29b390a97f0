"""Activation ops (forward and backward side by side)."""
from ..tensor import Function
from ._base import KernelFunction, prepare, tensor_arg

__all__ = ["relu"]


class ReLU(KernelFunction, Function):
    def forward(self, x, backend=None):
        prepare(self, x, backend)
        y = self.k("relu_forward")(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return (self.k("relu_backward")(dy, y),)


def relu(x, inplace=False, backend=None):
    """max(x, 0).  ``inplace`` is accepted for torch compatibility and ignored."""
    return ReLU.apply(tensor_arg("x", x, "relu"), backend=backend)
