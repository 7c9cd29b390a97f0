"""2-D pooling (max, average, adaptive average): forward and backward side by side.

Semantics follow PyTorch's CPU kernels exactly:

- max pooling scans each window row by row (r outer, s inner); a value wins
  when it is greater than the running max *or is NaN*, so ties keep the
  first maximum and a NaN wins (the last NaN of the window when there are
  several).  ``argmax`` is the int64 flat index h*W + w into the input
  plane; a window with no larger value than -inf keeps its first in-bounds
  position, exactly like PyTorch.  Padding never wins (it is -inf).
- average pooling divides by the window clipped to the padded input
  (``count_include_pad=True``; ``ceil_mode`` windows that run past the
  right padding do not count the overhang) or by the number of real input
  elements (``count_include_pad=False``).
- adaptive average pooling uses bins [floor(i*H/oh), ceil((i+1)*H/oh)).

Windowed ops go through ``_window`` (loops over kernel taps only); adaptive
pooling is separable and loops over offsets inside a bin (at most
ceil(H/oh)+1 of them per axis), again never over pixels.
"""
from .. import _checks as C
from .conv import _shape4
from ._util import xp_of
from ._window import col2im, first_valid, taps

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
]


def _x_shape(op, shape):
    """x_shape as a tuple of 4 non-negative ints (N, C, H, W); a bare int is rejected."""
    return _shape4(op, "x_shape", shape)


def _check_dy(op, dy, expected):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; this geometry gives {tuple(expected)}")


# ---------------------------------------------------------------- max pooling

def max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode):
    """(y, argmax): window maxima and their int64 flat indices h*W + w in the input plane."""
    op = "max_pool2d_forward"
    x = C.array(op, "x", x, ndim=4)
    kernel, stride, padding, dilation, (P, Q) = C.pool2d_geometry(
        op, x.shape, kernel_size, stride, padding, dilation, bool(ceil_mode))
    xp = xp_of(x)
    N, Cc, H, W = x.shape
    oh = xp.arange(P, dtype=xp.int64) * stride[0] - padding[0]
    ow = xp.arange(Q, dtype=xp.int64) * stride[1] - padding[1]
    h0 = first_valid(stride[0], padding[0], dilation[0], P, xp)
    w0 = first_valid(stride[1], padding[1], dilation[1], Q, xp)
    best = xp.full((N, Cc, P, Q), -xp.inf, dtype=x.dtype)
    idx = xp.empty((N, Cc, P, Q), dtype=xp.int64)
    idx[...] = h0[:, None] * W + w0[None, :]
    for r, s, v in taps(x, kernel, stride, padding, dilation, (P, Q), value=-xp.inf):
        win = (v > best) | xp.isnan(v)
        best = xp.where(win, v, best)
        tap_idx = (oh + r * dilation[0])[:, None] * W + (ow + s * dilation[1])[None, :]
        idx = xp.where(win, tap_idx, idx)
    return best, idx


def max_pool2d_backward(dy, argmax, x_shape):
    """dx: dy scatter-added to the argmax positions (overlapping windows accumulate)."""
    op = "max_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4)
    argmax = C.array(op, "argmax", argmax, ndim=4, dtypes=C.INDEX_DTYPES)
    C.same_device(op, dy=dy, argmax=argmax)
    C.same_shape(op, "dy", dy, "argmax", argmax)
    N, Cc, H, W = _x_shape(op, x_shape)
    if tuple(dy.shape[:2]) != (N, Cc):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; expected (N, C) = {(N, Cc)} from x_shape")
    xp = xp_of(dy)
    HW = H * W
    am = argmax.reshape(N * Cc, dy.shape[2] * dy.shape[3]).astype(xp.int64, copy=False)
    flat = (xp.arange(N * Cc, dtype=xp.int64)[:, None] * HW + am).ravel()
    g = dy.ravel()
    valid = (am >= 0).ravel() & (am < HW).ravel()
    if not bool(valid.all()):  # windows with no input (PyTorch's out-of-plane index): no gradient
        flat, g = flat[valid], g[valid]
    dx = xp.bincount(flat, weights=g, minlength=N * Cc * HW)
    return dx.astype(dy.dtype, copy=False).reshape(N, Cc, H, W)


# ------------------------------------------------------------ average pooling

def _avg_divisor(x_shape, kernel, stride, padding, out_hw, count_include_pad, xp, dtype):
    """(P, Q) divisors, PyTorch's rule: window clipped to the padded input, or to the input."""
    sizes = []
    for i in range(2):
        L = x_shape[2 + i]
        start = xp.arange(out_hw[i], dtype=xp.int64) * stride[i] - padding[i]
        end = xp.minimum(start + kernel[i], L + padding[i])
        if count_include_pad:
            sizes.append(end - start)
        else:
            sizes.append(xp.minimum(end, L) - xp.maximum(start, 0))
    return (sizes[0][:, None] * sizes[1][None, :]).astype(dtype)


