"""Convolution layers (Conv1d, Conv2d) with torch's parameters, defaults and initialisation."""
import numpy as np

from .. import functional as F
from . import init
from .module import Module, Parameter


def _pair(v, name, op):
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{op}: '{name}' must be an int or a pair, got {v}")
    return v


class _ConvNd(Module):
    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, dtype):
        super().__init__()
        op = type(self).__name__
        if padding_mode != "zeros":
            raise ValueError(f"{op}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{op}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        norm = (lambda v, name: (int(v),) if isinstance(v, (int, np.integer)) else tuple(int(i) for i in v)) \
            if self._dims == 1 else (lambda v, name: _pair(v, name, op))
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = norm(kernel_size, "kernel_size")
        self.stride = norm(stride, "stride")
        self.dilation = norm(dilation, "dilation")
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            elif padding == "same":
                if any(s != 1 for s in self.stride):
                    raise ValueError(f"{op}: padding='same' needs stride 1, got stride {self.stride}")
                total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
                if any(t % 2 for t in total):
                    raise ValueError(f"{op}: padding='same' with an even effective kernel needs asymmetric "
                                     "padding, which is not supported")
                padding = tuple(t // 2 for t in total)
            else:
                raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        self.padding = norm(padding, "padding")
        self.padding_mode = padding_mode
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        self.bias = Parameter(np.empty(out_channels, dtype=dtype)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_weight_bias_(self.weight, self.bias)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if any(self.padding):
            s += f", padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over NCHW input; weight (out, in/groups, kH, kW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)

    def forward_relu(self, x):
        """``relu(self(x))`` through ``F.conv2d_relu``: the bias and the ReLU in the conv kernel's
        epilogue (same result and gradients, no pre-activation kept)."""
        return F.conv2d_relu(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, groups=self.groups)


class Conv1d(_ConvNd):
    """1-D convolution over NCL input; weight (out, in/groups, k)."""

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype)

    def forward(self, x):
        return F.conv1d(x, self.weight, self.bias, stride=self.stride[0], padding=self.padding[0],
                        dilation=self.dilation[0], groups=self.groups)
