"""Containers: Sequential, ModuleList, ModuleDict (children named like torch's)."""
import collections

from .activation import ReLU
from .conv import Conv2d
from .module import Module
from .norm import _BatchNorm


class Sequential(Module):
    """Modules applied in order; children named '0', '1', ... or by an OrderedDict's keys."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], collections.OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(collections.OrderedDict(list(self._modules.items())[idx]))
        keys = list(self._modules)
        return self._modules[keys[idx]]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        mods = list(self._modules.values())
        i, n = 0, len(mods)
        while i < n:
            m = mods[i]
            if i + 1 < n and _bn_then_relu(m, mods[i + 1]):  # one fused kernel pair, same result
                x = m.forward_act(x)
                i += 2
                continue
            if i + 1 < n and _conv_then_relu(m, mods[i + 1]):  # the conv kernel's relu epilogue
                x = m.forward_relu(x)
                i += 2
                continue
            x = m(x)
            i += 1
        return x


def _conv_then_relu(a, b):
    """True for a plain Conv2d layer followed by a plain ReLU."""
    return type(b) is ReLU and type(a) is Conv2d


def _bn_then_relu(a, b):
    """True for a plain batch-norm layer followed by a plain ReLU (no subclass overriding forward)."""
    return type(b) is ReLU and isinstance(a, _BatchNorm) and type(a).forward is _BatchNorm.forward


class ModuleList(Module):
    """A list of modules, registered as children '0', '1', ..."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList index {idx} out of range for length {n}")
        return self._modules[str(idx % n)]

    def __setitem__(self, idx, module):
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList index {idx} out of range for length {n}")
        self.add_module(str(idx % n), module)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it")


class ModuleDict(Module):
    """An ordered dict of named modules."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self.add_module(k, m)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(); index it by name")
