"""Thread count for the OpenMP kernels (follows fastconv.set_num_threads)."""


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


class numpy_blas_threads:
    """Context: NumPy's own OpenBLAS (a separate library and thread pool from the SciPy BLAS our
    compiled kernels call) at ``n`` threads, restored after.  Its pool fights OpenMP threads that
    are still spinning after a kernel; NumPy-level kernels that must use matmul run it at one
    thread (the attention backward's 2x4x128x32 case: 4.2 ms with the pool, see attention.py)."""
    _lib = False

    def __init__(self, n=1):
        self.n = n

    def __enter__(self):
        if numpy_blas_threads._lib is False:
            numpy_blas_threads._lib = None
            try:
                import numpy  # noqa: F401
                from threadpoolctl import ThreadpoolController
                for lib in ThreadpoolController().lib_controllers:
                    if lib.internal_api == "openblas" and "numpy.libs" in lib.filepath:
                        numpy_blas_threads._lib = lib
            except Exception:  # threadpoolctl missing: results stay right
                pass
        lib = numpy_blas_threads._lib
        self.prev = None
        if lib is not None:
            self.prev = lib.get_num_threads()
            if self.prev != self.n:
                lib.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.prev is not None and self.prev != self.n:
            numpy_blas_threads._lib.set_num_threads(self.prev)
