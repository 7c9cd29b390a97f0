"""Argument validation shared by every backend.

Every public kernel calls these before computing (and, in compiled
backends, before releasing the GIL).  Errors are ``TypeError`` (wrong type or
dtype) or ``ValueError`` (wrong rank, shape, geometry) and name the op, the
argument and the shapes involved.

Policy for memory layout: *input* arrays that are not C-contiguous are
copied (``contiguous``); arrays a kernel updates *in place* (optimizer
state, running statistics) must already be C-contiguous and are rejected
otherwise (``inplace``), because a silent copy would drop the update.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _is_array(a):
    return hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "ndim")


def _xp(a):
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def array(op, name, a, ndim=None, min_ndim=None, dtypes=FLOAT_DTYPES, allow_none=False, device=None):
    """Validate one array argument; return it C-contiguous (copied if needed).

    ``device='cpu'`` (compiled CPU kernels) rejects CuPy arrays and
    ``device='cuda'`` (GPU kernels) rejects NumPy arrays.
    """
    if a is None:
        if allow_none:
            return None
        raise TypeError(f"{op}: argument '{name}' is required, got None")
    if not _is_array(a):
        raise TypeError(f"{op}: argument '{name}' must be a NumPy or CuPy array, got {type(a).__name__}")
    _device(op, name, a, device)
    if dtypes is not None and a.dtype not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{op}: argument '{name}' has dtype {a.dtype}; expected one of {allowed}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{op}: argument '{name}' must be {want}-D, got shape {tuple(a.shape)}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{op}: argument '{name}' must have at least {min_ndim} dimensions, got shape {tuple(a.shape)}")
    return contiguous(a)


def _device(op, name, a, device):
    if device is None:
        return
    on_gpu = _xp(a) is not np
    if device == "cpu" and on_gpu:
        raise TypeError(f"{op}: argument '{name}' is a CuPy (GPU) array; this CPU kernel needs a NumPy array")
    if device == "cuda" and not on_gpu:
        raise TypeError(f"{op}: argument '{name}' is a {type(a).__name__}; this GPU kernel needs a CuPy array")


def contiguous(a):
    if a is None or a.flags.c_contiguous:
        return a
    return _xp(a).ascontiguousarray(a)


def inplace(op, name, a, like=None, device=None):
    """Validate an array the kernel writes in place (never copied); ``device`` as in ``array``."""
    if not _is_array(a):
        raise TypeError(f"{op}: argument '{name}' must be a NumPy or CuPy array, got {type(a).__name__}")
    _device(op, name, a, device)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: argument '{name}' has dtype {a.dtype}; expected float32 or float64")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: argument '{name}' is updated in place and must be C-contiguous (got strides {a.strides})")
    if not getattr(a.flags, "writeable", True):  # CuPy flags have no "writeable"
        raise ValueError(f"{op}: argument '{name}' is updated in place but is read-only")
    if like is not None:
        same_shape(op, name, a, "param", like)
        same_dtype(op, **{name: a, "param": like})
    return a


def same_dtype(op, **arrays):
    """All non-None arrays must share one dtype."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    if not items:
        return None
    dt = items[0][1].dtype
    for k, v in items[1:]:
        if v.dtype != dt:
            desc = ", ".join(f"{kk}={vv.dtype}" for kk, vv in items)
            raise TypeError(f"{op}: mixed dtypes ({desc}); all must be the same")
    return dt


def same_device(op, **arrays):
    items = [(k, v) for k, v in arrays.items() if v is not None]
    kinds = {_xp(v).__name__ for _, v in items}
    if len(kinds) > 1:
        desc = ", ".join(f"{k}={_xp(v).__name__}" for k, v in items)
        raise TypeError(f"{op}: arrays live on different devices ({desc})")


