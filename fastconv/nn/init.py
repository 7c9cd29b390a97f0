"""Weight initialisers with torch.nn.init's names and formulas (in place on ``Tensor.data``).

Randomness comes from one NumPy generator; ``manual_seed(s)`` makes model
construction reproducible.  Every function also takes ``generator=`` (a
``numpy.random.Generator``) to draw from instead.
"""
import contextlib
import math

import numpy as np

from .._xp import get_xp

_rng = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator the initialisers (and Dropout seeds) draw from."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def get_generator():
    return _rng


def _fill(tensor, sample):
    """Write a NumPy sample into the tensor's array (any device), keeping its dtype."""
    arr = tensor.data
    xp = get_xp(arr)
    arr[...] = xp.asarray(sample.astype(arr.dtype, copy=False))
    return tensor


def calculate_gain(nonlinearity, param=None):
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a tensor with >= 2 dims, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _sample_dtype(tensor):
    return np.float32 if tensor.data.dtype == np.float32 else np.float64


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    g = generator or _rng
    s = g.random(tensor.shape, dtype=_sample_dtype(tensor))  # float32 draws for float32 tensors: big layers fast
    s *= (b - a)
    s += a
    return _fill(tensor, s)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    g = generator or _rng
    s = g.standard_normal(tensor.shape, dtype=_sample_dtype(tensor))
    s *= std
    s += mean
    return _fill(tensor, s)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal(mean, std) truncated to [a, b] (absolute bounds, like torch)."""
    g = generator or _rng
    if not a < b or std <= 0:
        raise ValueError(f"trunc_normal_: need a < b and std > 0, got a={a}, b={b}, std={std}")
    sample = g.normal(mean, std, size=tensor.shape)
    bad = (sample < a) | (sample > b)
    for _ in range(1000):  # rejection sampling; converges fast unless [a, b] is far in a tail
        if not bad.any():
            break
        sample[bad] = g.normal(mean, std, size=int(bad.sum()))
        bad = (sample < a) | (sample > b)
    return _fill(tensor, np.clip(sample, a, b))


def constant_(tensor, val):
    tensor.data[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def eye_(tensor):
    if tensor.ndim != 2:
        raise ValueError(f"eye_: needs a 2-D tensor, got shape {tensor.shape}")
    return _fill(tensor, np.eye(*tensor.shape))


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    fan = _fan(tensor, mode)
    if fan == 0:
        return tensor
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    fan = _fan(tensor, mode)
    if fan == 0:
        return tensor
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)


_skip_default = [False]


@contextlib.contextmanager
def skip_default_init():
    """Inside the block, Linear/Conv leave their weights uninitialised (zeros) instead of drawing
    torch's default: for models that re-initialise every layer anyway (saves a pass over big layers)."""
    prev = _skip_default[0]
    _skip_default[0] = True
    try:
        yield
    finally:
        _skip_default[0] = prev


def default_weight_bias_(weight, bias):
    """torch's default for Linear/Conv: kaiming_uniform(a=sqrt(5)) weight, U(-1/sqrt(fan_in), ...) bias."""
    if _skip_default[0]:
        weight.data[...] = 0
        if bias is not None:
            bias.data[...] = 0
        return
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
