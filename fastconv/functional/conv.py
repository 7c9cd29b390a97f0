"""Convolution ops: ``conv2d`` and ``conv1d`` with torch.nn.functional's signatures.

One autograd Function (``Conv2d``) calls the conv kernels through dispatch;
``conv1d`` reshapes to 2-D with H = 1 and reuses it, and unbatched inputs
(C, H, W) / (C, L) gain a batch axis of 1, like torch.  ``padding`` may be
an int, a pair, ``'valid'`` (no padding) or ``'same'`` (stride 1 only; an
odd total padding puts the extra row/column at the bottom/right, like
torch: the kernel pads one more on both sides and the first output
row/column is dropped).
"""
import inspect

from ..kernels import _checks as C
from ..tensor import Function
from ._base import KernelFunction, prepare, tensor_arg

__all__ = ["conv2d", "conv2d_relu", "conv1d"]


class Conv2d(KernelFunction, Function):
    def forward(self, x, w, b, stride=1, padding=0, dilation=1, groups=1, backend=None):
        prepare(self, x, backend)
        self.geom = (stride, padding, dilation, groups)
        self.x_shape, self.w_shape = x.shape, w.shape
        y = self.k("conv2d_forward")(x, w, b, *self.geom)
        self.save_for_backward(x, w)
        return y

    def backward(self, dy):
        x, w = self.saved
        need_x, need_w, need_b = (tuple(self.needs_input_grad) + (False,) * 3)[:3]
        dx = self.k("conv2d_backward_input")(dy, w, self.x_shape, *self.geom) if need_x else None
        dw = self.k("conv2d_backward_weight")(dy, x, self.w_shape, *self.geom) if need_w else None
        db = self.k("conv2d_backward_bias")(dy) if need_b else None
        return dx, dw, db


_FUSED = {}


def _has_epilogue(fn):
    """Whether a backend's conv2d_forward takes ``activation`` (reference, Cython, CuPy)."""
    ok = _FUSED.get(fn)
    if ok is None:
        try:
            ok = _FUSED[fn] = "activation" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # no introspectable signature: compose
            ok = _FUSED[fn] = False
    return ok


class Conv2dReLU(Conv2d):
    """relu(conv2d(x, w) + b) as one op: the backend's fused epilogue where it has one (else its
    relu kernel after the conv); only the output is kept (the relu mask comes from it)."""

    def forward(self, x, w, b, stride=1, padding=0, dilation=1, groups=1, backend=None):
        prepare(self, x, backend)
        self.geom = (stride, padding, dilation, groups)
        self.x_shape, self.w_shape = x.shape, w.shape
        fwd = self.k("conv2d_forward")
        if _has_epilogue(fwd):
            y = fwd(x, w, b, *self.geom, activation="relu")
        else:
            y = self.k("relu_forward")(fwd(x, w, b, *self.geom))
        self.y = y
        self.save_for_backward(x, w)
        return y

    def backward(self, dy):
        return super().backward(self.k("relu_backward")(dy, self.y))


def _same_padding(op, kernel, stride, dilation):
    """'same' -> (symmetric padding per axis, axes whose total padding is odd)."""
    if any(s != 1 for s in stride):
        raise ValueError(f"{op}: padding='same' is only supported with stride 1, got stride {stride}")
    pads, odd = [], []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        pads.append(total // 2 + total % 2)
        odd.append(total % 2 == 1)
    return tuple(pads), tuple(odd)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """2-D cross-correlation of x (N, C, H, W) or (C, H, W) with weight (K, C/groups, R, S)."""
    return _conv2d("conv2d", Conv2d, x, weight, bias, stride, padding, dilation, groups, backend)


def conv2d_relu(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """``relu(conv2d(x, weight, bias, ...))`` as one op: the bias and the ReLU run in the conv
    kernel's epilogue where the backend has one (Cython, CuPy, reference), and neither the
    pre-activation nor a separate ReLU node is kept.  ``nn.Sequential`` uses it for a
    ``Conv2d`` followed by a ``ReLU``."""
    return _conv2d("conv2d_relu", Conv2dReLU, x, weight, bias, stride, padding, dilation, groups, backend)


def _conv2d(op, fn, x, weight, bias, stride, padding, dilation, groups, backend):
    x = tensor_arg("x", x, op)
    weight = tensor_arg("weight", weight, op)
    bias = None if bias is None else tensor_arg("bias", bias, op)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.reshape(1, *x.shape)
    odd = (False, False)
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if weight.ndim != 4:
                raise ValueError(f"{op}: argument 'weight' must be 4-D (K, C/groups, R, S), got shape {weight.shape}")
            padding, odd = _same_padding(op, weight.shape[2:], C.tuple_n(op, "stride", stride, 2),
                                         C.tuple_n(op, "dilation", dilation, 2))
        else:
            raise ValueError(f"{op}: argument 'padding' must be an int, a pair, 'valid' or 'same', got {padding!r}")
    y = fn.apply(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 backend=backend)
    if any(odd):
        y = y[:, :, 1 if odd[0] else 0:, 1 if odd[1] else 0:]
    if unbatched:
        y = y.reshape(*y.shape[1:])
    return y


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, backend=None):
    """1-D cross-correlation of x (N, C, L) or (C, L) with weight (K, C/groups, S), via conv2d with H = 1."""
    op = "conv1d"
    x = tensor_arg("x", x, op)
    weight = tensor_arg("weight", weight, op)
    if x.ndim not in (2, 3):
        raise ValueError(f"{op}: argument 'x' must be 3-D (N, C, L) or 2-D (C, L), got shape {x.shape}")
    if weight.ndim != 3:
        raise ValueError(f"{op}: argument 'weight' must be 3-D (K, C/groups, S), got shape {weight.shape}")
    unbatched = x.ndim == 2
    if unbatched:
        x = x.reshape(1, *x.shape)
    (stride,) = C.tuple_n(op, "stride", stride, 1)
    (dilation,) = C.tuple_n(op, "dilation", dilation, 1)
    if not isinstance(padding, str):
        (padding,) = C.tuple_n(op, "padding", padding, 1)
        padding = (0, padding)
    y = conv2d(x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]), weight.reshape(*weight.shape[:2], 1, weight.shape[2]),
               bias, stride=(1, stride), padding=padding, dilation=(1, dilation), groups=groups, backend=backend)
    y = y.reshape(y.shape[0], y.shape[1], y.shape[3])
    if unbatched:
        y = y.reshape(*y.shape[1:])
    return y
