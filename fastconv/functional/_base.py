"""Helpers shared by the functional ops."""
from ..dispatch import kernel
from ..kernels._blas import blas_threads as _blas_threads
from ..tensor import Tensor

SMALL_GEMM = 1 << 22  # multiply-adds below which a GEMM runs on one BLAS thread (~0.1 ms on one core)


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


class _NumpyBlas:
    """NumPy's OpenBLAS as a threadpoolctl controller (None when unavailable), found once."""

    @staticmethod
    def get():
        return _blas_threads._find("numpy")


def blas_threads(n):
    """Run NumPy's BLAS calls in the block on at most ``n`` threads (restored after); ``n`` None:
    untouched (kernels/_blas.py).  Callers pass 1 below ``SMALL_GEMM`` (small GEMMs only pay for
    waking a second thread) and fastconv's thread count, as a cap, otherwise."""
    return _blas_threads("numpy", n)
