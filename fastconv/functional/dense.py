"""Dense (fully connected) op."""
from .. import config
from .._xp import is_cupy_array
from ..tensor import Function
from ._base import SMALL_GEMM, KernelFunction, blas_threads, prepare, tensor_arg

__all__ = ["linear"]


class Linear(KernelFunction, Function):
    def forward(self, x, w, b, backend=None):
        prepare(self, x, backend)
        self.has_bias = b is not None
        self.save_for_backward(x, w)
        with self._blas(x, w):
            return self.k("linear_forward")(x, w, b)

    def backward(self, dy):
        x, w = self.saved
        with self._blas(x, w):
            dx, dw, db = self.k("linear_backward")(dy, x, w, self.has_bias)
        return dx, dw, db

    @staticmethod
    def _blas(x, w):
        """One BLAS thread for small products, fastconv's thread count otherwise (CPU arrays)."""
        if is_cupy_array(x) or not hasattr(w, "shape") or len(getattr(w, "shape", ())) != 2:
            return blas_threads(None)
        macs = (x.size // max(1, w.shape[1])) * w.shape[0] * w.shape[1]
        return blas_threads(1 if macs < SMALL_GEMM else config.get_num_threads())


def linear(input, weight, bias=None, backend=None):
    """y = input @ weight.T + bias; input (..., in), weight (out, in), bias (out,)."""
    op = "linear"
    return Linear.apply(tensor_arg("input", input, op), tensor_arg("weight", weight, op),
                        None if bias is None else tensor_arg("bias", bias, op), backend=backend)
