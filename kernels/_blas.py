"""One context for both OpenBLAS copies in a pip-installed process: SciPy's (``which="scipy"``,
the library SciPy's cython_blas, so every compiled kernel here, calls) and NumPy's
(``which="numpy"``, a separate library with its own thread pool, behind ``np.matmul``).

``blas_threads(which, n)`` runs the block with that library on at most ``n`` threads and restores
it after; ``n`` None leaves it alone; it never raises the library's own setting.  Uses:
- compiled kernels call BLAS from inside their OpenMP threads with SciPy's at one thread, so
  OpenMP and OpenBLAS threads never compete for the cores;
- NumPy-level kernels that must use matmul run NumPy's at one thread for the same reason (its
  pool fights OpenMP threads still spinning after a kernel: the attention backward's 2x4x128x32
  case took 4.2 ms with it);
- small GEMMs (a LeNet layer: 64x120 @ 120x84) gain nothing from a second thread and pay for
  waking it, or on a loaded machine spin for milliseconds waiting for it (8 ms instead of 0.02).
Without threadpoolctl, or when the library is not found, nothing changes (results stay right).
"""


class blas_threads:
    _libs = {}

    def __init__(self, which, n=1):
        self.which, self.n, self.prev = which, n, None

    @classmethod
    def _find(cls, which):
        """The threadpoolctl controller of ``which``'s BLAS (found once), or None."""
        if which not in cls._libs:
            cls._libs[which] = None
            try:
                import numpy  # noqa: F401
                if which == "scipy":
                    import scipy.linalg  # noqa: F401  (loads the library cython_blas uses)
                from threadpoolctl import ThreadpoolController

                for lib in ThreadpoolController().lib_controllers:
                    if lib.user_api == "blas" and f"{which}.libs" in lib.filepath:
                        cls._libs[which] = lib
            except Exception:  # threadpoolctl missing or an unknown BLAS: leave threading to it
                pass
        return cls._libs[which]

    def __enter__(self):
        lib = self._find(self.which) if self.n is not None else None
        if lib is not None:
            prev = lib.get_num_threads()
            if prev > self.n:
                lib.set_num_threads(self.n)
                self.prev = prev
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            self._find(self.which).set_num_threads(self.prev)
