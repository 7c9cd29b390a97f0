"""NumPy reference kernels: the specification every other backend is tested against.

Written with ``xp`` (NumPy or CuPy, from the arguments), so the reference
also runs on the GPU as the last fallback there.  Vectorized: loops go over
kernel taps, never over pixels or batch elements.
"""
from .._collect import collect as _collect

__all__, _errors = _collect(__name__, globals())
if _errors:  # a broken reference module is a bug, not an optional feature
    raise ImportError(f"fastconv.kernels.reference: failed to import {_errors}")
