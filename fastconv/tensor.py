"""Tensor and Function: the define-by-run autograd core.

A ``Tensor`` wraps a NumPy or CuPy array.  Every differentiable op is a
``Function`` subclass with ``forward`` (arrays in, array or tuple of arrays
out) and ``backward`` (one gradient per output in, one gradient per
positional input out; ``None`` for inputs that need none).  ``backward()``
walks the graph iteratively, so deep networks do not hit Python's recursion
limit, and frees each node's saved arrays once it has been used.
"""
import contextlib
import sys
import threading

import numpy as np

from ._xp import device_of, get_xp, is_cupy_array, to_device

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Disable graph recording inside the block (inference, optimizer steps)."""
    prev = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = prev


@contextlib.contextmanager
def enable_grad():
    prev = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = prev


def _as_array(data, dtype=None, device=None):
    if type(data) is np.ndarray and dtype is None and device is None:  # the common case, nothing to convert
        return data
    if isinstance(data, Tensor):
        data = data.data
    if is_cupy_array(data):
        arr = data if dtype is None else data.astype(dtype, copy=False)
    else:
        arr = np.asarray(data, dtype=dtype)
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, (np.ndarray, np.generic)):
            arr = arr.astype(np.float32)  # Python floats/lists default to float32, like torch
    if device is not None and device_of(arr) != device:
        arr = to_device(arr, device)
    return arr


class Tensor:
    """An array plus its gradient and the Function that created it."""

    __array_priority__ = 1000  # make ndarray (op) Tensor call Tensor's reflected op

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        self.data = _as_array(data, dtype, device)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self._out_idx = 0

    # ---- array-like properties -------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: int(self.data.size))
    device = property(lambda self: device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)

    def numel(self):
        return self.size

    def dim(self):
        return self.ndim

    def __len__(self):
        return self.data.shape[0]

    def item(self):
        return self.data.item()

    def numpy(self):
        """The data as a NumPy array (copied from the GPU when needed)."""
        return self.data.get() if is_cupy_array(self.data) else self.data

    def tolist(self):
        return self.numpy().tolist()

    @property
    def xp(self):
        return get_xp(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.numpy()!r}, device={self.device!r}{grad})"

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    # ---- graph -------------------------------------------------------------------
    def detach(self):
        return Tensor(self.data, requires_grad=False)

    def requires_grad_(self, flag=True):
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    def to(self, device=None, dtype=None):
        """A copy on another device and/or dtype (differentiable for dtype only)."""
        data = self.data
        if dtype is not None:
            data = data.astype(dtype)
        if device is not None and device != self.device:
            data = to_device(data, device)
        if data is self.data:
            return self
        t = Tensor(data, requires_grad=self.requires_grad)
        return t

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward: tensor does not require grad and has no grad_fn")
        xp = self.xp
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward: grad shape {grad.shape} does not match tensor shape {self.shape}")
        if self._ctx is None:
            _accumulate_leaf(self, grad)
            return
        # iterative post-order DFS over Function nodes
        order, seen = [], set()
        stack = [(self._ctx, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for p in node.parents:
                if p is not None and p._ctx is not None and id(p._ctx) not in seen:
                    stack.append((p._ctx, False))
        grads = {id(self._ctx): [None] * self._ctx.n_outputs}
        grads[id(self._ctx)][self._out_idx] = grad
        for node in reversed(order):
            gouts = grads.pop(id(node), None)
            if gouts is None or all(g is None for g in gouts):
                node.release()
                continue
            if node.n_outputs > 1:
                gouts = [g if g is not None else node.xp.zeros(shape, dtype) for g, (shape, dtype) in zip(gouts, node.out_meta)]
            gins = node.backward(*gouts)
            if not isinstance(gins, tuple):
                gins = (gins,)
            node.release()
            for parent, g in zip(node.parents, gins):
                if parent is None or g is None or not parent.requires_grad:
                    continue
                if g.shape != parent.data.shape:
                    raise RuntimeError(
                        f"{type(node).__name__}.backward returned grad of shape {g.shape} for an input of shape {parent.shape}"
                    )
                if parent._ctx is None:
                    owned = _sole(g, _REFS_GINS)  # (not inside the call below: its pushed args count)
                    _accumulate_leaf(parent, g, owned)
                else:
                    slot = grads.setdefault(id(parent._ctx), [None] * parent._ctx.n_outputs)
                    i = parent._out_idx
                    cur = slot[i]
                    if cur is None:
                        slot[i] = g
                    elif cur.dtype == g.dtype and _sole(cur, _REFS_SLOT):
                        cur += g  # nobody else can see this array: sum in place, no new buffer
                    else:
                        slot[i] = cur + g
                    cur = None


def _sole(a, refs):
    """True when ``a`` is a NumPy array that owns its memory and has exactly ``refs``
    references (those the caller holds, measured by ``_calibrate``): no view, saved tensor or
    other gradient slot can see it, so it may be updated or adopted in place."""
    return type(a) is np.ndarray and a.base is None and a.flags.writeable and sys.getrefcount(a) == refs


def _calibrate():
    """Reference counts _sole sees for an otherwise unreferenced array in backward()'s two
    call sites (a gradient tuple zipped with the parents; a slot list plus a local), measured
    the same way so that interpreter versions which count differently stay exact."""
    def gins_site():
        gins = (np.empty(1),)
        for parent, g in zip((None,), gins):
            return sys.getrefcount(g) + 1  # + the parameter of _sole itself

    def slot_site():
        slot = [np.empty(1)]
        cur = slot[0]
        return sys.getrefcount(cur) + 1

    return gins_site(), slot_site()


_REFS_GINS, _REFS_SLOT = _calibrate()


def _accumulate_leaf(t, g, owned=False):
    if g.dtype != t.data.dtype:
        g = g.astype(t.data.dtype)
        owned = True
    buf = getattr(t, "_grad_buffer", None)  # a view into a flat gradient buffer (nn.Module.flatten_parameters)
    if buf is not None:
        if t.grad is buf:
            buf += g
        else:
            buf[...] = g if t.grad is None else t.grad + g
            t.grad = buf
        return
    if t.grad is None:
        t.grad = g if owned else g.copy()  # adopt a fresh gradient nobody else holds
    else:
        t.grad = t.grad + g


class Function:
    """Base class of differentiable ops.  Subclasses define forward/backward."""

    def __init__(self):
        self.parents = ()
        self.needs_input_grad = ()
        self.saved = ()
        self.n_outputs = 1
        self.out_meta = ()
        self.xp = np

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def release(self):
        self.saved = ()
        self.__dict__.update({k: None for k in getattr(self, "_release", ())})

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grad_outputs):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = cls()
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx.xp = get_xp(*[r for r in raw if hasattr(r, "dtype")])
        out = ctx.forward(*raw, **kwargs)
        record = is_grad_enabled() and any(ctx.needs_input_grad)
        if isinstance(out, tuple):
            outs = tuple(Tensor(o, requires_grad=record) for o in out)
            ctx.n_outputs = len(outs)
            ctx.out_meta = tuple((o.data.shape, o.data.dtype) for o in outs)
        else:
            outs = (Tensor(out, requires_grad=record),)
        if record:
            ctx.parents = tuple(a if isinstance(a, Tensor) else None for a in args)
            for i, o in enumerate(outs):
                o._ctx = ctx
                o._out_idx = i
        else:
            ctx.release()
        return outs if isinstance(out, tuple) else outs[0]


def tensor(data, requires_grad=False, dtype=None, device=None):
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def as_tensor(x, dtype=None):
    return x if isinstance(x, Tensor) and dtype is None else Tensor(x, dtype=dtype)
