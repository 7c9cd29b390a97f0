"""Activations: forward and backward side by side."""
from .. import _checks as C
from ._util import xp_of

__all__ = ["relu_forward", "relu_backward"]


def relu_forward(x):
    """y = max(x, 0); NaN passes through."""
    x = C.array("relu_forward", "x", x)
    xp = xp_of(x)
    return xp.where(x < 0, xp.zeros((), x.dtype), x)


def relu_backward(dy, y):
    """dx = 0 where y <= 0 (the forward output), else dy."""
    op = "relu_backward"
    dy = C.array(op, "dy", dy)
    y = C.array(op, "y", y)
    C.same_shape(op, "dy", dy, "y", y)
    C.same_dtype(op, dy=dy, y=y)
    xp = xp_of(dy)
    return xp.where(y <= 0, xp.zeros((), dy.dtype), dy)  # NaN keeps its gradient, as in PyTorch
