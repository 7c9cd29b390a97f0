"""Launch helpers shared by the Numba CUDA kernels.

On a real GPU the public wrappers take and return CuPy arrays: inputs are
wrapped zero-copy with ``cuda.as_cuda_array`` (no stream sync: we launch on
CuPy's current stream, so ordering is already right), outputs are allocated
with ``cupy.empty`` and kernels launch on ``cuda.external_stream`` of CuPy's
current stream.  Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no GPU,
no CuPy) the wrappers take and return NumPy arrays: inputs go through
``cuda.to_device`` and outputs / in-place buffers are copied back with
``copy_to_host`` when the launch is finished.

Kernels index flat (1-D) views of C-contiguous arrays; the wrappers pass
``a.reshape(-1)``.
"""
import math
import os

import numpy as np
from numba import cuda
from numba.cuda import config as _config

SIM = bool(_config.ENABLE_CUDASIM)
# the simulator does not compile, so there is nothing to cache there
CACHE = not SIM
# what kernels/_checks.array gets as ``device=``: GPU kernels need CuPy arrays,
# except in the simulator, where NumPy arrays stand in for device memory
DEVICE = None if SIM else "cuda"

# 1-D block size of the element-wise and reduction kernels, and the most blocks a
# grid-stride kernel gets.  The simulator runs every thread as a Python thread:
# there it uses small blocks and few of them (which also exercises the
# grid-stride loops), and conv.py small GEMM tiles (SMALL).
# FASTCONV_NUMBA_SIM_REAL_TILES=1 keeps the GPU block and tile sizes in the
# simulator too (slow; to check the real configuration without a GPU).
SMALL = SIM and os.environ.get("FASTCONV_NUMBA_SIM_REAL_TILES") != "1"
THREADS = 16 if SMALL else 256
MAX_BLOCKS = 2 if SIM else 65535 * 32
# row kernels (softmax, cross-entropy): ROWS rows per block, LANES threads per row
LANES = 4 if SMALL else 32
ROWS = 4 if SMALL else 8


def jit(fn=None, **kw):
    """``cuda.jit`` with on-disk caching where numba allows it (not in the simulator)."""
    if CACHE:
        kw.setdefault("cache", True)
    if fn is None:
        return lambda f: cuda.jit(f, **kw)
    return cuda.jit(fn, **kw)


def is_cupy(a):
    return a is not None and type(a).__module__.split(".")[0] == "cupy"


def xp_of(*arrays):
    for a in arrays:
        if is_cupy(a):
            import cupy

            return cupy
    return np


