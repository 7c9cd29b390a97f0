"""CuPy GPU kernels: CUDA C++ sources (``*.cu``) compiled through ``cupy.RawModule``.

Families (float32 and float64; 64-bit element offsets; launches on CuPy's
current stream; each template instantiation compiled once, on first use):
  conv        implicit GEMM, 128x128 / 64x64 / 32x128 tiles, 8x8 / 4x4 per
              thread, BK=8, double-buffered shared memory, 128-bit fragment
              loads; forward with fused bias (+ optional ReLU), backward-input
              as one gather GEMM per stride phase over only the taps landing
              on it, backward-weight as a split-K GEMM summed in a fixed order
              (deterministic); depthwise (groups == C): tiled direct kernels
              (shared-memory input tile, several outputs per thread) for 3x3 /
              5x5, direct ones otherwise.  The TF32 WMMA forward is compiled
              and tested but off (``conv.USE_TF32_KERNEL``): it measured slower
              than FP32, so ``allow_tf32`` does not select it
  pool        max (argmax, PyTorch tie/NaN rules), avg, adaptive avg; gather
              backward (deterministic) over per-row/column window ranges
  activation  vectorized element-wise ops, PReLU, softmax / log-softmax rows
  optim       SGD / Adagrad / Adam(W) in one launch over a flat buffer
  norm        batch norm (two-pass, per-channel blocks), layer norm, dropout
  loss        fused softmax cross-entropy
Other families fall back to the reference (which runs on CuPy arrays).

Importable without a GPU; then ``UNAVAILABLE`` says why (dispatch reports it)
and no kernels are collected.  A family module that fails to import is listed
in ``FAMILY_ERRORS`` (its ops fall back to the next backend).
Tests: tests/test_cupy_compile.py (nvcc + NVRTC), tests/test_cupy_kernels.py
(on a GPU, and on the CPU through the emulator in tests/cupy_emu/).
"""
import warnings

from .._collect import collect as _collect

UNAVAILABLE = None
FAMILY_ERRORS = {}
__all__ = []

try:
    import cupy as _cupy
except Exception as _exc:  # ImportError, broken CUDA libraries, ...
    UNAVAILABLE = f"CuPy not importable ({type(_exc).__name__}: {_exc})"
else:
    try:
        _n = _cupy.cuda.runtime.getDeviceCount()
    except Exception as _exc:
        UNAVAILABLE = f"no CUDA GPU ({type(_exc).__name__}: {_exc})"
    else:
        if _n < 1:
            UNAVAILABLE = "no CUDA GPU (device count 0)"

if UNAVAILABLE is None:
    __all__, FAMILY_ERRORS = _collect(__name__, globals())
    if FAMILY_ERRORS:
        warnings.warn(f"fastconv.kernels.cupy: families failed to import: {FAMILY_ERRORS}", RuntimeWarning)
