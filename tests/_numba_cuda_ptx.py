"""Compile every Numba CUDA kernel of fastconv to PTX for sm_90, without a GPU.

Run as a script in a process *without* the CUDA simulator (the simulator
never compiles, so typing and lowering errors would only show on a GPU).
Prints one line per kernel and dtype; exit status 0 when all compile, 1 on
failures, 3 when NVVM (the CUDA compiler library) is not available.

Also checks the properties the kernels are written for:
- no local-memory stack frame (register blocks and small local arrays
  promoted to registers), and
- float32 kernels do no float64 arithmetic (constants passed in the array's dtype);
- where ``ptxas`` is on PATH, the kernels in PTXAS_CHECKED (the register-blocked
  conv GEMMs) assemble for sm_90 without register spills; their register count is
  printed (occupancy: 65536 registers per SM).

Usage: ``_numba_cuda_ptx.py [--only fam.kernel,...] [dtype ...]``.
"""
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

if not hasattr(np, "row_stack"):  # numba-cuda 0.30 with NumPy >= 2.5
    np.row_stack = np.vstack

from numba import cuda, types  # noqa: E402

try:  # device functions ask the current device for its compute capability
    import numba.cuda.dispatcher as _nd

    class _Device:
        compute_capability = (9, 0)

    _nd.get_current_device = lambda: _Device()
except Exception:  # pragma: no cover
    pass


def arr(d):
    return types.Array(d, 1, "C")


i64 = types.int64
I32 = types.Array(types.int32, 1, "C")
I64 = types.Array(types.int64, 1, "C")


def U(n, d=types.int64):
    return types.UniTuple(d, n)


SPECS = {
    "conv": {
        "_fwd_gemm": lambda d: (arr(d), arr(d), arr(d), arr(d), U(17), I32, i64),
        "_bwd_input_gemm": lambda d: (arr(d), arr(d), arr(d), U(17), I32, i64, U(5)),
        "_bwd_weight_gemm": lambda d: (arr(d), arr(d), arr(d), U(17), i64),
        "_sum_splits": lambda d: (arr(d), arr(d), i64),
    },
    "_conv_direct": {
        "_dw_fwd": lambda d: (arr(d), arr(d), arr(d), arr(d), U(17), d),
        "_dw_bwd_input": lambda d: (arr(d), arr(d), arr(d), U(17), d),
        "_dw_bwd_weight": lambda d: (arr(d), arr(d), arr(d), U(17), d),
        "_bias_grad": lambda d: (arr(d), arr(d), i64, i64, i64, d),
    },
    "pool": {
        "_max_fwd": lambda d: (arr(d), arr(d), I64, U(14), d),
        "_argmax_hull": lambda d: (I64, I32, I32) + (i64,) * 6,
        "_invert_hull": lambda d: (I32, I32, I32, I32) + (i64,) * 4,
        "_max_bwd": lambda d: (arr(d), I64, arr(d), I32, I32) + (i64,) * 6 + (d,),
        "_avg_fwd": lambda d: (arr(d), arr(d), U(13), d),
        "_avg_bwd": lambda d: (arr(d), arr(d), U(13), d),
        "_adaptive_fwd": lambda d: (arr(d), arr(d)) + (i64,) * 6 + (d,),
        "_adaptive_bwd": lambda d: (arr(d), arr(d)) + (i64,) * 6 + (d,),
    },
    "activation": {
        "_relu_fwd": lambda d: (arr(d), arr(d), d),
        "_relu_bwd": lambda d: (arr(d), arr(d), arr(d), d),
        "_leaky_fwd": lambda d: (arr(d), arr(d), d),
        "_leaky_bwd": lambda d: (arr(d), arr(d), arr(d), d),
        "_sigmoid_fwd": lambda d: (arr(d), arr(d), d),
        "_sigmoid_bwd": lambda d: (arr(d), arr(d), arr(d), d),
        "_tanh_fwd": lambda d: (arr(d), arr(d)),
        "_tanh_bwd": lambda d: (arr(d), arr(d), arr(d), d),
        "_gelu_fwd": lambda d: (arr(d), arr(d), i64, U(7, d)),
        "_gelu_bwd": lambda d: (arr(d), arr(d), arr(d), i64, U(7, d)),
        "_softmax_rows": lambda d: (arr(d), arr(d), i64, i64, i64, d, d),
        "_softmax_rows_bwd": lambda d: (arr(d), arr(d), arr(d), i64, i64, i64, d),
    },
    "optim": {
        "_sgd": lambda d: (arr(d), arr(d), arr(d), d, d, d, d, i64, i64, i64),
        "_adagrad": lambda d: (arr(d), arr(d), arr(d), d, d, d),
        "_adam": lambda d: (arr(d), arr(d), arr(d), arr(d), U(9, d), i64, i64),
    },
    "norm": {
        "_stats_partial": lambda d: (arr(d), arr(d), i64, i64, i64, i64, d),
        "_stats_final": lambda d: (arr(d),) * 5 + (i64, i64, U(6, d)),
        "_bn_apply": lambda d: (arr(d),) * 6 + (i64,) * 4,
        "_grad_partial": lambda d: (arr(d),) * 5 + (i64,) * 4 + (d,),
        "_grad_final": lambda d: (arr(d),) * 3 + (i64, d),
        "_bn_dx": lambda d: (arr(d),) * 8 + (i64,) * 4 + (d,),
    },
    "loss": {
        "_ce_fwd": lambda d: (arr(d), I64, arr(d), arr(d), arr(d), arr(d), i64, i64, i64,
                              types.Tuple((d, d, d, d, i64))),
        "_ce_bwd": lambda d: (arr(d), I64, arr(d), arr(d), arr(d), i64, i64, d, types.Tuple((d, d, d, i64))),
    },
}


