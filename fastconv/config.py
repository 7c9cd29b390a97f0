"""Global switches (module attributes; set them directly).

autotune      time every candidate algorithm once per shape and cache the winner
allow_tf32    let GPU convolutions use TF32 tensor cores (lower precision, faster)
deterministic GPU backward kernels avoid float atomics (reproducible results)
workspace_bytes  upper bound on scratch memory one kernel call may allocate
"""
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
