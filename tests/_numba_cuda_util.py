"""Shared helpers for the Numba CUDA backend tests.

The same tests run under the CUDA simulator (no GPU: NumPy arrays in and
out, set up by conftest.py) and on a real GPU (CuPy arrays in and out):
``dev`` moves a NumPy test input to where the kernels want it, ``host``
brings a result back.
"""
import numpy as np
import pytest

from fastconv import dispatch

NB_OK, NB_WHY = dispatch.available("numba_cuda")
requires_numba_cuda = pytest.mark.skipif(not NB_OK, reason=NB_WHY)

if NB_OK:
    from fastconv.kernels import numba_cuda as NB
    from fastconv.kernels.numba_cuda._launch import SIM
else:  # pragma: no cover
    NB, SIM = None, True


def dev(a):
    """A NumPy test input as the kernels take it (CuPy on a GPU, NumPy in the simulator)."""
    if a is None or SIM:
        return a
    import cupy

    return cupy.asarray(a)


def host(a):
    """A kernel result as NumPy; also checks it came back as the array type it was given."""
    if a is None:
        return None
    if SIM:
        assert isinstance(a, np.ndarray), type(a)
        return a
    import cupy

    assert isinstance(a, cupy.ndarray), type(a)
    return cupy.asnumpy(a)


# Each float64 test case on a real GPU JIT-compiles its own kernel specializations
# (about 0.3-1.5 s each); the simulator compiles nothing.  So the simulator runs
# every case in both dtypes, a GPU float32 everywhere and float64 only where a
# test asks for it (a couple of cases, enough to check the float64 kernels).
BOTH = [np.float32, np.float64]


def dtypes(gpu_f64=False):
    """Dtypes to parametrize a test with: both in the simulator, float32 on a GPU
    (and float64 too with ``gpu_f64``)."""
    return list(BOTH) if SIM or gpu_f64 else [np.float32]


def case_dtypes(cases, gpu_f64=()):
    """pytest params (case, dtype): every case in both dtypes in the simulator; on a
    GPU float32 for every case and float64 only for the cases in ``gpu_f64``."""
    return [pytest.param(c, d, id=f"{c}-{np.dtype(d).name}")
            for c in cases for d in (BOTH if SIM or c in gpu_f64 else [np.float32])]


def rel(out, ref):
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    denom = np.linalg.norm(ref.ravel())
    diff = np.linalg.norm((out - ref).ravel())
    return diff / denom if denom > 0 else diff


def tol(dtype):
    return 2e-6 if np.dtype(dtype) == np.float32 else 1e-12


def close(out, ref, dtype, factor=1.0):
    out = host(out)
    assert out.dtype == np.dtype(dtype), (out.dtype, dtype)
    err = rel(out, ref)
    assert err < tol(dtype) * factor, f"relative error {err:.3g} (dtype {np.dtype(dtype).name})"


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator():
    """The simulator polls its Python threads while holding the GIL; a short
    switch interval makes simulated launches several times faster."""
    import sys

    old = sys.getswitchinterval()
    if SIM:
        sys.setswitchinterval(2e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(autouse=True)
def _progress(request):
    """Flush pytest's progress output after every test: run in a subprocess with a
    pipe (bench/gpu_check.py), a timeout otherwise loses everything still buffered."""
    yield
    try:
        request.config.get_terminal_writer().flush()
    except Exception:  # pragma: no cover - older pytest / no terminal reporter
        pass
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
