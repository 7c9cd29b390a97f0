"""Batch transforms on (N, C, H, W) arrays, NumPy or CuPy (through ``xp``).

Random transforms take a ``numpy.random.Generator`` so a seeded loader gives
the same augmentation every run.  Labels are never touched.
"""
import numpy as np

from .._xp import get_xp


def _check(x, name):
    if not hasattr(x, "ndim") or x.ndim != 4:
        raise ValueError(f"{name}: expected a batch (N, C, H, W), got shape {getattr(x, 'shape', None)}")


def normalize(x, mean, std):
    """(x - mean) / std per channel."""
    _check(x, "normalize")
    xp = get_xp(x)
    mean = xp.asarray(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    std = xp.asarray(std, dtype=x.dtype).reshape(1, -1, 1, 1)
    if (std == 0).any():
        raise ValueError("normalize: std has a zero entry")
    return (x - mean) / std


def random_crop(x, size, padding=0, rng=None):
    """Pad by ``padding`` (zeros) and crop a random ``size`` window per sample."""
    _check(x, "random_crop")
    xp = get_xp(x)
    rng = rng or np.random.default_rng()
    h, w = (size, size) if isinstance(size, int) else size
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    N, C, H, W = x.shape
    if h > H or w > W:
        raise ValueError(f"random_crop: crop {h}x{w} larger than padded input {H}x{W}")
    top = xp.asarray(rng.integers(0, H - h + 1, N))
    left = xp.asarray(rng.integers(0, W - w + 1, N))
    rows = top[:, None] + xp.arange(h)[None]  # (N, h)
    cols = left[:, None] + xp.arange(w)[None]  # (N, w)
    n = xp.arange(N)[:, None, None, None]
    c = xp.arange(C)[None, :, None, None]
    return x[n, c, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(x, p=0.5, rng=None):
    """Flip each sample left-right with probability ``p``."""
    _check(x, "random_hflip")
    xp = get_xp(x)
    rng = rng or np.random.default_rng()
    flip = xp.asarray(rng.random(x.shape[0]) < p)[:, None, None, None]
    return xp.where(flip, x[..., ::-1], x)


def _sample(x, ys, xs):
    """Bilinear sample x (N,C,H,W) at float coordinates ys, xs (N,h,w); zeros outside."""
    xp = get_xp(x)
    N, C, H, W = x.shape
    y0 = xp.floor(ys).astype(np.int64)
    x0 = xp.floor(xs).astype(np.int64)
    wy = (ys - y0).astype(x.dtype)[:, None]
    wx = (xs - x0).astype(x.dtype)[:, None]
    n = xp.arange(N)[:, None, None]
    out = 0
    for dy, fy in ((0, 1 - wy), (1, wy)):
        for dx, fx in ((0, 1 - wx), (1, wx)):
            yy, xx = y0 + dy, x0 + dx
            inside = ((yy >= 0) & (yy < H) & (xx >= 0) & (xx < W))[:, None]
            v = x[n, :, xp.clip(yy, 0, H - 1), xp.clip(xx, 0, W - 1)]  # (N, h, w, C)
            v = xp.moveaxis(v, -1, 1)
            out = out + xp.where(inside, v, 0) * fy * fx
    return out.astype(x.dtype)


def random_rotation(x, degrees, rng=None):
    """Rotate each sample by a random angle in [-degrees, degrees] about its centre."""
    _check(x, "random_rotation")
    xp = get_xp(x)
    rng = rng or np.random.default_rng()
    N, C, H, W = x.shape
    ang = xp.asarray(np.deg2rad(rng.uniform(-degrees, degrees, N)))[:, None, None]
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    yy, xx = xp.meshgrid(xp.arange(H, dtype=np.float64) - cy, xp.arange(W, dtype=np.float64) - cx, indexing="ij")
    ys = xp.cos(ang) * yy[None] - xp.sin(ang) * xx[None] + cy
    xs = xp.sin(ang) * yy[None] + xp.cos(ang) * xx[None] + cx
    return _sample(x, ys, xs)


def resize(x, size):
    """Bilinear resize to ``size`` (int or (h, w)), align_corners=False like PyTorch."""
    _check(x, "resize")
    xp = get_xp(x)
    h, w = (size, size) if isinstance(size, int) else size
    N, C, H, W = x.shape
    ys = xp.clip((xp.arange(h) + 0.5) * (H / h) - 0.5, 0, H - 1)
    xs = xp.clip((xp.arange(w) + 0.5) * (W / w) - 0.5, 0, W - 1)
    ys = xp.broadcast_to(ys[None, :, None], (N, h, w))
    xs = xp.broadcast_to(xs[None, None, :], (N, h, w))
    return _sample(x, ys, xs)


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, x, rng=None):
        return normalize(x, self.mean, self.std)


class RandomCrop:
    def __init__(self, size, padding=0):
        self.size, self.padding = size, padding

    def __call__(self, x, rng=None):
        return random_crop(x, self.size, self.padding, rng)


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, x, rng=None):
        return random_hflip(x, self.p, rng)


class RandomRotation:
    def __init__(self, degrees):
        self.degrees = degrees

    def __call__(self, x, rng=None):
        return random_rotation(x, self.degrees, rng)


class Resize:
    def __init__(self, size):
        self.size = size

    def __call__(self, x, rng=None):
        return resize(x, self.size)


def _takes_rng(f):
    import inspect

    try:
        params = inspect.signature(f).parameters
    except (TypeError, ValueError):
        return True
    return "rng" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


class Compose:
    """Chain batch transforms; each is called as f(x, rng=rng) if it takes ``rng``, else f(x)."""

    def __init__(self, *fns):
        if len(fns) == 1 and isinstance(fns[0], (list, tuple)):
            fns = tuple(fns[0])
        self.fns = fns
        self._rng = [_takes_rng(f) for f in fns]

    def __call__(self, x, rng=None):
        for f, takes in zip(self.fns, self._rng):
            x = f(x, rng=rng) if takes else f(x)
        return x
