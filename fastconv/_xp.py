"""Array-module helpers: NumPy on the CPU, CuPy on the GPU (imported lazily)."""
import numpy as np


def is_cupy_array(a):
    return type(a).__module__.split(".")[0] == "cupy"


def get_xp(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for a in arrays:
        if a is not None and is_cupy_array(a):
            import cupy

            return cupy
    return np


def device_of(a):
    """'cuda' for CuPy arrays, 'cpu' for everything else."""
    return "cuda" if is_cupy_array(a) else "cpu"


def to_numpy(a):
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def to_device(a, device):
    """Move an array to ``device`` ('cpu' or 'cuda')."""
    if device == "cpu":
        return to_numpy(a)
    if device == "cuda":
        import cupy

        return cupy.asarray(a)
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")