def same_shape(op, name_a, a, name_b, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: '{name_a}' shape {tuple(a.shape)} does not match '{name_b}' shape {tuple(b.shape)}")


def integer(op, name, v, minimum=None):
    if type(v) is int:  # the common case, without the slow ABC isinstance below
        if minimum is not None and v < minimum:
            raise ValueError(f"{op}: argument '{name}' must be >= {minimum}, got {v}")
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{op}: argument '{name}' must be >= {minimum}, got {v}")
    return v


def number(op, name, v, minimum=None, maximum=None, min_inclusive=True, max_inclusive=True):
    if type(v) is not float and type(v) is not int and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
        raise TypeError(f"{op}: argument '{name}' must be a number, got {v!r}")
    v = float(v)
    if v != v:
        raise ValueError(f"{op}: argument '{name}' is NaN")
    if minimum is not None and (v < minimum or (v == minimum and not min_inclusive)):
        raise ValueError(f"{op}: argument '{name}' must be {'>=' if min_inclusive else '>'} {minimum}, got {v}")
    if maximum is not None and (v > maximum or (v == maximum and not max_inclusive)):
        raise ValueError(f"{op}: argument '{name}' must be {'<=' if max_inclusive else '<'} {maximum}, got {v}")
    return v


def tuple_n(op, name, v, n=2, minimum=None):
    """An int or a sequence of ``n`` ints -> tuple of ``n`` ints (each >= minimum)."""
    if type(v) is int and (minimum is None or v >= minimum):  # the common cases, without the ABC checks
        return (v,) * n
    if (type(v) is tuple and len(v) == n and all(type(e) is int for e in v)
            and (minimum is None or min(v, default=minimum) >= minimum)):
        return v
    if type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool)):
        v = (int(v),) * n
    try:
        v = tuple(v)
    except TypeError:
        raise TypeError(f"{op}: argument '{name}' must be an int or a tuple of {n} ints, got {v!r}") from None
    if len(v) != n:
        raise ValueError(f"{op}: argument '{name}' must have {n} values, got {v!r}")
    return tuple(integer(op, name, e, minimum) for e in v)


def choice(op, name, v, options):
    if v not in options:
        raise ValueError(f"{op}: argument '{name}' must be one of {options}, got {v!r}")
    return v


def out_size(size, k, stride, pad, dilation, ceil_mode=False):
    """Output length of a sliding window (PyTorch's formula, ceil_mode included)."""
    eff = dilation * (k - 1) + 1
    span = size + 2 * pad - eff
    if ceil_mode:
        out = -(-span // stride) + 1
        # the last window must start inside the input or the left padding
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


def conv2d_geometry(op, x_shape, w_shape, stride, padding, dilation, groups):
    """Validate a conv2d configuration; return (stride, padding, dilation, groups, (N, K, P, Q))."""
    stride = tuple_n(op, "stride", stride, 2, minimum=1)
    padding = tuple_n(op, "padding", padding, 2, minimum=0)
    dilation = tuple_n(op, "dilation", dilation, 2, minimum=1)
    groups = integer(op, "groups", groups, minimum=1)
    if len(x_shape) != 4:
        raise ValueError(f"{op}: argument 'x' must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{op}: argument 'w' must be 4-D (K, C/groups, R, S), got shape {tuple(w_shape)}")
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    if C % groups:
        raise ValueError(f"{op}: input channels C={C} (x shape {tuple(x_shape)}) not divisible by groups={groups}")
    if K % groups:
        raise ValueError(f"{op}: output channels K={K} (w shape {tuple(w_shape)}) not divisible by groups={groups}")
    if Cg * groups != C:
        raise ValueError(
            f"{op}: channel mismatch: x has C={C} channels but w shape {tuple(w_shape)} expects "
            f"C/groups={Cg} with groups={groups} (C={Cg * groups})"
        )
    if R < 1 or S < 1 or K < 1:
        raise ValueError(f"{op}: argument 'w' has an empty dimension: shape {tuple(w_shape)}")
    P = out_size(H, R, stride[0], padding[0], dilation[0])
    Q = out_size(W, S, stride[1], padding[1], dilation[1])
    if P < 1 or Q < 1:
        raise ValueError(
            f"{op}: kernel {R}x{S} (dilation {dilation}) is larger than the padded input "
            f"{H + 2 * padding[0]}x{W + 2 * padding[1]} (x shape {tuple(x_shape)}, padding {padding})"
        )
    return stride, padding, dilation, groups, (N, K, P, Q)


def pool2d_geometry(op, x_shape, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """Validate a pooling window; return (kernel, stride, padding, dilation, (P, Q))."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: argument 'x' must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    kernel = tuple_n(op, "kernel_size", kernel_size, 2, minimum=1)
    empty_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if empty_stride else tuple_n(op, "stride", stride, 2, minimum=1)
    padding = tuple_n(op, "padding", padding, 2, minimum=0)
    dilation = tuple_n(op, "dilation", dilation, 2, minimum=1)
    for i, axis in enumerate("HW"):
        if padding[i] * 2 > kernel[i]:
            raise ValueError(
                f"{op}: padding {padding} must be at most half the kernel size {kernel} (axis {axis})"
            )
    H, W = x_shape[2], x_shape[3]
    if H < 1 or W < 1:  # like PyTorch: only the batch (or channel) axis may be empty
        raise ValueError(f"{op}: input plane must be non-empty, got x shape {tuple(x_shape)}")
    P = out_size(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    Q = out_size(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    if P < 1 or Q < 1:
        raise ValueError(
            f"{op}: window {kernel} is larger than the padded input {H + 2 * padding[0]}x{W + 2 * padding[1]} "
            f"(x shape {tuple(x_shape)})"
        )
    return kernel, stride, padding, dilation, (P, Q)
