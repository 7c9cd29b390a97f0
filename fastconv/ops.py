"""Tensor arithmetic: broadcasting element-wise ops, reductions, shape ops.

These are generic array operations (NumPy/CuPy through ``xp``), not
kernels; the hand-written kernels live in ``fastconv.kernels`` and are
reached through ``fastconv.functional``.
"""
import numpy as np

from ._xp import get_xp
from .tensor import Function, Tensor, _as_array


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched to reach ``shape``."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _t(x, like=None):
    """Wrap a scalar/array as a constant Tensor with the dtype of ``like``."""
    if isinstance(x, Tensor):
        return x
    dtype = like.dtype if like is not None and not hasattr(x, "dtype") else None
    xp = get_xp(like.data) if like is not None else np
    arr = xp.asarray(x, dtype=dtype) if dtype is not None else _as_array(x)
    return Tensor(arr)


class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, g):
        return _unbroadcast(g, self.shapes[0]), _unbroadcast(g, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, g):
        return _unbroadcast(g, self.shapes[0]), _unbroadcast(-g, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        ga = _unbroadcast(g * b, a.shape) if self.needs_input_grad[0] else None
        gb = _unbroadcast(g * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        ga = _unbroadcast(g / b, a.shape) if self.needs_input_grad[0] else None
        gb = _unbroadcast(-g * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Pow(Function):
    def forward(self, a, p):
        self.save_for_backward(a)
        self.p = p
        return a ** p

    def backward(self, g):
        (a,) = self.saved
        return g * self.p * a ** (self.p - 1), None


class Exp(Function):
    def forward(self, a):
        y = self.xp.exp(a)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        return (g * self.saved[0],)


class Log(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return self.xp.log(a)

    def backward(self, g):
        return (g / self.saved[0],)


class Sqrt(Function):
    def forward(self, a):
        y = self.xp.sqrt(a)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        return (g / (2 * self.saved[0]),)


class Abs(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return self.xp.abs(a)

    def backward(self, g):
        return (g * self.xp.sign(self.saved[0]),)


class Clamp(Function):
    def forward(self, a, lo, hi):
        self.save_for_backward(a)
        self.lo, self.hi = lo, hi
        return self.xp.clip(a, lo, hi)

    def backward(self, g):
        (a,) = self.saved
        mask = self.xp.ones(a.shape, dtype=bool)
        if self.lo is not None:
            mask &= a >= self.lo
        if self.hi is not None:
            mask &= a <= self.hi
        return g * mask, None, None


class MaxMin(Function):
    """Element-wise maximum/minimum of two tensors (ties split the gradient to ``a``)."""

    def forward(self, a, b, take_max):
        self.save_for_backward(a, b)
        self.take_max = take_max
        return self.xp.maximum(a, b) if take_max else self.xp.minimum(a, b)

    def backward(self, g):
        a, b = self.saved
        pick_a = (a >= b) if self.take_max else (a <= b)
        return _unbroadcast(g * pick_a, a.shape), _unbroadcast(g * ~pick_a, b.shape), None


class Where(Function):
    def forward(self, cond, a, b):
        self.cond = cond
        self.shapes = (a.shape, b.shape)
        return self.xp.where(cond, a, b)

    def backward(self, g):
        z = self.xp.zeros_like(g)
        return None, _unbroadcast(self.xp.where(self.cond, g, z), self.shapes[0]), _unbroadcast(
            self.xp.where(self.cond, z, g), self.shapes[1])


class MatMul(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, g):
        a, b = self.saved
        xp = self.xp
        ga = gb = None
        if self.needs_input_grad[0]:
            if b.ndim == 1:
                ga = xp.multiply.outer(g, b) if a.ndim > 1 else g * b
            else:
                ga = g @ xp.swapaxes(b, -1, -2) if a.ndim > 1 else (g[..., None, :] @ xp.swapaxes(b, -1, -2))[..., 0, :]
            ga = _unbroadcast(ga, a.shape)
        if self.needs_input_grad[1]:
            if a.ndim == 1:
                gb = xp.multiply.outer(a, g) if b.ndim > 1 else g * a
            elif b.ndim == 1:
                gb = (xp.swapaxes(a, -1, -2) @ g[..., None])[..., 0]
            else:
                gb = xp.swapaxes(a, -1, -2) @ g
            gb = _unbroadcast(gb, b.shape)
        return ga, gb


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _norm_axes(axis, a.ndim), keepdims
        return a.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        if not self.keepdims:
            g = g.reshape([1 if i in self.axes else s for i, s in enumerate(self.shape)])
        return (self.xp.broadcast_to(g, self.shape).copy(),)


class Mean(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _norm_axes(axis, a.ndim), keepdims
        self.count = int(np.prod([a.shape[i] for i in self.axes])) if self.axes else 1
        return a.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        if not self.keepdims:
            g = g.reshape([1 if i in self.axes else s for i, s in enumerate(self.shape)])
        return (self.xp.broadcast_to(g / self.count, self.shape).copy(),)


class MaxReduce(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.save_for_backward(a)
        self.axes, self.keepdims = _norm_axes(axis, a.ndim), keepdims
        y = a.max(axis=self.axes, keepdims=True)
        self.y = y
        return y if keepdims else y.reshape([s for i, s in enumerate(y.shape) if i not in self.axes])

    def backward(self, g):
        (a,) = self.saved
        if not self.keepdims:
            g = g.reshape(self.y.shape)
        mask = a == self.y
        return (g * mask / mask.sum(axis=self.axes, keepdims=True),)


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape), None


class Transpose(Function):
    def forward(self, a, axes):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, g):
        return g.transpose(np.argsort(self.axes)), None


def _basic_index(index):
    """True for NumPy basic indexing (ints, slices, None, Ellipsis): the result is a view with no repeats."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, slice)
               or (isinstance(i, (int, np.integer)) and not isinstance(i, bool)) for i in items)


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=self.dtype)
        if _basic_index(self.index):  # a view: every element picked at most once, plain assignment is exact
            out[self.index] = g
        elif xp is np:
            np.add.at(out, self.index, g)
        else:
            import cupyx

            cupyx.scatter_add(out, self.index, g)
        return out, None


class Concat(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return self.xp.concatenate(arrays, axis=axis)

    def backward(self, g):
        idx = np.cumsum(self.sizes)[:-1]
        return tuple(self.xp.split(g, idx, axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        return self.xp.stack(arrays, axis=axis)

    def backward(self, g):
        n = g.shape[self.axis]
        return tuple(self.xp.take(g, i, axis=self.axis) for i in range(n))


class Cast(Function):
    def forward(self, a, dtype):
        self.src = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.src), None


# ---- functional entry points -----------------------------------------------------------

def cat(tensors, axis=0, dim=None):
    """Concatenate along ``axis`` (``dim`` accepted as in torch)."""
    axis = dim if dim is not None else axis
    tensors = [_t(t) for t in tensors]
    return Concat.apply(*tensors, axis=axis)


concat = cat


def stack(tensors, axis=0, dim=None):
    axis = dim if dim is not None else axis
    tensors = [_t(t) for t in tensors]
    return Stack.apply(*tensors, axis=axis)


def where(cond, a, b):
    cond = cond.data if isinstance(cond, Tensor) else cond
    a = _t(a, b if isinstance(b, Tensor) else None)
    b = _t(b, a)
    return Where.apply(cond, a, b)


def maximum(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return MaxMin.apply(a, _t(b, a), True)


def minimum(a, b):
    a = _t(a, b if isinstance(b, Tensor) else None)
    return MaxMin.apply(a, _t(b, a), False)


def _creation(fn, shape, dtype, device, requires_grad):
    import numpy as _np

    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    arr = fn(shape).astype(dtype or _np.float32)
    return Tensor(arr, requires_grad=requires_grad, device=device)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _creation(np.zeros, shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _creation(np.ones, shape, dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False, seed=None):
    rng = np.random.default_rng(seed)
    return _creation(rng.standard_normal, shape, dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False, seed=None):
    rng = np.random.default_rng(seed)
    return _creation(rng.random, shape, dtype, device, requires_grad)


def arange(*args, dtype=None, device=None):
    return Tensor(np.arange(*args).astype(dtype or np.float32), device=device)


def from_dlpack(obj):
    """Wrap a DLPack-capable object (a torch tensor, a CuPy array...) without copying."""
    dev = obj.__dlpack_device__()[0] if hasattr(obj, "__dlpack_device__") else 1
    if dev == 2:  # kDLCUDA
        import cupy

        return Tensor(cupy.from_dlpack(obj))
    return Tensor(np.from_dlpack(obj))


# ---- Tensor methods ------------------------------------------------------------------

def _binary(cls, swap=False):
    def op(self, other):
        other = _t(other, self)
        return cls.apply(other, self) if swap else cls.apply(self, other)
    return op


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _install():
    T = Tensor
    T.__add__ = _binary(Add)
    T.__radd__ = _binary(Add, swap=True)
    T.__sub__ = _binary(Sub)
    T.__rsub__ = _binary(Sub, swap=True)
    T.__mul__ = _binary(Mul)
    T.__rmul__ = _binary(Mul, swap=True)
    T.__truediv__ = _binary(Div)
    T.__rtruediv__ = _binary(Div, swap=True)
    T.__matmul__ = _binary(MatMul)
    T.__rmatmul__ = _binary(MatMul, swap=True)
    T.__neg__ = lambda self: Neg.apply(self)
    T.__pow__ = lambda self, p: Pow.apply(self, p)
    T.__getitem__ = lambda self, idx: GetItem.apply(self, idx.data if isinstance(idx, Tensor) else idx)
    # comparisons give plain boolean arrays (no gradient)
    T.__gt__ = lambda self, o: self.data > (o.data if isinstance(o, Tensor) else o)
    T.__lt__ = lambda self, o: self.data < (o.data if isinstance(o, Tensor) else o)
    T.__ge__ = lambda self, o: self.data >= (o.data if isinstance(o, Tensor) else o)
    T.__le__ = lambda self, o: self.data <= (o.data if isinstance(o, Tensor) else o)
    T.exp = lambda self: Exp.apply(self)
    T.log = lambda self: Log.apply(self)
    T.sqrt = lambda self: Sqrt.apply(self)
    T.abs = lambda self: Abs.apply(self)
    T.clamp = lambda self, min=None, max=None: Clamp.apply(self, min, max)
    T.sum = lambda self, axis=None, keepdims=False, dim=None, keepdim=None: Sum.apply(
        self, axis=dim if dim is not None else axis, keepdims=keepdim if keepdim is not None else keepdims)
    T.mean = lambda self, axis=None, keepdims=False, dim=None, keepdim=None: Mean.apply(
        self, axis=dim if dim is not None else axis, keepdims=keepdim if keepdim is not None else keepdims)
    T.max = lambda self, axis=None, keepdims=False, dim=None, keepdim=None: MaxReduce.apply(
        self, axis=dim if dim is not None else axis, keepdims=keepdim if keepdim is not None else keepdims)
    T.reshape = lambda self, *shape: Reshape.apply(self, _shape_arg(shape))
    T.view = T.reshape
    T.flatten = lambda self, start_dim=0: Reshape.apply(self, self.shape[:start_dim] + (-1,))

    def transpose(self, *axes):
        """torch semantics: transpose(i, j) swaps two axes; no argument reverses all."""
        if not axes:
            perm = tuple(reversed(range(self.ndim)))
        elif len(axes) == 2:
            perm = list(range(self.ndim))
            i, j = axes[0] % self.ndim, axes[1] % self.ndim
            perm[i], perm[j] = perm[j], perm[i]
            perm = tuple(perm)
        else:
            raise ValueError(f"transpose: expected two axes to swap, got {axes}; use permute for a full permutation")
        return Transpose.apply(self, perm)

    T.transpose = transpose
    T.permute = lambda self, *axes: Transpose.apply(self, tuple(a % self.ndim for a in _shape_arg(axes)))
    T.T = property(lambda self: Transpose.apply(self, tuple(reversed(range(self.ndim)))))
    T.astype = lambda self, dtype: Cast.apply(self, dtype)


_install()
