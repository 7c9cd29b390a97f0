"""Pooling ops with torch.nn.functional's names and signatures.

``max_pool2d``, ``avg_pool2d`` and ``adaptive_avg_pool2d`` are autograd
Functions calling the pool kernels through dispatch; the 1-D variants
reshape to 2-D with H = 1 (the 2-D argmax h*W + w is then just w, torch's
1-D index), and unbatched inputs (C, H, W) / (C, L) gain a batch axis of 1.
``global_avg_pool2d`` is ``adaptive_avg_pool2d(x, 1)``.
"""
from ..kernels import _checks as C

from ..tensor import Function, Tensor
from ._base import KernelFunction, prepare, tensor_arg

__all__ = [
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "max_pool1d",
    "avg_pool1d",
    "adaptive_avg_pool1d",
    "global_avg_pool2d",
]


class MaxPool2d(KernelFunction, Function):
    _release = ("argmax",)

    def forward(self, x, kernel_size, stride, padding, dilation, ceil_mode, backend=None, indices_out=None):
        prepare(self, x, backend)
        self.x_shape = x.shape
        y, self.argmax = self.k("max_pool2d_forward")(x, kernel_size, stride, padding, dilation, ceil_mode)
        if indices_out is not None:  # return_indices: hand the argmax out without making it a graph output
            indices_out.append(self.argmax)
        return y

    def backward(self, dy):
        return (self.k("max_pool2d_backward")(dy, self.argmax, self.x_shape),) + (None,) * 5


class AvgPool2d(KernelFunction, Function):
    def forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad, backend=None):
        prepare(self, x, backend)
        self.x_shape = x.shape
        self.args = (kernel_size, stride, padding, ceil_mode, count_include_pad)
        return self.k("avg_pool2d_forward")(x, *self.args)

    def backward(self, dy):
        return (self.k("avg_pool2d_backward")(dy, self.x_shape, *self.args),) + (None,) * 5


class AdaptiveAvgPool2d(KernelFunction, Function):
    def forward(self, x, output_size, backend=None):
        prepare(self, x, backend)
        self.x_shape = x.shape
        return self.k("adaptive_avg_pool2d_forward")(x, output_size)

    def backward(self, dy):
        return self.k("adaptive_avg_pool2d_backward")(dy, self.x_shape), None


def _batched(x, op, ndim):
    """Accept (N, C, *spatial) or unbatched (C, *spatial); return (4-D-ready tensor, unbatched flag)."""
    x = tensor_arg("x", x, op)
    if x.ndim == ndim - 1:
        return x.reshape(1, *x.shape), True
    if x.ndim != ndim:
        raise ValueError(f"{op}: argument 'x' must be {ndim}-D (batched) or {ndim - 1}-D (unbatched), got shape {x.shape}")
    return x, False


def _unbatch(y, unbatched):
    return y.reshape(*y.shape[1:]) if unbatched else y


def _one(v, op, name):
    """An int or a 1-sequence -> int (1-D pooling arguments)."""
    return C.tuple_n(op, name, v, 1)[0]


def _no_stride(stride):
    return stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               backend=None):
    """Max over windows; with ``return_indices`` also the int64 flat indices h*W + w (a Tensor)."""
    x, unbatched = _batched(x, "max_pool2d", 4)
    fn_stride = None if _no_stride(stride) else stride
    idx = [] if return_indices else None
    y = MaxPool2d.apply(x, kernel_size, fn_stride, padding, dilation, bool(ceil_mode), backend=backend,
                        indices_out=idx)
    if not return_indices:
        return _unbatch(y, unbatched)
    return _unbatch(y, unbatched), _unbatch(Tensor(idx[0]), unbatched)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, backend=None):
    """Mean over windows (PyTorch's divisor rules for padding and ceil_mode)."""
    x, unbatched = _batched(x, "avg_pool2d", 4)
    y = AvgPool2d.apply(x, kernel_size, None if _no_stride(stride) else stride, padding, bool(ceil_mode),
                        bool(count_include_pad), backend=backend)
    return _unbatch(y, unbatched)


def adaptive_avg_pool2d(x, output_size, backend=None):
    """Mean over PyTorch's adaptive bins; ``output_size`` an int or a pair (None keeps that input size)."""
    x, unbatched = _batched(x, "adaptive_avg_pool2d", 4)
    return _unbatch(AdaptiveAvgPool2d.apply(x, output_size, backend=backend), unbatched)


def global_avg_pool2d(x, backend=None):
    """Mean over H and W, keeping them as size-1 axes: (N, C, 1, 1)."""
    return adaptive_avg_pool2d(x, 1, backend=backend)


def _to_2d(x):
    return x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])


def _from_2d(y):
    return y.reshape(y.shape[0], y.shape[1], y.shape[3])


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               backend=None):
    op = "max_pool1d"
    x, unbatched = _batched(x, op, 3)
    k = _one(kernel_size, op, "kernel_size")
    s = k if _no_stride(stride) else _one(stride, op, "stride")
    out = max_pool2d(_to_2d(x), (1, k), (1, s), (0, _one(padding, op, "padding")), (1, _one(dilation, op, "dilation")),
                     ceil_mode, return_indices, backend=backend)
    if return_indices:
        y, idx = out
        return _unbatch(_from_2d(y), unbatched), _unbatch(_from_2d(idx), unbatched)
    return _unbatch(_from_2d(out), unbatched)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, backend=None):
    op = "avg_pool1d"
    x, unbatched = _batched(x, op, 3)
    k = _one(kernel_size, op, "kernel_size")
    s = k if _no_stride(stride) else _one(stride, op, "stride")
    y = avg_pool2d(_to_2d(x), (1, k), (1, s), (0, _one(padding, op, "padding")), ceil_mode, count_include_pad,
                   backend=backend)
    return _unbatch(_from_2d(y), unbatched)


def adaptive_avg_pool1d(x, output_size, backend=None):
    op = "adaptive_avg_pool1d"
    x, unbatched = _batched(x, op, 3)
    y = adaptive_avg_pool2d(_to_2d(x), (1, _one(output_size, op, "output_size")), backend=backend)
    return _unbatch(_from_2d(y), unbatched)
