"""Cython CPU kernels: typed memoryviews, nogil, OpenMP prange, BLAS from SciPy.

Each family lives in ``<family>.pyx`` (``conv.pyx``, ``pool.pyx``, ...),
compiled by ``setup.py``.  Families that are not built are left out and
dispatch falls through to the reference.

Left to the reference on purpose: ``dense`` (``linear_*``: NumPy's matmul is already an
OpenBLAS GEMM; a cython_blas version with the bias fused measured 0.91-0.97x of it at one
thread on LeNet-to-8192x512x512 shapes, SciPy's OpenBLAS build being the slower one here) and
``dropout_backward`` (see ``norm.pyx``).
"""
from .._collect import collect as _collect

__all__, _errors = _collect(__name__, globals())
UNAVAILABLE = None
if not __all__:
    UNAVAILABLE = (
        "extension not built (run `pip install .` or `python setup.py build_ext --inplace`)"
        + (f"; import errors: {_errors}" if _errors else "")
    )
