"""Compile every Numba CUDA kernel to PTX for sm_90 without a GPU (tests/_numba_cuda_ptx.py).

The simulator runs kernels as Python, so it never type-checks or lowers
them; this compiles them for real (float32) in a subprocess without the
simulator, and checks they use no local memory and, in float32, no float64
arithmetic (and, where ptxas is installed, that the conv GEMMs do not spill
registers).  Skipped where NVVM (the CUDA compiler library) is missing.

On a real GPU the other test files compile and run every float32 kernel for
real, and compile time is the GPU run's budget: there only the conv GEMM
kernels (the register-blocked ones, where local memory / spills would matter)
are compiled again here.
"""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_cuda_ptx.py")
# conftest.py turns the simulator on where there is no GPU
ON_GPU = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") != "1"
GEMMS = "conv._fwd_gemm,conv._bwd_input_gemm,conv._bwd_weight_gemm"


def test_numba_cuda_kernels_compile_for_sm90():
    pytest.importorskip("numba.cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    args = ["--only", GEMMS] if ON_GPU else []
    res = subprocess.run([sys.executable, SCRIPT, *args, "float32"], capture_output=True, text=True, env=env,
                         timeout=600)
    if res.returncode == 3:
        pytest.skip(res.stdout.strip()[-300:])
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert "FAIL" not in res.stdout and res.stdout.count("ok ") >= (3 if ON_GPU else 39), res.stdout
