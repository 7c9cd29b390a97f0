"""Activation ops (forward and backward side by side)."""
from ..tensor import Function, Tensor
from ._base import KernelFunction, prepare, tensor_arg

__all__ = ["relu", "relu6", "leaky_relu", "prelu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax"]


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


def relu6(x, inplace=False):
    """min(max(x, 0), 6), composed from ``where``; like PyTorch, the gradient is 0 at
    x <= 0 and x >= 6 and passes through NaN."""
    from ..ops import where

    x = tensor_arg("x", x, "relu6")
    d = x.data
    if d.dtype.kind != "f":
        raise TypeError(f"relu6: argument 'x' has dtype {d.dtype}; expected float32 or float64")
    xp = x.xp
    outside = (d <= 0) | (d >= 6)
    edge = Tensor(xp.where(d <= 0, xp.zeros((), d.dtype), xp.full((), 6, d.dtype)))
    return where(~outside, x, edge)


class LeakyReLU(KernelFunction, Function):
    def forward(self, x, negative_slope, backend=None):
        prepare(self, x, backend)
        self.slope = negative_slope
        self.save_for_backward(x)
        return self.k("leaky_relu_forward")(x, negative_slope)

    def backward(self, dy):
        (x,) = self.saved
        return self.k("leaky_relu_backward")(dy, x, self.slope), None


def leaky_relu(x, negative_slope=0.01, inplace=False, backend=None):
    """x where x > 0, else negative_slope * x."""
    return LeakyReLU.apply(tensor_arg("x", x, "leaky_relu"), negative_slope, backend=backend)


class PReLU(KernelFunction, Function):
    def forward(self, x, weight, backend=None):
        prepare(self, x, backend)
        self.save_for_backward(x, weight)
        return self.k("prelu_forward")(x, weight)

    def backward(self, dy):
        x, weight = self.saved
        dx, dw = self.k("prelu_backward")(dy, x, weight)
        return dx, dw


def prelu(x, weight, backend=None):
    """x where x > 0, else weight[c] * x; weight (C,) on axis 1, or (1,)."""
    return PReLU.apply(tensor_arg("x", x, "prelu"), tensor_arg("weight", weight, "prelu"), backend=backend)


class _SavedOutput(KernelFunction, Function):
    """Element-wise op whose backward needs only its output."""

    name = None

    def forward(self, x, backend=None):
        prepare(self, x, backend)
        y = self.k(f"{self.name}_forward")(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return (self.k(f"{self.name}_backward")(dy, y),)


class Sigmoid(_SavedOutput):
    name = "sigmoid"


class Tanh(_SavedOutput):
    name = "tanh"


def sigmoid(x, backend=None):
    return Sigmoid.apply(tensor_arg("x", x, "sigmoid"), backend=backend)


def tanh(x, backend=None):
    return Tanh.apply(tensor_arg("x", x, "tanh"), backend=backend)


class GELU(KernelFunction, Function):
    def forward(self, x, approximate, backend=None):
        prepare(self, x, backend)
        self.approximate = approximate
        self.save_for_backward(x)
        return self.k("gelu_forward")(x, approximate)

    def backward(self, dy):
        (x,) = self.saved
        return self.k("gelu_backward")(dy, x, self.approximate), None


def gelu(x, approximate="none", backend=None):
    """x * Phi(x); approximate='tanh' uses the tanh formula."""
    return GELU.apply(tensor_arg("x", x, "gelu"), approximate, backend=backend)


class _AxisOp(KernelFunction, Function):
    name = None

    def forward(self, x, axis, backend=None):
        prepare(self, x, backend)
        self.axis = axis
        y = self.k(f"{self.name}_forward")(x, axis)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return self.k(f"{self.name}_backward")(dy, y, self.axis), None


class Softmax(_AxisOp):
    name = "softmax"


class LogSoftmax(_AxisOp):
    name = "log_softmax"


def softmax(x, dim=-1, backend=None):
    """exp(x) / sum(exp(x)) along ``dim`` (max-subtracted)."""
    return Softmax.apply(tensor_arg("x", x, "softmax"), dim, backend=backend)


def log_softmax(x, dim=-1, backend=None):
    """x - logsumexp(x) along ``dim``."""
    return LogSoftmax.apply(tensor_arg("x", x, "log_softmax"), dim, backend=backend)