PTXAS_CHECKED = {"conv._fwd_gemm", "conv._bwd_input_gemm", "conv._bwd_weight_gemm"}


def ptxas_info(ptx):
    """(registers, spill bytes, text) from ``ptxas -v`` for sm_90, or None without ptxas."""
    exe = shutil.which("ptxas")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        res = subprocess.run([exe, "-arch=sm_90", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, timeout=300)
    text = res.stdout + res.stderr
    if res.returncode != 0:
        return -1, -1, text
    regs = [int(m) for m in re.findall(r"Used (\d+) registers", text)]
    spills = [int(a) + int(b) for a, b in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)]
    return max(regs or [0]), sum(spills), text


def main(dtypes, only=None):
    try:
        cuda.compile_ptx(lambda a: None, (arr(types.float32),), cc=(9, 0))
    except Exception as exc:  # no libNVVM here
        print(f"NVVM unavailable: {type(exc).__name__}: {exc}")
        return 3
    failures = []
    for fam, kernels in SPECS.items():
        mod = importlib.import_module(f"fastconv.kernels.numba_cuda.{fam}")
        for name, make in kernels.items():
            if only is not None and f"{fam}.{name}" not in only:
                continue
            for d in dtypes:
                try:
                    # the kernel's own options (launch bounds of the conv GEMMs)
                    kw = dict(getattr(mod, "GEMM_JIT", {})) if f"{fam}.{name}" in PTXAS_CHECKED else {}
                    ptx, _ = cuda.compile_ptx(getattr(mod, name).py_func, make(d), cc=(9, 0), **kw)
                except Exception as exc:
                    failures.append(f"{fam}.{name}[{d}]: {type(exc).__name__}: {str(exc)[:1500]}")
                    continue
                problems = []
                if re.search(r"\b(ld|st)\.local", ptx):
                    problems.append("uses local memory")
                if d == types.float32 and re.search(r"\.f64\b", ptx):
                    problems.append("float64 arithmetic in a float32 kernel")
                extra = ""
                if f"{fam}.{name}" in PTXAS_CHECKED:
                    info = ptxas_info(ptx)
                    if info is not None:
                        regs, spill, text = info
                        if regs < 0:
                            problems.append("ptxas failed: " + text[-500:])
                        elif spill:
                            problems.append(f"ptxas: {spill} bytes of register spills")
                        extra = f"  ({regs} registers, {spill} bytes spilled)"
                if problems:
                    failures.append(f"{fam}.{name}[{d}]: " + ", ".join(problems))
                print(f"{'FAIL' if problems else 'ok'}  {fam}.{name}[{d}]{extra}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    only = None
    if args[:1] == ["--only"]:
        only, args = set(args[1].split(",")), args[2:]
    sys.exit(main([getattr(types, n) for n in (args or ["float32"])], only))
