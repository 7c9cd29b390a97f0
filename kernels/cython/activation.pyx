# cython: language_level=3
"""Activations on the CPU: OpenMP over flat element ranges."""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport isnan

from .. import _checks as C
from ._threads import num_threads

__all__ = ["relu_forward", "relu_backward"]

ctypedef fused real:
    float
    double

cdef Py_ssize_t GRAIN = 32768  # elements per thread below which threading costs more than it saves


cdef void _relu_fwd(real[::1] x, real[::1] y, int nt) noexcept nogil:
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real v
    for i in prange(n, num_threads=nt, schedule="static"):
        v = x[i]
        y[i] = 0 if v < 0 else v  # NaN < 0 is false: NaN passes through


cdef void _relu_bwd(real[::1] dy, real[::1] y, real[::1] dx, int nt) noexcept nogil:
    cdef Py_ssize_t i, n = dy.shape[0]
    for i in prange(n, num_threads=nt, schedule="static"):
        dx[i] = 0 if y[i] <= 0 else dy[i]  # NaN keeps its gradient, as in PyTorch


def relu_forward(x):
    """y = max(x, 0); NaN passes through."""
    x = C.array("relu_forward", "x", x, device="cpu")
    y = np.empty_like(x)
    nt = num_threads(x.size, GRAIN)
    if x.dtype == np.float32:
        _relu_fwd[float](x.reshape(-1), y.reshape(-1), nt)
    else:
        _relu_fwd[double](x.reshape(-1), y.reshape(-1), nt)
    return y


def relu_backward(dy, y):
    """dx = 0 where y <= 0 (the forward output), else dy."""
    op = "relu_backward"
    dy = C.array(op, "dy", dy, device="cpu")
    y = C.array(op, "y", y, device="cpu")
    C.same_shape(op, "dy", dy, "y", y)
    C.same_dtype(op, dy=dy, y=y)
    dx = np.empty_like(dy)
    nt = num_threads(dy.size, GRAIN)
    if dy.dtype == np.float32:
        _relu_bwd[float](dy.reshape(-1), y.reshape(-1), dx.reshape(-1), nt)
    else:
        _relu_bwd[double](dy.reshape(-1), y.reshape(-1), dx.reshape(-1), nt)
    return dx
