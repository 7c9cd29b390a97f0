"""Loading CUDA C++ sources (``*.cu`` beside this file) through ``cupy.RawModule``.

One RawModule per (source file, template instantiation, options): a kernel is
compiled the first time it is asked for and cached in memory here (and on
disk by CuPy).  Local ``#include "x.cuh"`` lines are inlined by hand before
compiling, so CuPy's disk cache (keyed on the source text) sees header edits.

Launches go to CuPy's current stream.  Kernel arguments must be CuPy arrays
or NumPy scalars whose C type matches the kernel signature exactly (use
``i32``/``i64``/``scalar`` below, never bare Python numbers).
"""
import os
import re
import threading

import cupy
import numpy as np

_DIR = os.path.dirname(os.path.abspath(__file__))
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)
_lock = threading.Lock()
_sources = {}
_modules = {}

THREADS = 256


def _cuda_include_dirs():
    """Toolkit include directories (WMMA needs crt/mma.h, absent from pip CUDA headers)."""
    dirs = []
    for root in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root:
            inc = os.path.join(root, "include")
            if os.path.isfile(os.path.join(inc, "mma.h")) and inc not in dirs:
                dirs.append(inc)
    return dirs


def source(filename):
    """The text of ``filename`` with local ``#include "..."`` lines inlined (once each)."""
    if filename not in _sources:
        seen = set()

        def expand(name):
            if name in seen:
                return ""
            seen.add(name)
            with open(os.path.join(_DIR, name)) as f:
                text = f.read()
            return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

        _sources[filename] = expand(filename)
    return _sources[filename]


def function(filename, name_expression, wmma=False):
    """The compiled kernel ``name_expression`` (e.g. ``"relu_fwd<float>"``) from ``filename``."""
    key = (filename, name_expression, wmma)
    fn = _modules.get(key)
    if fn is None:
        with _lock:
            fn = _modules.get(key)
            if fn is None:
                options = ("--std=c++17",)
                if wmma:
                    options += tuple("-I" + d for d in _cuda_include_dirs())
                mod = cupy.RawModule(
                    code=source(filename), options=options, name_expressions=[name_expression], jitify=False
                )
                fn = mod.get_function(name_expression)
                _modules[key] = fn
    return fn


def ctype(dtype):
    """C type name used in template instantiations."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return "float"
    if dtype == np.float64:
        return "double"
    raise TypeError(f"no CUDA kernel instantiation for dtype {dtype}")


def i32(v):
    v = int(v)
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"value {v} does not fit a 32-bit kernel argument")
    return np.int32(v)


def i64(v):
    return np.int64(int(v))


def scalar(v, dtype):
    return np.dtype(dtype).type(v)


def blocks_for(n, threads=THREADS, per_thread=1, cap=None):
    """Number of blocks for a grid-stride loop over ``n`` items."""
    if cap is None:
        cap = 32 * sm_count()
    b = -(-int(n) // (threads * per_thread))
    return max(1, min(b, cap))


_sm = None
_cc = None


def compute_capability():
    """Major*10 + minor of the current device (e.g. 90 for H100/H200)."""
    global _cc
    if _cc is None:
        _cc = int(cupy.cuda.Device().compute_capability)
    return _cc


def sm_count():
    global _sm
    if _sm is None:
        dev = cupy.cuda.Device()
        _sm = int(dev.attributes["MultiProcessorCount"])
    return _sm


def launch(fn, grid, block, args, shared_mem=0):
    """Launch on CuPy's current stream."""
    grid = tuple(int(g) for g in (grid if isinstance(grid, tuple) else (grid,)))
    block = tuple(int(b) for b in (block if isinstance(block, tuple) else (block,)))
    fn(grid, block, args, shared_mem=shared_mem)


def aligned16(*arrays):
    """True when every (non-None) array's data pointer is 16-byte aligned."""
    return all(a is None or a.data.ptr % 16 == 0 for a in arrays)


def ptr_or_null(a):
    """An array argument, or a null pointer (an 8-byte zero) for None."""
    return np.uint64(0) if a is None else a
