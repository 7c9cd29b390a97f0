"""Compile every Numba CUDA kernel to PTX for sm_90 without a GPU (tests/_numba_cuda_ptx.py).

The simulator runs kernels as Python, so it never type-checks or lowers
them; this compiles them for real (float32) in a subprocess without the
simulator, and checks they use no local memory and, in float32, no float64
arithmetic.  Skipped where NVVM (the CUDA compiler library) is missing.
"""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_cuda_ptx.py")


def test_numba_cuda_kernels_compile_for_sm90():
    pytest.importorskip("numba.cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    res = subprocess.run([sys.executable, SCRIPT, "float32"], capture_output=True, text=True, env=env, timeout=600)
    if res.returncode == 3:
        pytest.skip(res.stdout.strip()[-300:])
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert "FAIL" not in res.stdout and res.stdout.count("ok ") >= 39, res.stdout
