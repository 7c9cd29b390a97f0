"""Shared fixture and helpers of tests/test_cupy_kernels*.py (see their docstrings).

``env`` runs a test on the GPU (``gpu`` marker) or through the CPU emulator.
"""
import numpy as np
import pytest

from fastconv.dispatch import gpu_status
from fastconv.kernels import reference as R  # noqa: F401 (re-exported to the tests)
from fastconv.testing import rel_error

import emu  # noqa: E402 (same directory)

HAS_GPU, GPU_REASON = gpu_status()
EMU_OK, EMU_REASON = emu.available()
_ENV = {}


_GPU_PARAM = pytest.param("gpu", marks=[pytest.mark.gpu,
                                         pytest.mark.skipif(not HAS_GPU, reason=f"needs a CUDA GPU with CuPy ({GPU_REASON})")])


def _enter(param, monkeypatch):
    if param == "gpu":
        from fastconv import dispatch
        import cupy

        _ENV.update(K=dispatch.load("cupy"), cp=cupy, mode="gpu")
    else:
        K, fake = emu.install(monkeypatch)
        _ENV.update(K=K, cp=fake, mode="emu")


@pytest.fixture(params=[
    _GPU_PARAM,
    pytest.param("emu", marks=pytest.mark.skipif(not EMU_OK, reason=f"CPU emulation unavailable: {EMU_REASON}")),
])
def env(request, monkeypatch):
    _enter(request.param, monkeypatch)
    yield request.param
    _ENV.clear()


@pytest.fixture(params=[_GPU_PARAM])
def gpu_env(request, monkeypatch):
    """GPU only: shapes too large to emulate, and the WMMA kernel (no CPU emulation of
    tensor cores).  The emulated suite covers the same code paths on small shapes."""
    _enter(request.param, monkeypatch)
    yield request.param
    _ENV.clear()


def _gpu(f):
    return pytest.mark.usefixtures("env")(f)


def _K():
    return _ENV["K"]


def _cp():
    return _ENV["cp"]


def _emu_skip(dtype=None):
    """No-op kept for the call sites: large shapes are parametrized as GPU-only tests
    (the ``gpu_env`` fixture) instead of being skipped in emulation."""


TOL = {np.float32: 3e-5, np.float64: 1e-11}
DTYPES = [np.float32, np.float64]


def _np64(a):
    return None if a is None else np.asarray(_cp().asnumpy(a), dtype=np.float64)


def _close(out, ref, dtype, tol=None, what=""):
    tol = TOL[dtype] if tol is None else tol
    out_np = _cp().asnumpy(out)
    ref = np.asarray(ref, dtype=np.float64)
    assert out_np.shape == ref.shape, f"{what}: shape {out_np.shape} vs {ref.shape}"
    assert out_np.dtype == dtype, f"{what}: dtype {out_np.dtype}"
    nan_out, nan_ref = np.isnan(out_np), np.isnan(ref)
    assert np.array_equal(nan_out, nan_ref), f"{what}: NaN positions differ ({nan_out.sum()} vs {nan_ref.sum()})"
    err = rel_error(np.where(nan_out, 0, out_np), np.where(nan_ref, 0, ref))
    assert err < tol, f"{what}: rel error {err:.3g} >= {tol}"


def _rand(rng, shape, dtype):
    cp = _cp()
    return cp.asarray(rng.standard_normal(shape).astype(dtype))
