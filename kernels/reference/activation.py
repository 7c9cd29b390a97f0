"""Activations: forward and backward side by side.

Element-wise ops keep the input's dtype; NaN propagates.  softmax and
log_softmax subtract the row maximum first, so logits of any finite size
are safe.
"""
import math

import numpy as np

from .. import _checks as C
from ._util import xp_of

__all__ = [
    "relu_forward", "relu_backward",
    "leaky_relu_forward", "leaky_relu_backward",
    "prelu_forward", "prelu_backward",
    "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "gelu_forward", "gelu_backward",
    "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


def _grad_pair(op, dy, other, other_name):
    """Validate (dy, saved array) of an element-wise backward."""
    dy = C.array(op, "dy", dy)
    other = C.array(op, other_name, other)
    C.same_device(op, dy=dy, **{other_name: other})
    C.same_shape(op, "dy", dy, other_name, other)
    C.same_dtype(op, dy=dy, **{other_name: other})
    return dy, other


def _axis(op, axis, ndim):
    axis = C.integer(op, "axis", axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: argument 'axis' {axis} is out of range for a {ndim}-D array")
    return axis % ndim


# ---- relu -------------------------------------------------------------------------

def relu_forward(x):
    """y = max(x, 0); NaN passes through."""
    x = C.array("relu_forward", "x", x)
    xp = xp_of(x)
    return xp.where(x < 0, xp.zeros((), x.dtype), x)


def relu_backward(dy, y):
    """dx = 0 where y <= 0 (the forward output), else dy."""
    op = "relu_backward"
    dy = C.array(op, "dy", dy)
    y = C.array(op, "y", y)
    C.same_shape(op, "dy", dy, "y", y)
    C.same_dtype(op, dy=dy, y=y)
    xp = xp_of(dy)
    return xp.where(y <= 0, xp.zeros((), dy.dtype), dy)  # NaN keeps its gradient, as in PyTorch


# ---- leaky relu -------------------------------------------------------------------

def leaky_relu_forward(x, negative_slope):
    """y = x where x > 0, else negative_slope * x."""
    op = "leaky_relu_forward"
    x = C.array(op, "x", x)
    s = C.number(op, "negative_slope", negative_slope)
    xp = xp_of(x)
    return xp.where(x > 0, x, x * x.dtype.type(s))


def leaky_relu_backward(dy, x, negative_slope):
    """dx = dy where x > 0, else negative_slope * dy (PyTorch's rule at 0)."""
    op = "leaky_relu_backward"
    dy, x = _grad_pair(op, dy, x, "x")
    s = C.number(op, "negative_slope", negative_slope)
    xp = xp_of(dy)
    return xp.where(x > 0, dy, dy * dy.dtype.type(s))


# ---- prelu ------------------------------------------------------------------------

def _prelu_weight_shape(op, x, weight):
    """Shape to broadcast ``weight`` against ``x``: (1, C, 1, ...) or ()."""
    if weight.ndim != 1:
        raise ValueError(f"{op}: argument 'weight' must be 1-D (C,) or (1,), got shape {tuple(weight.shape)}")
    if weight.shape[0] == 1:
        return ()
    channels = x.shape[1] if x.ndim >= 2 else 1
    if x.ndim < 2 or weight.shape[0] != channels:
        raise ValueError(
            f"{op}: argument 'weight' has {weight.shape[0]} parameters but x shape {tuple(x.shape)} "
            f"has {channels} channels on axis 1 (weight must be (C,) or (1,))"
        )
    return (1, weight.shape[0]) + (1,) * (x.ndim - 2)


def prelu_forward(x, weight):
    """y = x where x > 0, else weight[c] * x; weight (C,) on axis 1, or (1,)."""
    op = "prelu_forward"
    x = C.array(op, "x", x)
    weight = C.array(op, "weight", weight)
    C.same_device(op, x=x, weight=weight)
    C.same_dtype(op, x=x, weight=weight)
    wshape = _prelu_weight_shape(op, x, weight)
    xp = xp_of(x)
    w = weight.reshape(wshape)
    return xp.where(x > 0, x, x * w)


def prelu_backward(dy, x, weight):
    """(dx, dweight): dx = dy or weight * dy; dweight sums x * dy where x <= 0."""
    op = "prelu_backward"
    dy, x = _grad_pair(op, dy, x, "x")
    weight = C.array(op, "weight", weight)
    C.same_device(op, x=x, weight=weight)
    C.same_dtype(op, x=x, weight=weight)
    wshape = _prelu_weight_shape(op, x, weight)
    xp = xp_of(x)
    w = weight.reshape(wshape)
    pos = x > 0
    dx = xp.where(pos, dy, dy * w)
    contrib = xp.where(pos, xp.zeros((), x.dtype), x * dy)
    if wshape == ():
        dw = contrib.sum().reshape(1)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        dw = contrib.sum(axis=axes)
    return dx, dw.astype(x.dtype, copy=False)


# ---- sigmoid / tanh ---------------------------------------------------------------

def sigmoid_forward(x):
    """1 / (1 + exp(-x)), computed from exp(-|x|) so no exp overflows."""
    x = C.array("sigmoid_forward", "x", x)
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    one = x.dtype.type(1)
    return xp.where(x >= 0, one / (one + e), e / (one + e))


def sigmoid_backward(dy, y):
    """dx = dy * y * (1 - y), y the forward output."""
    dy, y = _grad_pair("sigmoid_backward", dy, y, "y")
    return dy * y * (y.dtype.type(1) - y)


def tanh_forward(x):
    x = C.array("tanh_forward", "x", x)
    return xp_of(x).tanh(x)


def tanh_backward(dy, y):
    """dx = dy * (1 - y^2), y the forward output."""
    dy, y = _grad_pair("tanh_backward", dy, y, "y")
    return dy * (y.dtype.type(1) - y * y)


# ---- gelu -------------------------------------------------------------------------

def _erf(x):
    if xp_of(x) is np:
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf(x)


def gelu_forward(x, approximate):
    """x * Phi(x) ('none', exact erf) or the tanh approximation ('tanh')."""
    op = "gelu_forward"
    x = C.array(op, "x", x)
    approximate = C.choice(op, "approximate", approximate, ("none", "tanh"))
    xp = xp_of(x)
    t = x.dtype.type
    if approximate == "none":
        return t(0.5) * x * (t(1) + _erf(x * t(_INV_SQRT_2)))
    inner = t(_SQRT_2_OVER_PI) * (x + t(_GELU_C) * x * x * x)
    return t(0.5) * x * (t(1) + xp.tanh(inner))


def gelu_backward(dy, x, approximate):
    """dx = dy * d gelu / dx at the forward input x."""
    op = "gelu_backward"
    dy, x = _grad_pair(op, dy, x, "x")
    approximate = C.choice(op, "approximate", approximate, ("none", "tanh"))
    xp = xp_of(x)
    t = x.dtype.type
    if approximate == "none":
        cdf = t(0.5) * (t(1) + _erf(x * t(_INV_SQRT_2)))
        pdf = t(_INV_SQRT_2PI) * xp.exp(t(-0.5) * x * x)
        return dy * (cdf + x * pdf)
    x2 = x * x
    th = xp.tanh(t(_SQRT_2_OVER_PI) * (x + t(_GELU_C) * x2 * x))
    dinner = t(_SQRT_2_OVER_PI) * (t(1) + t(3 * _GELU_C) * x2)
    return dy * (t(0.5) * (t(1) + th) + t(0.5) * x * (t(1) - th * th) * dinner)


# ---- softmax / log_softmax --------------------------------------------------------

def softmax_forward(x, axis):
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    op = "softmax_forward"
    x = C.array(op, "x", x, min_ndim=1)
    axis = _axis(op, axis, x.ndim)
    xp = xp_of(x)
    if x.size == 0:
        return xp.empty_like(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(dy, y, axis):
    """dx = y * (dy - sum(dy * y)), y the softmax output."""
    op = "softmax_backward"
    dy, y = _grad_pair(op, dy, y, "y")
    if y.ndim < 1:
        raise ValueError(f"{op}: argument 'y' must have at least 1 dimension, got shape {tuple(y.shape)}")
    axis = _axis(op, axis, y.ndim)
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax_forward(x, axis):
    """x - max - log(sum(exp(x - max))) along ``axis``; exact for huge logits."""
    op = "log_softmax_forward"
    x = C.array(op, "x", x, min_ndim=1)
    axis = _axis(op, axis, x.ndim)
    xp = xp_of(x)
    if x.size == 0:
        return xp.empty_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(dy, y, axis):
    """dx = dy - exp(y) * sum(dy), y the log-softmax output."""
    op = "log_softmax_backward"
    dy, y = _grad_pair(op, dy, y, "y")
    if y.ndim < 1:
        raise ValueError(f"{op}: argument 'y' must have at least 1 dimension, got shape {tuple(y.shape)}")
    axis = _axis(op, axis, y.ndim)
    xp = xp_of(y)
    return dy - xp.exp(y) * dy.sum(axis=axis, keepdims=True)
