"""Module, Parameter and the containers (Sequential, ModuleList, ModuleDict).

``Module`` mirrors ``torch.nn.Module``: attributes that are ``Parameter``s,
sub-``Module``s or registered buffers are tracked in insertion order, so
``state_dict()`` produces PyTorch's key names (``layer1.0.conv1.weight``) and a
torchvision state dict loads into the matching fastconv model.
"""
import collections
import itertools

import numpy as np

from .._xp import device_of, get_xp, to_device
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter."""

    def __init__(self, data=None, requires_grad=True, dtype=None):
        if data is None:
            data = np.zeros((0,), dtype=np.float32)
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict(strict=False)`` could not match."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class StateDictError(RuntimeError):
    """``load_state_dict`` failed; ``missing``, ``unexpected``, ``mismatched`` list the offending keys."""

    def __init__(self, model_name, missing, unexpected, mismatched):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        def listing(keys, limit=25):
            shown = ", ".join(repr(k) for k in keys[:limit])
            return shown + (f", ... ({len(keys) - limit} more; see the exception's attributes)" if len(keys) > limit else "")

        lines = [f"Error(s) in loading state_dict for {model_name}:"]
        if self.missing:
            lines.append(f"  Missing key(s) ({len(self.missing)}): " + listing(self.missing))
        if self.unexpected:
            lines.append(f"  Unexpected key(s) ({len(self.unexpected)}): " + listing(self.unexpected))
        for key, got, want in self.mismatched:
            lines.append(f"  Size mismatch for {key!r}: checkpoint has shape {got}, model expects {want}")
        super().__init__("\n".join(lines))


def _to_array(value):
    """A state-dict value (fastconv Tensor, NumPy/CuPy array, torch tensor, scalar) as an array."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch.Tensor, without importing torch
        return value.detach().cpu().numpy()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    return np.asarray(value)


class Module:
    """Base class of layers and models."""

    def __init__(self):
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_flat", None)

    # ---- registration ----------------------------------------------------------------
    def _check_init(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() (super().__init__()) "
                                 "before assigning parameters, buffers or sub-modules")

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._check_init()
            self._discard(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._check_init()
            self._discard(name)
            self._modules[name] = value
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(wrap it in fastconv.nn.Parameter or assign None)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r}")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                value = Tensor(value)
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _discard(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        self._check_init()
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        self._discard(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """A non-learnable state tensor (e.g. running statistics), saved in state_dict when persistent."""
        self._check_init()
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        self._discard(name)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        self._check_init()
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        self._discard(name)
        self._modules[name] = module

    register_module = add_module

    # ---- traversal -------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield mprefix + ("." if mprefix else "") + name, v

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        m = self
        for part in filter(None, target.split(".")):
            if part not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} (looking up {target!r})")
            m = m._modules[part]
        return m

    def num_parameters(self, trainable_only=False):
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- modes and functions ---------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            buf = getattr(p, "_grad_buffer", None)
            if buf is not None:  # flat gradient buffer: keep the view, zero it
                buf[...] = 0
                p.grad = buf
            elif p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module (children first) and on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _map_arrays(self, fn):
        """Replace every parameter's and buffer's array with ``fn(array)`` (grads too)."""
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is None:
                        continue
                    t.data = fn(t.data)
                    if t.grad is not None:
                        t.grad = fn(t.grad)

    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``device`` and/or cast floating ones to ``dtype`` (in place)."""
        if isinstance(device, (type, np.dtype)) and dtype is None:
            device, dtype = None, device
        if device not in (None, "cpu", "cuda"):
            raise ValueError(f"Module.to: unknown device {device!r}: expected 'cpu' or 'cuda'")
        dtype = None if dtype is None else np.dtype(dtype)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to: dtype must be a floating dtype, got {dtype}")
        from .utils import unflatten_parameters, flatten_parameters

        was_flat = self._flat is not None
        if was_flat:
            unflatten_parameters(self)

        def convert(a):
            if dtype is not None and a.dtype.kind == "f" and a.dtype != dtype:
                a = a.astype(dtype)
            if device is not None and device_of(a) != device:
                a = to_device(a, device)
            return a

        self._map_arrays(convert)
        if was_flat:
            flatten_parameters(self)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def flatten_parameters(self):
        """Make every parameter (and its gradient) a view into one contiguous buffer per dtype/device.

        Returns the ``FlatParameters`` record (also kept as ``self._flat``), whose ``data`` and
        ``grad`` arrays an optimizer can update with a single fused kernel.
        """
        from .utils import flatten_parameters

        return flatten_parameters(self)

    @property
    def device(self):
        p = next(itertools.chain(self.parameters(), self.buffers()), None)
        return "cpu" if p is None else p.device

    # ---- state dict ------------------------------------------------------------------
    def state_dict(self, prefix="", keep_vars=False):
        """Ordered {name: array} (``Tensor``s when ``keep_vars``) of parameters and persistent buffers.

        Arrays are the live storage (not copies), like torch's detached tensors.
        """
        out = collections.OrderedDict()
        for mprefix, m in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            dot = mprefix + ("." if mprefix else "")
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.data
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[dot + name] = b if keep_vars else b.data
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers (in place).

        Values may be fastconv Tensors, NumPy/CuPy arrays or torch tensors; they are cast to
        each target's dtype and moved to its device.  Shape mismatches always raise; with
        ``strict`` missing and unexpected keys raise too.  The error lists every offending
        key.  Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a mapping, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        # like torch, tolerate batch-norm counters absent from old checkpoints (e.g. torchvision's
        # original ImageNet weights): they keep their current value
        missing = [k for k in own if k not in state_dict and k.rsplit(".", 1)[-1] != "num_batches_tracked"]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, pending = [], []
        for key, target in own.items():
            if key not in state_dict:
                continue
            src = _to_array(state_dict[key])
            want = tuple(target.data.shape)
            got = tuple(src.shape)
            if got != want:
                # torch saves num_batches_tracked as a 0-d tensor; accept a 1-element array for it
                if not (int(np.prod(got)) == int(np.prod(want)) == 1):
                    mismatched.append((key, got, want))
                    continue
                src = src.reshape(want)
            pending.append((target, src))
        if mismatched or (strict and (missing or unexpected)):
            raise StateDictError(type(self).__name__, missing if strict else [],
                                 unexpected if strict else [], mismatched)
        for target, src in pending:
            dst = target.data
            if device_of(src) != device_of(dst):
                src = to_device(src, device_of(dst))
            xp = get_xp(dst)
            dst[...] = xp.asarray(src).astype(dst.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # ---- calling ---------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(self._parameters) | set(self._buffers) | set(self._modules))
