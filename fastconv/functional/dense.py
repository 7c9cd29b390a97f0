"""Dense (fully connected) op."""
from ..tensor import Function
from ._base import KernelFunction, prepare, tensor_arg

__all__ = ["linear"]


class Linear(KernelFunction, Function):
    def forward(self, x, w, b, backend=None):
        prepare(self, x, backend)
        self.has_bias = b is not None
        self.save_for_backward(x, w)
        return self.k("linear_forward")(x, w, b)

    def backward(self, dy):
        x, w = self.saved
        dx, dw, db = self.k("linear_backward")(dy, x, w, self.has_bias)
        return dx, dw, db


def linear(input, weight, bias=None, backend=None):
    """y = input @ weight.T + bias; input (..., in), weight (out, in), bias (out,)."""
    op = "linear"
    return Linear.apply(tensor_arg("input", input, op), tensor_arg("weight", weight, op),
                        None if bias is None else tensor_arg("bias", bias, op), backend=backend)
