"""CuPy GPU kernels: CUDA C++ sources (``*.cu``) compiled through ``cupy.RawModule``.

Importable without a GPU; then ``UNAVAILABLE`` says why (dispatch reports it)
and no kernels are collected.  A family module that fails to import is listed
in ``FAMILY_ERRORS`` (its ops fall back to the next backend).
"""
import warnings

from .._collect import collect as _collect

UNAVAILABLE = None
FAMILY_ERRORS = {}
__all__ = []

try:
    import cupy as _cupy
except Exception as _exc:  # ImportError, broken CUDA libraries, ...
    UNAVAILABLE = f"CuPy not importable ({type(_exc).__name__}: {_exc})"
else:
    try:
        _n = _cupy.cuda.runtime.getDeviceCount()
    except Exception as _exc:
        UNAVAILABLE = f"no CUDA GPU ({type(_exc).__name__}: {_exc})"
    else:
        if _n < 1:
            UNAVAILABLE = "no CUDA GPU (device count 0)"

if UNAVAILABLE is None:
    __all__, FAMILY_ERRORS = _collect(__name__, globals())
    if FAMILY_ERRORS:
        warnings.warn(f"fastconv.kernels.cupy: families failed to import: {FAMILY_ERRORS}", RuntimeWarning)
