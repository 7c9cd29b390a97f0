"""Normalization and dropout ops with torch.nn.functional's names."""
from .. import random as _random
from ..dispatch import BackendUnavailable, kernel
from ..tensor import Function
from ._base import KernelFunction, data, prepare, tensor_arg

__all__ = ["batch_norm", "batch_norm_act", "layer_norm", "dropout"]


def _opt(name, v, op):
    return None if v is None else tensor_arg(name, v, op)


class BatchNorm(KernelFunction, Function):
    def forward(self, x, gamma, beta, running_mean, running_var, training, momentum, eps, backend=None):
        prepare(self, x, backend)
        y, mean, invstd = self.k("batch_norm_forward")(x, gamma, beta, running_mean, running_var,
                                                       training, momentum, eps)
        self.training, self.has_beta = training, beta is not None
        self.save_for_backward(x, gamma, mean, invstd)
        return y

    def backward(self, dy):
        x, gamma, mean, invstd = self.saved
        g = gamma
        if g is None and self.has_beta:  # the kernel ties dbeta to gamma: use gamma = 1
            g = self.xp.ones(x.shape[1], dtype=x.dtype)
        dx, dgamma, dbeta = self.k("batch_norm_backward")(dy, x, g, mean, invstd, self.training)
        return (dx, dgamma if gamma is not None else None, dbeta if self.has_beta else None,
                None, None, None, None, None)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, backend=None):
    """Batch norm over axis 1 of (N, C) or (N, C, ...).

    ``running_mean``/``running_var`` are arrays or Tensors (their ``.data`` is
    updated in place when training), or None to always use batch statistics.
    """
    op = "batch_norm"
    x = tensor_arg("input", input, op)
    return BatchNorm.apply(x, _opt("weight", weight, op), _opt("bias", bias, op), data(running_mean),
                           data(running_var), bool(training), momentum, eps, backend=backend)


class BatchNormAct(KernelFunction, Function):
    """relu(batch_norm(x) + residual) as one kernel pair (``batch_norm_act_forward/backward``)."""

    def forward(self, x, gamma, beta, residual, running_mean, running_var, training, momentum, eps, relu,
                backend=None):
        prepare(self, x, backend)
        y, mean, invstd = self.k("batch_norm_act_forward")(x, gamma, beta, running_mean, running_var, training,
                                                           momentum, eps, residual, relu)
        self.training, self.relu = training, relu
        self.has_beta, self.has_residual = beta is not None, residual is not None
        self.save_for_backward(x, gamma, mean, invstd, y if relu else None)
        return y

    def backward(self, dy):
        x, gamma, mean, invstd, y = self.saved
        g = gamma
        if g is None and self.has_beta:
            g = self.xp.ones(x.shape[1], dtype=x.dtype)
        want_dr = self.has_residual and self.needs_input_grad[3]
        dx, dgamma, dbeta, dr = self.k("batch_norm_act_backward")(dy, x, y, g, mean, invstd, self.training,
                                                                  self.relu, want_dr)
        return (dx, dgamma if gamma is not None else None, dbeta if self.has_beta else None, dr,
                None, None, None, None, None, None)


def batch_norm_act(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5, residual=None, relu=True, backend=None):
    """``relu(batch_norm(input, ...) + residual)``: a residual block's tail (or conv-bn-relu's bn-relu).

    ``residual`` (input's shape) may be None and ``relu`` False; the arguments are
    ``batch_norm``'s.  Where the backend has the fused kernels (Cython CPU) the
    normalisation, the add and the ReLU are one pass each way and neither bn(x)
    nor the sum is stored; elsewhere this is exactly the composition of
    ``batch_norm``, ``+`` and ``relu``.
    """
    op = "batch_norm_act"
    x = tensor_arg("input", input, op)
    r = None if residual is None else tensor_arg("residual", residual, op)
    if not isinstance(relu, bool):
        raise TypeError(f"{op}: argument 'relu' must be a bool, got {relu!r}")
    try:
        kernel("batch_norm_act_forward", x.data, backend)
    except BackendUnavailable:  # no fused kernel on this device/backend: compose
        from .activation import relu as _relu

        y = batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, backend=backend)
        if r is not None:
            y = y + r
        return _relu(y, backend=backend) if relu else y
    return BatchNormAct.apply(x, _opt("weight", weight, op), _opt("bias", bias, op), r, data(running_mean),
                              data(running_var), bool(training), momentum, eps, relu, backend=backend)


class LayerNorm(KernelFunction, Function):
    def forward(self, x, gamma, beta, normalized_shape, eps, backend=None):
        prepare(self, x, backend)
        y, mean, rstd = self.k("layer_norm_forward")(x, normalized_shape, gamma, beta, eps)
        self.normalized_shape, self.has_beta = normalized_shape, beta is not None
        self.save_for_backward(x, gamma, mean, rstd)
        return y

    def backward(self, dy):
        x, gamma, mean, rstd = self.saved
        g = gamma
        if g is None and self.has_beta:
            shape = (self.normalized_shape,) if isinstance(self.normalized_shape, int) else tuple(self.normalized_shape)
            g = self.xp.ones(shape, dtype=x.dtype)
        dx, dgamma, dbeta = self.k("layer_norm_backward")(dy, x, self.normalized_shape, g, mean, rstd)
        return dx, dgamma if gamma is not None else None, dbeta if self.has_beta else None, None, None


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, backend=None):
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift."""
    op = "layer_norm"
    x = tensor_arg("input", input, op)
    return LayerNorm.apply(x, _opt("weight", weight, op), _opt("bias", bias, op), normalized_shape, eps,
                           backend=backend)


class Dropout(KernelFunction, Function):
    def forward(self, x, p, seed, backend=None):
        prepare(self, x, backend)
        y, mask = self.k("dropout_forward")(x, p, seed)
        self.save_for_backward(mask)
        return y

    def backward(self, dy):
        (mask,) = self.saved
        return self.k("dropout_backward")(dy, mask), None, None


def dropout(input, p=0.5, training=True, seed=None, inplace=False, backend=None):
    """Zero each element with probability p and scale the rest by 1/(1-p).

    ``seed=None`` draws one from fastconv's global stream (``fastconv.random``);
    identity when not training or p == 0.  ``inplace`` is accepted for torch
    compatibility and ignored (pass it by keyword: the fourth argument is ``seed``).
    """
    op = "dropout"
    x = tensor_arg("input", input, op)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: argument 'p' must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return x
    if seed is None:
        seed = _random.next_seed()
    return Dropout.apply(x, p, seed, backend=backend)
