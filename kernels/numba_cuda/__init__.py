"""Numba CUDA kernels: ``@cuda.jit`` with shared-memory tiling, the readable GPU path.

Kernels take and return CuPy arrays (through ``__cuda_array_interface__``)
and launch on CuPy's current stream.  Under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, used by the tests where there is no GPU) they
take and return NumPy arrays instead.  Compiled lazily per dtype and cached
on disk (``cache=True``).  Families not written here fall through to the
reference backend.
"""
import numpy as _np

# numba-cuda 0.30 refers to ``np.row_stack`` while compiling any kernel, and
# NumPy 2.5 removed it: restore the alias before numba is imported.
if not hasattr(_np, "row_stack"):
    _np.row_stack = _np.vstack

UNAVAILABLE = None
__all__ = []
try:
    from numba import cuda as _cuda
    from numba.cuda import config as _config
except Exception as _exc:  # numba-cuda not installed or broken
    UNAVAILABLE = f"numba.cuda cannot be imported ({type(_exc).__name__}: {_exc})"
else:
    if not _config.ENABLE_CUDASIM:
        try:
            import cupy as _cupy  # noqa: F401  (outputs are CuPy arrays on a real GPU)
        except Exception as _exc:
            UNAVAILABLE = f"CuPy is not installed ({type(_exc).__name__}: {_exc})"
        else:
            try:
                _ok = _cuda.is_available()
            except Exception as _exc:  # driver problems
                _ok, _why = False, f"{type(_exc).__name__}: {_exc}"
            else:
                _why = "numba.cuda.is_available() is False"
            if not _ok:
                UNAVAILABLE = f"no CUDA GPU ({_why}); set NUMBA_ENABLE_CUDASIM=1 for the simulator"

if UNAVAILABLE is None:
    from .._collect import collect as _collect

    __all__, _errors = _collect(__name__, globals())
    if _errors:  # a family that fails to import is a bug here, not an optional feature
        raise ImportError(f"fastconv.kernels.numba_cuda: failed to import {_errors}")
