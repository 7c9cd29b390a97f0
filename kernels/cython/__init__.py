"""Cython CPU kernels: typed memoryviews, nogil, OpenMP prange, BLAS from SciPy.

Each family lives in ``<family>.pyx`` (``conv.pyx``, ``pool.pyx``, ...),
compiled by ``setup.py``.  Families that are not built are left out and
dispatch falls through to the reference.
"""
from .._collect import collect as _collect

__all__, _errors = _collect(__name__, globals())
UNAVAILABLE = None
if not __all__:
    UNAVAILABLE = (
        "extension not built (run `pip install .` or `python setup.py build_ext --inplace`)"
        + (f"; import errors: {_errors}" if _errors else "")
    )
