"""Parameter utilities: the flat parameter buffer, vector conversion, gradient clipping."""
import math

import numpy as np

from .._xp import device_of, get_xp
from ..tensor import Tensor, no_grad


class FlatGroup:
    """Parameters of one (device, dtype) living as views of ``data``; their grads as views of ``grad``."""

    def __init__(self, data, grad, params, offsets):
        self.data, self.grad, self.params, self.offsets = data, grad, params, offsets

    def is_intact(self):
        """True while every parameter still aliases its slice of the buffer."""
        xp = get_xp(self.data)
        for p, (o, n) in zip(self.params, self.offsets):
            if p.data.size != n or not xp.shares_memory(p.data, self.data[o:o + n]):
                return False
        return True


class FlatParameters:
    """The record ``Module.flatten_parameters()`` returns: one ``FlatGroup`` per (device, dtype)."""

    def __init__(self, groups):
        self.groups = groups

    def _single(self, what):
        if len(self.groups) != 1:
            raise ValueError(f"FlatParameters.{what}: parameters span {len(self.groups)} dtype/device groups; "
                             "use .groups")
        return self.groups[0]

    data = property(lambda self: self._single("data").data)
    grad = property(lambda self: self._single("grad").grad)
    params = property(lambda self: [p for g in self.groups for p in g.params])

    def is_intact(self):
        return all(g.is_intact() for g in self.groups)

    def zero_grad(self):
        for g in self.groups:
            g.grad[...] = 0

    def __repr__(self):
        return "FlatParameters(" + ", ".join(
            f"{g.data.dtype}[{g.data.size}] on {device_of(g.data)} ({len(g.params)} params)" for g in self.groups) + ")"


def flatten_parameters(module):
    """Copy all parameters of ``module`` into contiguous buffers and make each a view (grads too)."""
    if module._flat is not None:
        unflatten_parameters(module)
    params = list(module.parameters())
    groups = {}
    for p in params:
        groups.setdefault((device_of(p.data), p.data.dtype.str), []).append(p)
    out = []
    for (_, _), plist in groups.items():
        xp = get_xp(plist[0].data)
        total = sum(p.data.size for p in plist)
        data = xp.empty(total, dtype=plist[0].data.dtype)
        grad = xp.zeros(total, dtype=plist[0].data.dtype)
        offsets, o = [], 0
        for p in plist:
            n = p.data.size
            data[o:o + n] = p.data.reshape(-1)
            if p.grad is not None:
                grad[o:o + n] = p.grad.reshape(-1)
            p.data = data[o:o + n].reshape(p.data.shape)
            p._grad_buffer = grad[o:o + n].reshape(p.data.shape)
            p.grad = p._grad_buffer
            offsets.append((o, n))
            o += n
        out.append(FlatGroup(data, grad, plist, offsets))
    flat = FlatParameters(out)
    object.__setattr__(module, "_flat", flat)
    return flat


def unflatten_parameters(module):
    """Give every parameter its own storage again (undoes ``flatten_parameters``)."""
    flat = module._flat
    if flat is None:
        return
    for p in flat.params:
        p.data = p.data.copy()
        if p.grad is not None:
            p.grad = p.grad.copy()
        p._grad_buffer = None
    object.__setattr__(module, "_flat", None)


def count_parameters(module, trainable_only=False):
    """Number of scalar parameters (shared parameters counted once)."""
    return module.num_parameters(trainable_only=trainable_only)


def parameters_to_vector(parameters):
    """Concatenate parameter values into one 1-D array (a copy)."""
    parameters = list(parameters)
    if not parameters:
        return np.zeros(0, dtype=np.float32)
    xp = get_xp(parameters[0].data)
    return xp.concatenate([p.data.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of ``vec`` into the parameters (in place)."""
    vec = vec.data if isinstance(vec, Tensor) else vec
    parameters = list(parameters)
    total = sum(p.data.size for p in parameters)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"vector_to_parameters: 'vec' must be 1-D with {total} elements, got shape {tuple(vec.shape)}")
    o = 0
    for p in parameters:
        n = p.data.size
        p.data[...] = vec[o:o + n].reshape(p.data.shape)
        o += n


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale gradients in place so their joint norm is at most ``max_norm``; returns the norm before clipping."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: 'max_norm' must be >= 0, got {max_norm}")
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    with no_grad():
        if math.isinf(norm_type):
            total = max(float(get_xp(g).abs(g).max()) if g.size else 0.0 for g in grads)
        else:
            total = sum(float((get_xp(g).abs(g.astype(np.float64)) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    for p in parameters:
        if p.grad is not None:
            get_xp(p.grad).clip(p.grad, -clip_value, clip_value, out=p.grad)
