"""Run the CuPy backend's CUDA kernels on the CPU (no GPU needed).

The .cu sources are compiled as C++ with ``shim.h`` (an OS thread per CUDA
thread, barriers for __syncthreads and warp shuffles) into one shared library
per source file, with an entry point per template instantiation the wrappers
ask for.  ``install(monkeypatch)`` then makes the Python wrappers run on
NumPy arrays: ``_module.function`` returns an emulated kernel, the wrappers'
``cupy`` is a NumPy namespace, and NumPy arrays pass the "GPU array" check.
Each launch checks the argument count and C types against the kernel
signature (the mistakes CuPy would not catch).
"""
import ctypes
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CUPY_DIR = os.path.join(ROOT, "kernels", "cupy")
FAMILIES = ("conv", "pool", "activation", "optim", "norm", "loss")
CXX = shutil.which("g++")

_libs = {}


def available():
    """(True, '') or (False, why the emulation cannot run here)."""
    if CXX is None:
        return False, "g++ not found"
    try:
        import cupy  # noqa: F401  (the wrappers import it; no device needed)
    except Exception as exc:
        return False, f"CuPy not importable ({type(exc).__name__})"
    return True, ""


def _symbol(expr):
    return "emu_" + re.sub(r"[^0-9A-Za-z]", "_", expr)


def kernel_names():
    names = []
    for fam in FAMILIES:
        mod = importlib.import_module(f"fastconv.kernels.cupy.{fam}")
        names += [(f, e) for f, e, wmma in mod.kernel_names() if not wmma]
    return names


def _build(filename, exprs):
    with open(os.path.join(HERE, "shim.h")) as f:
        shim = f.read()
    from fastconv.kernels.cupy import _module as M

    src = M.source(filename)
    extra = os.environ.get("FASTCONV_EMU_CXXFLAGS", "").split()  # e.g. -fsanitize=address
    key = hashlib.sha1((shim + src + "|".join(exprs) + " ".join(extra)).encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"fastconv_cupy_emu_{os.getuid()}")
    os.makedirs(cache, exist_ok=True)
    so = os.path.join(cache, f"{filename.replace('.', '_')}_{key}.so")
    if not os.path.exists(so):
        cpp = os.path.join(cache, f"{filename.replace('.', '_')}_{key}.cpp")
        with open(cpp, "w") as f:
            f.write(f'#include "{os.path.join(HERE, "shim.h")}"\n')
            f.write(f'#include "{os.path.join(CUPY_DIR, filename)}"\n')
            for e in exprs:
                f.write(f"EMU_ENTRY({_symbol(e)}, {e})\n")
        tmp = so + f".{os.getpid()}.tmp"
        cmd = [CXX, "-std=c++20", "-O1", "-U_FORTIFY_SOURCE", "-shared", "-fPIC", "-pthread", "-w", *extra, "-o", tmp, cpp]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"emulation build of {filename} failed:\n{res.stderr[-3000:]}")
        os.replace(tmp, so)
    return ctypes.CDLL(so)


def library(filename):
    if filename not in _libs:
        exprs = [e for f, e in kernel_names() if f == filename]
        _libs[filename] = _build(filename, exprs)
    return _libs[filename]


def build_all():
    """Build (or load from the cache) every source's library, compiling in parallel."""
    import concurrent.futures as cf

    files = sorted({f for f, _ in kernel_names()} - set(_libs))
    with cf.ThreadPoolExecutor(max_workers=min(4, max(1, len(files)))) as ex:
        for f, lib in zip(files, ex.map(lambda f: _build(f, [e for g, e in kernel_names() if g == f]), files)):
            _libs[f] = lib


_CODES = {np.dtype(np.float32): "F", np.dtype(np.float64): "D", np.dtype(np.int64): "L", np.dtype(np.int32): "I"}
_SCALARS = {np.float32: ("f", ctypes.c_float), np.float64: ("d", ctypes.c_double), np.int32: ("i", ctypes.c_int32),
            np.int64: ("l", ctypes.c_int64), np.uint64: ("u", ctypes.c_uint64)}


class EmuKernel:
    def __init__(self, filename, expr):
        self.name = expr
        self.fn = getattr(library(filename), _symbol(expr))
        self.fn.restype = ctypes.c_int

    def __call__(self, grid, block, args, shared_mem=0):
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        holders, codes = [], []
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                if a.dtype not in _CODES:
                    raise TypeError(f"{self.name}: argument {i} is an array of dtype {a.dtype}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: argument {i} is not C-contiguous")
                holders.append(ctypes.c_void_p(a.ctypes.data))
                codes.append(_CODES[a.dtype])
            elif type(a) in _SCALARS:
                code, ct = _SCALARS[type(a)]
                holders.append(ct(a.item()))
                codes.append(code)
            else:
                raise TypeError(f"{self.name}: argument {i} has Python type {type(a).__name__} "
                                f"(kernel arguments must be arrays or NumPy scalars)")
        argv = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.addressof(h) for h in holders])
        err = ctypes.create_string_buffer(512)
        rc = self.fn((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), argv,
                     "".join(codes).encode(), len(holders), err, 512)
        if rc:
            raise RuntimeError(f"{self.name}: {err.value.decode()}")


def fake_cupy():
    ns = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    ns.__name__ = "numpy"
    ns.asnumpy = np.asarray
    return ns


def install(monkeypatch):
    """Make fastconv.kernels.cupy run on NumPy arrays through the emulator; return the kernel namespace."""
    from fastconv.kernels import _checks
    from fastconv.kernels.cupy import _module as M

    build_all()
    fake = fake_cupy()
    monkeypatch.setattr(M, "function", lambda filename, expr, wmma=False: EmuKernel(filename, expr))
    monkeypatch.setattr(M, "aligned16", lambda *arrs: all(a is None or a.ctypes.data % 16 == 0 for a in arrs))
    monkeypatch.setattr(M, "sm_count", lambda: 132)
    monkeypatch.setattr(M, "compute_capability", lambda: 90)
    monkeypatch.setattr(_checks, "_xp", lambda a: fake)  # NumPy arrays count as "GPU" arrays here
    K = types.SimpleNamespace()
    for fam in FAMILIES:
        mod = importlib.import_module(f"fastconv.kernels.cupy.{fam}")
        if hasattr(mod, "cupy"):
            monkeypatch.setattr(mod, "cupy", fake)
        for name in mod.__all__:
            setattr(K, name, getattr(mod, name))
    return K, fake
