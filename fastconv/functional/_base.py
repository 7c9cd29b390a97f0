"""Helpers shared by the functional ops."""
from ..dispatch import kernel
from ..tensor import Tensor

SMALL_GEMM = 1 << 22  # multiply-adds below which a GEMM runs on one BLAS thread (~0.1 ms on one core)


class KernelFunction:
    """Mixin: ``self.k(op)`` resolves a kernel on this call's device and backend."""

    backend = None

    def k(self, op):
        return kernel(op, self.like, self.backend)


def prepare(ctx, like, backend):
    ctx.like = like
    ctx.backend = backend


def data(x):
    return x.data if isinstance(x, Tensor) else x


def tensor_arg(name, x, op):
    if not isinstance(x, Tensor):
        if hasattr(x, "dtype") and hasattr(x, "shape"):
            return Tensor(x)
        raise TypeError(f"{op}: argument '{name}' must be a fastconv.Tensor or an array, got {type(x).__name__}")
    return x


class _NumpyBlas:
    """NumPy's OpenBLAS as a threadpoolctl controller (None when unavailable), found once."""

    lib = False

    @classmethod
    def get(cls):
        if cls.lib is False:
            cls.lib = None
            try:
                from threadpoolctl import ThreadpoolController

                for lib in ThreadpoolController().lib_controllers:
                    if lib.user_api == "blas" and "numpy" in lib.filepath:
                        cls.lib = lib
            except Exception:  # threadpoolctl missing or an unknown BLAS: leave threading to the BLAS
                pass
        return cls.lib


class blas_threads:
    """Run NumPy's BLAS calls in the block on at most ``n`` threads (restored after); ``n`` None:
    untouched.  Never raises the BLAS's own setting (OPENBLAS_NUM_THREADS, threadpoolctl).

    Small GEMMs (a LeNet layer: 64x120 @ 120x84) gain nothing from a second OpenBLAS thread
    and pay for waking it -- or, on a loaded machine, spin for milliseconds waiting for it
    (measured: 8 ms instead of 0.02 ms for that product) -- so callers pass 1 below
    ``SMALL_GEMM`` and fastconv's thread count (as a cap) otherwise.
    """

    def __init__(self, n):
        self.n, self.prev = n, None

    def __enter__(self):
        lib = _NumpyBlas.get() if self.n is not None else None
        if lib is not None:
            prev = lib.get_num_threads()
            if prev > self.n:
                lib.set_num_threads(self.n)
                self.prev = prev
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            _NumpyBlas.lib.set_num_threads(self.prev)
