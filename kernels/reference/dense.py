"""Dense (fully connected) layer through the array library's BLAS matmul."""
from .. import _checks as C
from ._util import xp_of

__all__ = ["linear_forward", "linear_backward"]


def _check_xw(op, x, w):
    x = C.array(op, "x", x, min_ndim=1)
    w = C.array(op, "w", w, ndim=2)
    C.same_device(op, x=x, w=w)
    C.same_dtype(op, x=x, w=w)
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"{op}: 'x' shape {tuple(x.shape)} has {x.shape[-1]} input features but 'w' shape "
            f"{tuple(w.shape)} expects {w.shape[1]}"
        )
    return x, w


def linear_forward(x, w, b):
    """y = x @ w.T + b; x (..., in), w (out, in), b (out,) or None -> y (..., out)."""
    op = "linear_forward"
    x, w = _check_xw(op, x, w)
    b = C.array(op, "b", b, ndim=1, allow_none=True)
    if b is not None:
        C.same_device(op, x=x, b=b)
        C.same_dtype(op, x=x, b=b)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"{op}: 'b' shape {tuple(b.shape)} does not match {w.shape[0]} outputs of 'w' shape {tuple(w.shape)}")
    y = x.reshape(-1, w.shape[1]) @ w.T
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def linear_backward(dy, x, w, has_bias):
    """(dx, dw, db): dx = dy @ w, dw = dy^T x, db = dy summed over all but the last axis."""
    op = "linear_backward"
    x, w = _check_xw(op, x, w)
    dy = C.array(op, "dy", dy, min_ndim=1)
    C.same_device(op, dy=dy, x=x)
    C.same_dtype(op, dy=dy, x=x)
    want = tuple(x.shape[:-1]) + (w.shape[0],)
    if tuple(dy.shape) != want:
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match the output shape {want}")
    xp = xp_of(x)
    dy2 = dy.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, w.shape[1])
    dx = (dy2 @ w).reshape(x.shape)
    dw = dy2.T @ x2
    db = dy2.sum(axis=0) if has_bias else None
    return dx, xp.ascontiguousarray(dw), db
