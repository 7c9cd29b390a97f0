"""Thread count for the OpenMP kernels (follows fastconv.set_num_threads); ``blas_threads``
(kernels/_blas.py) holds a BLAS library's threads down while they call it."""
from .._blas import blas_threads  # noqa: F401  (re-exported for the kernel modules)


def num_threads(work, grain=1):
    """Threads to use for ``work`` items: at most the configured count, at least 1,
    and no more than one per ``grain`` items (small calls stay single-threaded)."""
    try:
        from fastconv.config import get_num_threads

        nt = get_num_threads()
    except ImportError:  # pragma: no cover - kernels used without the package
        import os

        nt = os.cpu_count() or 1
    return max(1, min(nt, int(work) // max(1, int(grain)) or 1))

