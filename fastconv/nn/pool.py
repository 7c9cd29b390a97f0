"""Pooling layers.  The 1-D ones run the 2-D functionals on an (N, C, 1, L) view."""
from .. import functional as F
from .module import Module


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


def _check_1d(x, op):
    if x.ndim != 3:
        raise ValueError(f"{op}: expected input of shape (N, C, L), got {x.shape}")


def _int(v):
    return v if v is None or isinstance(v, int) else int(v[0])


class MaxPool1d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _int(kernel_size), _int(stride), _int(padding)
        self.dilation, self.ceil_mode = _int(dilation), ceil_mode

    def forward(self, x):
        _check_1d(x, "MaxPool1d")
        n, c, l = x.shape
        stride = self.kernel_size if self.stride is None else self.stride
        y = F.max_pool2d(x.reshape(n, c, 1, l), (1, self.kernel_size), stride=(1, stride), padding=(0, self.padding),
                         dilation=(1, self.dilation), ceil_mode=self.ceil_mode)
        return y.reshape(n, c, y.shape[-1])


class AvgPool1d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _int(kernel_size), _int(stride), _int(padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        _check_1d(x, "AvgPool1d")
        n, c, l = x.shape
        stride = self.kernel_size if self.stride is None else self.stride
        y = F.avg_pool2d(x.reshape(n, c, 1, l), (1, self.kernel_size), stride=(1, stride), padding=(0, self.padding),
                         ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)
        return y.reshape(n, c, y.shape[-1])


class AdaptiveAvgPool1d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = _int(output_size)

    def forward(self, x):
        _check_1d(x, "AdaptiveAvgPool1d")
        n, c, l = x.shape
        y = F.adaptive_avg_pool2d(x.reshape(n, c, 1, l), (1, self.output_size))
        return y.reshape(n, c, self.output_size)
