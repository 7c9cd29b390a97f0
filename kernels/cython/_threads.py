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


class blas_threads:
    """Context: one OpenBLAS at no more than ``n`` threads, restored after.  ``which``: "scipy" (the
    library SciPy's cython_blas, so every compiled kernel here, calls) or "numpy" (NumPy's own copy,
    a separate library with its own thread pool).  Compiled kernels call BLAS from inside their
    OpenMP threads with SciPy's at one thread, so OpenMP and OpenBLAS threads never compete for
    the cores; NumPy-level kernels that must use matmul run NumPy's at one thread for the same
    reason (its pool fights OpenMP threads still spinning after a kernel: the attention backward's
    2x4x128x32 case took 4.2 ms with it).  Without threadpoolctl nothing changes (results stay
    right, threads may oversubscribe)."""
    _libs = {}

    def __init__(self, which="scipy", n=1):
        self.which, self.n, self.prev = which, n, None

    @classmethod
    def _find(cls, which):
        if which not in cls._libs:
            cls._libs[which] = None
            try:
                import numpy  # noqa: F401
                import scipy.linalg  # noqa: F401  (loads the library cython_blas uses)
                from threadpoolctl import ThreadpoolController
                for lib in ThreadpoolController().lib_controllers:
                    if lib.internal_api == "openblas" and f"{which}.libs" in lib.filepath:
                        cls._libs[which] = lib
            except Exception:
                pass
        return cls._libs[which]

    def __enter__(self):
        lib = self._find(self.which)
        if lib is not None:
            prev = lib.get_num_threads()
            if prev > self.n:
                lib.set_num_threads(self.n)
                self.prev = prev
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            self._find(self.which).set_num_threads(self.prev)
