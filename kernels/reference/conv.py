"""2-D convolution (cross-correlation, like PyTorch): forward and backward side by side.

Algorithm: im2col over kernel taps (``_window``), then one batched matmul per
(batch element, group) pair, vectorized over both through ``xp.matmul``
broadcasting.  With columns laid out (N, C, R, S, P, Q) = (N, G, Cg*R*S, P*Q)
and weights (K, Cg, R, S) = (G, Kg, Cg*R*S):

    y[n, g]      = w[g] @ cols[n, g]                       (Kg, P*Q)
    dcols[n, g]  = w[g].T @ dy[n, g]      -> col2im -> dx
    dw[g]        = sum_n dy[n, g] @ cols[n, g].T           (one GEMM over n*P*Q)
    db           = dy summed over N, P, Q

Stride, padding, dilation and groups (depthwise is groups == C) are all
supported; input rows/columns no window touches get zero gradient.
"""
from .. import _checks as C
from ._util import xp_of
from ._window import col2im, im2col

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]


def _shape4(op, name, shape):
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{op}: argument '{name}' must be a tuple of 4 ints, got {shape!r}") from None
    if len(shape) != 4:
        raise ValueError(f"{op}: argument '{name}' must have 4 entries (N, C, H, W), got {shape!r}")
    return tuple(C.integer(op, name, v, minimum=0) for v in shape)


def _check_dy(op, dy, expected):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; this geometry gives {tuple(expected)}")


def conv2d_forward(x, w, b, stride, padding, dilation, groups, activation=None):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/groups, R, S)) + b (K,); ``activation``
    'relu' returns relu(y) (the fused epilogue of the compiled backends), None y."""
    op = "conv2d_forward"
    C.choice(op, "activation", activation, (None, "relu"))
    x = C.array(op, "x", x, ndim=4)
    w = C.array(op, "w", w, ndim=4)
    b = C.array(op, "b", b, ndim=1, allow_none=True)
    C.same_dtype(op, x=x, w=w, b=b)
    C.same_device(op, x=x, w=w, b=b)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None and b.shape[0] != K:
        raise ValueError(f"{op}: argument 'b' has shape {tuple(b.shape)}; expected ({K},) for w shape {tuple(w.shape)}")
    xp = xp_of(x)
    G = groups
    _, Cg, R, S = w.shape
    cols = im2col(x, (R, S), stride, padding, dilation, (P, Q))
    cols = cols.reshape(N, G, Cg * R * S, P * Q)
    wg = w.reshape(1, G, K // G, Cg * R * S)
    y = xp.matmul(wg, cols).reshape(N, K, P, Q)
    if b is not None:
        y += b.reshape(1, K, 1, 1)
    if activation == "relu":
        y = xp.where(y < 0, xp.zeros((), y.dtype), y)  # (NaN stays NaN, like the relu kernel)
    return y


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups):
    """dx of ``x_shape``: the transposed convolution of dy with w."""
    op = "conv2d_backward_input"
    dy = C.array(op, "dy", dy, ndim=4)
    w = C.array(op, "w", w, ndim=4)
    C.same_dtype(op, dy=dy, w=w)
    C.same_device(op, dy=dy, w=w)
    x_shape = _shape4(op, "x_shape", x_shape)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x_shape, w.shape, stride, padding, dilation, groups)
    _check_dy(op, dy, (N, K, P, Q))
    xp = xp_of(dy)
    G = groups
    _, Cg, R, S = w.shape
    wt = w.reshape(1, G, K // G, Cg * R * S).transpose(0, 1, 3, 2)
    dcols = xp.matmul(wt, dy.reshape(N, G, K // G, P * Q))  # (N, G, Cg*R*S, P*Q)
    dcols = dcols.reshape(N, x_shape[1], R, S, P, Q)
    return col2im(dcols, x_shape, (R, S), stride, padding, dilation, (P, Q))


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    """dw of ``w_shape``: dy correlated with the input columns, summed over the batch."""
    op = "conv2d_backward_weight"
    dy = C.array(op, "dy", dy, ndim=4)
    x = C.array(op, "x", x, ndim=4)
    C.same_dtype(op, dy=dy, x=x)
    C.same_device(op, dy=dy, x=x)
    w_shape = _shape4(op, "w_shape", w_shape)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x.shape, w_shape, stride, padding, dilation, groups)
    _check_dy(op, dy, (N, K, P, Q))
    xp = xp_of(x)
    G = groups
    _, Cg, R, S = w_shape
    CRS, Kg = Cg * R * S, K // G
    cols = im2col(x, (R, S), stride, padding, dilation, (P, Q))
    # (G, Kg, N*P*Q) @ (G, N*P*Q, CRS): one GEMM per group over the whole batch
    dyg = dy.reshape(N, G, Kg, P * Q).transpose(1, 2, 0, 3).reshape(G, Kg, N * P * Q)
    colg = cols.reshape(N, G, CRS, P * Q).transpose(1, 0, 3, 2).reshape(G, N * P * Q, CRS)
    dw = xp.matmul(dyg, colg)
    return xp.ascontiguousarray(dw.reshape(w_shape))


def conv2d_backward_bias(dy):
    """db (K,) = dy summed over N, P, Q."""
    op = "conv2d_backward_bias"
    dy = C.array(op, "dy", dy, ndim=4)
    return dy.sum(axis=(0, 2, 3))
