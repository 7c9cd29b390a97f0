"""Optimizer base class (torch.optim.Optimizer's interface) and the flat-buffer path.

Subclasses implement ``_update(group, param, grad, state)``: one in-place kernel
call, resolved through ``fastconv.dispatch`` on the parameter's device, over
either one parameter or a whole flat buffer.  No array math happens here.

Flat mode (``flat=True``): each parameter group is packed into one contiguous
buffer and every parameter's ``.data`` is rebound to a view of it (and
``param._flat = (buffer, offset)`` records where); state
buffers are flat too, and each parameter's state entries are views of them, so
``optimizer.state[p]`` looks exactly as in per-tensor mode.  A step gathers the
gradients into one flat gradient buffer and makes ONE kernel call per group.
When that is not possible (a parameter without a gradient, or parameters whose
state differs, e.g. after a partial step) the group falls back to per-tensor
calls on the same views, which give identical results.
"""
from collections import defaultdict

from .. import dispatch
from .._xp import get_xp, to_device
from ..tensor import Tensor, enable_grad, no_grad


def _is_array(v):
    return hasattr(v, "shape") and hasattr(v, "dtype")


class Optimizer:
    """``Optimizer(params, defaults)``: params is an iterable of Tensors or of dicts
    (parameter groups, each with a ``'params'`` entry plus per-group options)."""

    def __init__(self, params, defaults, flat=False, backend=None):
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or dicts, got a Tensor")
        self.defaults = dict(defaults)
        self.flat = bool(flat)
        self.backend = backend
        self.state = defaultdict(dict)
        self.param_groups = []
        self._flat_groups = []  # parallel to param_groups in flat mode
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])

    # ---- groups ------------------------------------------------------------------
    def _check_group(self, group):
        """Subclasses validate hyperparameters (ValueError)."""

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"{type(self).__name__}.add_param_group: expected a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError(f"{type(self).__name__}.add_param_group: the group has no 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize fastconv Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__} can't optimize a non-leaf Tensor")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: a parameter group contains duplicate parameters")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one parameter group")
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)
        if self.flat:
            self._flat_groups.append(_FlatGroup(params, type(self).__name__))

    # ---- gradients and steps -----------------------------------------------------
    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def _kernel(self, op, like):
        return dispatch.kernel(op, like, self.backend)

    def _update(self, group, param, grad, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for i, group in enumerate(self.param_groups):
                fg = self._flat_groups[i] if self.flat else None
                if fg is not None and fg.ready(self.state):
                    fg.gather_grads()
                    self._update(group, fg.data, fg.grad, fg.state)
                    fg.publish(self.state)
                    continue
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(group, p.data, p.grad, self.state[p])
        return loss

    @staticmethod
    def _full(like, fill=0.0):
        """A new state buffer shaped like ``like`` (same dtype and device), filled with ``fill``."""
        return get_xp(like).full(like.shape, fill, dtype=like.dtype)

    @classmethod
    def _buffer(cls, state, name, like, fill=0.0):
        """state[name], created (filled with ``fill``) when missing."""
        if name not in state:
            state[name] = cls._full(like, fill)
        return state[name]

    # ---- checkpoints -------------------------------------------------------------
    def state_dict(self):
        """{'state': {index: {name: value}}, 'param_groups': [{..., 'params': [index, ...]}]}
        with parameters numbered in group order, as torch does.  Arrays are copies."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {k: (v.copy() if _is_array(v) else v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        for i, (saved, g) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(g["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has {len(saved['params'])} parameters in the "
                                 f"state dict and {len(g['params'])} in the optimizer")
        new_state = {}
        for saved, g in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], g["params"]):
                entry = state_dict["state"].get(idx)
                if entry is None:
                    continue
                new_state[p] = {k: self._load_value(name, k, v, p) for k, v in entry.items()}
        self.state = defaultdict(dict, new_state)
        for saved, g in zip(groups, self.param_groups):
            g.update({k: v for k, v in saved.items() if k != "params"})
            self._check_group(g)

    @staticmethod
    def _load_value(name, key, v, p):
        if type(v).__module__.split(".")[0] == "torch":  # a torch optimizer's state dict
            v = v.detach().cpu().numpy()
        if key == "step":
            return int(v.item() if _is_array(v) else v)
        if not _is_array(v):
            return v
        if tuple(v.shape) != p.shape:
            raise ValueError(f"{name}.load_state_dict: state '{key}' has shape {tuple(v.shape)}, "
                             f"the parameter has shape {p.shape}")
        v = to_device(v, p.device).astype(p.dtype, copy=True)
        return get_xp(v).ascontiguousarray(v)


class _FlatGroup:
    """One parameter group packed into a flat buffer (see the module docstring)."""

    def __init__(self, params, owner):
        if params:
            dtypes = {p.dtype for p in params}
            devices = {p.device for p in params}
            if len(dtypes) > 1 or len(devices) > 1:
                raise ValueError(f"{owner}(flat=True): all parameters of a group must share one dtype and device, "
                                 f"got dtypes {sorted(map(str, dtypes))} on {sorted(devices)}")
        like = params[0].data if params else None
        xp = get_xp(like)
        self.params = params
        self.slots, off = [], 0
        for p in params:
            self.slots.append((off, p.size))
            off += p.size
        dtype = params[0].dtype if params else "float32"
        self.data = xp.empty(off, dtype=dtype)
        self.grad = xp.empty(off, dtype=dtype)
        self.views = [self._view(self.data, i) for i in range(len(params))]
        for p, v, (off, _) in zip(params, self.views, self.slots):
            v[...] = p.data
            p.data = v
            p._flat = (self.data, off)  # the flat-parameter convention: (buffer, offset)
        self.state = {}  # name -> flat array, or a scalar (e.g. 'step') shared by all params
        self.state_views = {}  # name -> per-param views of state[name]

    def _view(self, flat, i):
        off, n = self.slots[i]
        return flat[off:off + n].reshape(self.params[i].shape)

    def ready(self, states):
        """True when one flat kernel call can do this step; re-syncs rebinds first."""
        for i, p in enumerate(self.params):
            if p.data is not self.views[i]:  # someone rebound p.data (e.g. loaded weights): copy it in
                if p.shape != self.views[i].shape:
                    raise ValueError(f"flat optimizer: parameter {i} changed shape from "
                                     f"{self.views[i].shape} to {p.shape}")
                self.views[i][...] = p.data
                p.data = self.views[i]
        if not self.params or any(p.grad is None for p in self.params):
            return False
        per = [states.get(p, {}) for p in self.params]
        keys = set(per[0])
        if any(set(s) != keys for s in per):
            return False
        for k in keys:
            vals = [s[k] for s in per]
            if _is_array(vals[0]) != all(_is_array(v) for v in vals):
                return False
            if not _is_array(vals[0]) and any(v != vals[0] for v in vals):
                return False
        # the states agree: adopt them (copying arrays into the flat buffers where needed)
        for k in list(self.state):
            if k not in keys:
                del self.state[k]
                self.state_views.pop(k, None)
        for k in keys:
            if not _is_array(per[0][k]):
                self.state[k] = per[0][k]
                continue
            views = self.state_views.get(k)
            if views is None:
                self.state[k] = get_xp(self.data).empty_like(self.data)
                views = self.state_views[k] = [self._view(self.state[k], i) for i in range(len(self.params))]
            for s, v in zip(per, views):
                if s[k] is not v:
                    v[...] = s[k]
                    s[k] = v
        return True

    def gather_grads(self):
        for i, (p, (off, n)) in enumerate(zip(self.params, self.slots)):
            g = p.grad
            if tuple(g.shape) != p.shape:  # the same errors the per-tensor kernels raise
                raise ValueError(f"flat optimizer: gradient of parameter {i} has shape {tuple(g.shape)}, "
                                 f"the parameter {p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"flat optimizer: gradient of parameter {i} has dtype {g.dtype}, "
                                f"the parameter {p.dtype}")
            self.grad[off:off + n] = g.reshape(-1)

    def publish(self, states):
        """Give every parameter views of new flat state and the shared scalars."""
        for k, v in self.state.items():
            if _is_array(v) and k not in self.state_views:
                self.state_views[k] = [self._view(v, i) for i in range(len(self.params))]
        for i, p in enumerate(self.params):
            s = states[p]
            for k, v in self.state.items():
                s[k] = self.state_views[k][i] if _is_array(v) else v
