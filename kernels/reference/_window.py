"""Sliding-window helpers shared by the conv and pooling reference kernels.

One pair of functions serves every windowed op (Chainer-style im2col, kept
as economical as tinygrad's): ``im2col`` pads an (N, C, H, W) array once and
copies one strided *view per kernel tap* (r, s) into a column buffer of
shape (N, C, R, S, P, Q); ``col2im`` is its exact adjoint and scatter-adds
the tap contributions back into a padded gradient, then crops the padding.
Loops run over the R*S kernel taps only, never over pixels or batch
elements, and everything goes through ``xp`` (NumPy or CuPy).

The padded buffer also covers the overhang of ``ceil_mode`` pooling windows
(the last window may run past the right/bottom padding), so every tap view
is in bounds.  Input rows/columns that no window reaches (stride larger than
the window, ``ceil_mode=False`` leftovers) simply receive zero gradient.
"""
from ._util import xp_of

__all__ = []  # helpers only; the backend collects nothing from here


def tap_slice(r, dilation, stride, out_len):
    """The slice of a padded axis that tap ``r`` reads for outputs 0..out_len-1."""
    start = r * dilation
    return slice(start, start + stride * (out_len - 1) + 1, stride)


def padded_extent(size, kernel, stride, padding, dilation, out_len):
    """(before, after) padding of one axis so that every tap view is in bounds."""
    needed = stride * (out_len - 1) + dilation * (kernel - 1) + 1  # padded length the windows span
    return padding, max(padding, needed - size - padding)


def pad2d(x, pads, value=0.0):
    """Pad the two trailing axes of ``x`` with ``value``; ``pads`` = ((top, bottom), (left, right))."""
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return x
    xp = xp_of(x)
    N, C, H, W = x.shape
    out = xp.full((N, C, H + pt + pb, W + pl + pr), value, dtype=x.dtype)
    out[:, :, pt : pt + H, pl : pl + W] = x
    return out


def _pads(x_shape, kernel, stride, padding, dilation, out_hw):
    return tuple(
        padded_extent(x_shape[2 + i], kernel[i], stride[i], padding[i], dilation[i], out_hw[i]) for i in range(2)
    )


def taps(x, kernel, stride, padding, dilation, out_hw, value=0.0):
    """Yield (r, s, view) for every kernel tap in window scan order (r outer, s inner).

    ``view`` (N, C, P, Q) is a strided view into the padded input: element
    [n, c, p, q] is x_pad[n, c, p*sh + r*dh, q*sw + s*dw].
    """
    x_pad = pad2d(x, _pads(x.shape, kernel, stride, padding, dilation, out_hw), value)
    P, Q = out_hw
    for r in range(kernel[0]):
        rows = tap_slice(r, dilation[0], stride[0], P)
        for s in range(kernel[1]):
            yield r, s, x_pad[:, :, rows, tap_slice(s, dilation[1], stride[1], Q)]


def im2col(x, kernel, stride, padding, dilation, out_hw, value=0.0):
    """Column buffer (N, C, R, S, P, Q), C-contiguous, gathered one tap at a time."""
    xp = xp_of(x)
    N, C = x.shape[:2]
    cols = xp.empty((N, C, kernel[0], kernel[1]) + tuple(out_hw), dtype=x.dtype)
    for r, s, view in taps(x, kernel, stride, padding, dilation, out_hw, value):
        cols[:, :, r, s] = view
    return cols


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw):
    """Adjoint of ``im2col``: scatter-add tap contributions into an array of ``x_shape``.

    ``cols`` has shape (N, C, R, S, P, Q); the R and S axes may also be 1 to
    broadcast one contribution to every tap (average pooling).  Contributions
    that land in the padding are dropped.
    """
    xp = xp_of(cols)
    N, C, H, W = x_shape
    P, Q = out_hw
    (pt, pb), (pl, pr) = _pads(x_shape, kernel, stride, padding, dilation, out_hw)
    g = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=cols.dtype)
    per_r, per_s = cols.shape[2] > 1, cols.shape[3] > 1
    for r in range(kernel[0]):
        rows = tap_slice(r, dilation[0], stride[0], P)
        for s in range(kernel[1]):
            # within one tap the strided positions are distinct, so += is a true scatter-add
            g[:, :, rows, tap_slice(s, dilation[1], stride[1], Q)] += cols[:, :, r if per_r else 0, s if per_s else 0]
    return xp.ascontiguousarray(g[:, :, pt : pt + H, pl : pl + W])


def first_valid(stride, padding, dilation, out_len, xp):
    """Per output position along one axis: the first in-bounds input index of its window
    (PyTorch's start after ``while (i0 < 0) i0 += dilation``), as an int64 array."""
    start = xp.arange(out_len, dtype=xp.int64) * stride - padding
    skip = xp.maximum(-start, 0)
    return start + (-(-skip // dilation)) * dilation
