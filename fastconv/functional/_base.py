"""Helpers shared by the functional ops."""
from ..dispatch import kernel
from ..tensor import Tensor


class KernelFunction:
    """Mixin: ``self.k(op)`` resolves a kernel on this call's device and backend."""

    backend = None

    def k(self, op):
        return kernel(op, self.like, self.backend)


def prepare(ctx, like, backend):
    ctx.like = like
    ctx.backend = backend


def data(x):
    return x.data if isinstance(x, Tensor) else x


def tensor_arg(name, x, op):
    if not isinstance(x, Tensor):
        if hasattr(x, "dtype") and hasattr(x, "shape"):
            return Tensor(x)
        raise TypeError(f"{op}: argument '{name}' must be a fastconv.Tensor or an array, got {type(x).__name__}")
    return x
