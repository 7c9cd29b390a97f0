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
