"""Global switches (module attributes; set them directly).

autotune      time every candidate algorithm once per shape and cache the winner
allow_tf32    let GPU convolutions use TF32 tensor cores (lower precision, faster)
deterministic GPU backward kernels avoid float atomics (reproducible results)
workspace_bytes  upper bound on scratch memory one kernel call may allocate

keep_heap()   process-wide: glibc malloc keeps freed memory for reuse (the CLI calls it)
"""
import ctypes
import ctypes.util
import os

autotune = False
allow_tf32 = False
deterministic = True
workspace_bytes = 64 * 1024 * 1024

_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)


def set_num_threads(n):
    """Threads used by the CPU (Cython/OpenMP) kernels."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n


def get_num_threads():
    return _num_threads


def keep_heap(mmap_threshold=32 << 20, trim_threshold=1 << 30):
    """Ask glibc's malloc to keep freed memory for reuse: blocks below ``mmap_threshold`` bytes come
    from the heap instead of fresh mmaps, and the heap top is returned to the OS only past
    ``trim_threshold`` free bytes.  A training step allocates and frees the same activation-sized
    arrays every step; by default glibc unmaps or trims them and every step page-faults them back
    in (CIFAR ResNet-20, 1 thread: ~18.5k faults and 50-70 ms of system time per ~200 ms step,
    4 faults after this call).  Process-wide, so the library never calls it on import; ``fastconv``
    commands (train, demo, bench) do, and benchmarks then give PyTorch the same benefit.  Returns
    True where it took effect (glibc), False elsewhere."""
    for name, v in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"keep_heap: {name} must be a non-negative int, got {v!r}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, Windows)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, min(mmap_threshold, 2**31 - 1))) and bool(
        mallopt(M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)))