def blocks(n, threads=THREADS, cap=MAX_BLOCKS):
    """Blocks for a 1-D launch over ``n`` items (grid-stride loops cover the rest)."""
    return max(1, min(cap, -(-int(n) // threads)))


def grid2(inner, planes):
    """2-D grid: ``inner`` items per plane along x (grid-stride), planes along y (grid-stride)."""
    return (blocks(inner), max(1, min(int(planes), MAX_BLOCKS if SIM else 65535)))


def cdiv(a, b):
    return -(-int(a) // int(b))


_streams = {}


def stream():
    """Numba stream wrapping CuPy's current stream (0 in the simulator / without CuPy)."""
    if SIM:
        return 0
    try:
        import cupy
    except ImportError:  # pragma: no cover - GPU without CuPy is reported as UNAVAILABLE
        return 0
    ptr = cupy.cuda.get_current_stream().ptr
    s = _streams.get(ptr)
    if s is None:
        s = _streams[ptr] = cuda.external_stream(ptr) if ptr else cuda.default_stream()
    return s


class Launch:
    """One kernel call's arrays: device views of the inputs and outputs, copy-back in the simulator.

    ``like`` decides the array module of the outputs (CuPy on a GPU, NumPy in
    the simulator)::

        L = Launch(x)
        y = L.empty((n,), x.dtype)
        kern[grid, block, L.stream](L.dev(x), L.out(y))
        return L.done(y)
    """

    def __init__(self, like):
        self.xp = xp_of(like)
        self._back = []
        self.stream = stream()

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def dev(self, a):
        """Device view of an input array (flattened)."""
        a = a.reshape(-1)
        if is_cupy(a):
            return cuda.as_cuda_array(a, sync=False)
        return cuda.to_device(np.ascontiguousarray(a), stream=self.stream)

    def out(self, a):
        """Device view of an array the kernel writes (an output or an in-place buffer)."""
        if not a.flags.c_contiguous:  # the wrappers allocate outputs / check in-place buffers
            raise ValueError("internal: a kernel output must be C-contiguous")
        flat = a.reshape(-1)  # a view, so writes reach ``a``
        if is_cupy(flat):
            return cuda.as_cuda_array(flat, sync=False)
        d = cuda.to_device(flat, stream=self.stream)
        self._back.append((d, flat))
        return d

    def done(self, result=None):
        """Copy simulator buffers back to the host arrays; return ``result``."""
        for d, host in self._back:
            d.copy_to_host(host, stream=self.stream)
        self._back = []
        return result


# ---------------------------------------------------------------- device helpers


@jit(device=True)
def block_sum(sm, v):
    """Sum ``v`` over a 1-D block of THREADS threads (tree in shared memory ``sm``).

    Deterministic: the same pairing every time.  Every thread gets the sum."""
    t = cuda.threadIdx.x
    sm[t] = v
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sm[t] += sm[t + s]
        cuda.syncthreads()
        s //= 2
    total = sm[0]
    cuda.syncthreads()
    return total


@jit(device=True)
def block_max(sm, v):
    """Max of ``v`` over a 1-D block of THREADS threads; NaN wins."""
    t = cuda.threadIdx.x
    sm[t] = v
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            o = sm[t + s]
            if o > sm[t] or o != o:
                sm[t] = o
        cuda.syncthreads()
        s //= 2
    total = sm[0]
    cuda.syncthreads()
    return total


@jit(device=True)
def lanes_sum(sm, v):
    """Sum ``v`` over the LANES threads (threadIdx.x) of each row (threadIdx.y) of a
    (LANES, ROWS) block; ``sm`` is a (ROWS, LANES) shared array.  Every thread of
    the block must call it (it synchronizes)."""
    lane = cuda.threadIdx.x
    r = cuda.threadIdx.y
    sm[r, lane] = v
    cuda.syncthreads()
    s = LANES // 2
    while s > 0:
        if lane < s:
            sm[r, lane] += sm[r, lane + s]
        cuda.syncthreads()
        s //= 2
    total = sm[r, 0]
    cuda.syncthreads()
    return total


@jit(device=True)
def lanes_max(sm, v):
    """Row-wise max like ``lanes_sum``; NaN wins."""
    lane = cuda.threadIdx.x
    r = cuda.threadIdx.y
    sm[r, lane] = v
    cuda.syncthreads()
    s = LANES // 2
    while s > 0:
        if lane < s:
            o = sm[r, lane + s]
            if o > sm[r, lane] or o != o:
                sm[r, lane] = o
        cuda.syncthreads()
        s //= 2
    total = sm[r, 0]
    cuda.syncthreads()
    return total


@jit(device=True)
def row_max_sumexp(x, base, L, active, sm, ninf, zero):
    """(max, sum(exp(x - max))) of row x[base:base+L], its LANES threads cooperating (NaN wins
    the max); rows with ``active`` False contribute nothing but still join the barriers."""
    lane = cuda.threadIdx.x
    m = ninf
    if active:
        for j in range(lane, L, LANES):
            v = x[base + j]
            if v > m or v != v:
                m = v
    m = lanes_max(sm, m)
    s = zero
    if active:
        for j in range(lane, L, LANES):
            s += math.exp(x[base + j] - m)
    return m, lanes_sum(sm, s)