def _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    kernel, stride, padding, _, out_hw = C.pool2d_geometry(op, x_shape, kernel_size, stride, padding, 1, bool(ceil_mode))
    return kernel, stride, padding, out_hw


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """y (N, C, P, Q): window sums divided by PyTorch's divisor."""
    op = "avg_pool2d_forward"
    x = C.array(op, "x", x, ndim=4)
    kernel, stride, padding, out_hw = _avg_geometry(op, x.shape, kernel_size, stride, padding, ceil_mode,
                                                    count_include_pad)
    xp = xp_of(x)
    acc = None
    for _, _, v in taps(x, kernel, stride, padding, (1, 1), out_hw, value=0.0):
        acc = v.copy() if acc is None else acc + v
    return acc / _avg_divisor(x.shape, kernel, stride, padding, out_hw, bool(count_include_pad), xp, x.dtype)


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """dx: every window spreads dy / divisor evenly over its taps (padding taps dropped)."""
    op = "avg_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4)
    x_shape = _x_shape(op, x_shape)
    kernel, stride, padding, out_hw = _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode,
                                                    count_include_pad)
    _check_dy(op, dy, x_shape[:2] + tuple(out_hw))
    xp = xp_of(dy)
    g = dy / _avg_divisor(x_shape, kernel, stride, padding, out_hw, bool(count_include_pad), xp, dy.dtype)
    return col2im(g[:, :, None, None], x_shape, kernel, stride, padding, (1, 1), out_hw)


# --------------------------------------------------- adaptive average pooling

def _bins(size, out, xp):
    """PyTorch's adaptive bins along one axis: (start, length) int64 arrays of length ``out``."""
    i = xp.arange(out, dtype=xp.int64)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end - start


def _gather_sum(a, axis, lo, cnt):
    """out[..., j, ...] = sum_{t < cnt[j]} a[..., lo[j] + t, ...] along ``axis`` (a loop over t only).

    Masked with ``where`` rather than multiplied, so NaN/inf stay inside their own bins."""
    xp = xp_of(a)
    shape = [1] * a.ndim
    shape[axis] = -1
    zero = xp.zeros((), dtype=a.dtype)
    out = None
    for t in range(int(cnt.max()) if cnt.size else 0):
        v = xp.take(a, xp.minimum(lo + t, a.shape[axis] - 1), axis=axis)
        v = xp.where((cnt > t).reshape(shape), v, zero)
        out = v if out is None else out + v
    return out


def _adaptive_size(op, output_size, x_shape):
    if output_size is None or isinstance(output_size, int) or hasattr(output_size, "__index__"):
        output_size = (output_size, output_size)
    try:
        output_size = tuple(output_size)
    except TypeError:
        raise TypeError(f"{op}: argument 'output_size' must be an int or a pair, got {output_size!r}") from None
    if len(output_size) != 2:
        raise ValueError(f"{op}: argument 'output_size' must have 2 values, got {output_size!r}")
    return tuple(x_shape[2 + i] if v is None else C.integer(op, "output_size", v, minimum=1)
                 for i, v in enumerate(output_size))


def _adaptive_check_input(op, x_shape):
    if x_shape[2] < 1 or x_shape[3] < 1:
        raise ValueError(f"{op}: input plane must be non-empty, got x shape {tuple(x_shape)}")


def check_adaptive_avg_pool2d_forward(x, output_size, device=None):
    """Shared argument checks (every backend): (x, (oh, ow)); ``None`` in output_size keeps that input size."""
    op = "adaptive_avg_pool2d_forward"
    x = C.array(op, "x", x, ndim=4, device=device)
    _adaptive_check_input(op, x.shape)
    return x, _adaptive_size(op, output_size, x.shape)


def check_adaptive_avg_pool2d_backward(dy, x_shape, device=None):
    """Shared argument checks (every backend): (dy, x_shape as a tuple); output size comes from dy."""
    op = "adaptive_avg_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4, device=device)
    x_shape = _x_shape(op, x_shape)
    _adaptive_check_input(op, x_shape)
    if tuple(dy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; expected (N, C) = {tuple(x_shape[:2])} from x_shape")
    if dy.shape[2] < 1 or dy.shape[3] < 1:
        raise ValueError(f"{op}: argument 'dy' has an empty output plane: shape {tuple(dy.shape)}")
    return dy, x_shape


def adaptive_avg_pool2d_forward(x, output_size):
    """y (N, C, oh, ow): mean over PyTorch's adaptive bins."""
    x, (oh, ow) = check_adaptive_avg_pool2d_forward(x, output_size)
    xp = xp_of(x)
    hs, hl = _bins(x.shape[2], oh, xp)
    ws, wl = _bins(x.shape[3], ow, xp)
    y = _gather_sum(_gather_sum(x, 2, hs, hl), 3, ws, wl)
    return y / hl.astype(x.dtype)[:, None] / wl.astype(x.dtype)[None, :]


def _inverse_bins(size, out, xp):
    """For each input position: (first bin containing it, number of bins containing it)."""
    start, length = _bins(size, out, xp)
    pos = xp.arange(size, dtype=xp.int64)
    member = (start[:, None] <= pos[None, :]) & (pos[None, :] < (start + length)[:, None])
    return xp.argmax(member, axis=0).astype(xp.int64), member.sum(axis=0).astype(xp.int64)


def adaptive_avg_pool2d_backward(dy, x_shape):
    """dx: each bin spreads dy / (bin height * bin width) over its inputs."""
    dy, (N, Cc, H, W) = check_adaptive_avg_pool2d_backward(dy, x_shape)
    xp = xp_of(dy)
    oh, ow = dy.shape[2], dy.shape[3]
    _, hl = _bins(H, oh, xp)
    _, wl = _bins(W, ow, xp)
    g = dy / hl.astype(dy.dtype)[:, None] / wl.astype(dy.dtype)[None, :]
    hlo, hcnt = _inverse_bins(H, oh, xp)
    wlo, wcnt = _inverse_bins(W, ow, xp)
    return xp.ascontiguousarray(_gather_sum(_gather_sum(g, 2, hlo, hcnt), 3, wlo, wcnt))
