"""This machine's limits, measured at the start of a run: SGEMM GFLOP/s and copy GB/s.

CPU: NumPy float32 matmul (OpenBLAS, all its threads) and ``np.copyto`` of
a 128 MiB array (bytes read + written).  GPU: CuPy matmul (cuBLAS, FP32,
no TF32) and a device-to-device copy of 1 GiB, timed with CUDA events.
Best of a few runs (the limit, not the typical case).
"""
import time

import numpy as np


def _best(fn, repeats, sync=lambda: None):
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_cpu(quick=False):
    n = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    t = _best(lambda: np.matmul(a, b, out=c), 3 if quick else 5)
    gflops = 2.0 * n ** 3 / t / 1e9
    m = (32 if quick else 128) * 1024 * 1024 // 4
    src = np.ones(m, np.float32)
    dst = np.empty_like(src)
    tc = _best(lambda: np.copyto(dst, src), 3 if quick else 5)
    gbps = 2.0 * src.nbytes / tc / 1e9
    return {"device": "cpu", "sgemm_gflops": round(gflops, 1), "copy_gbps": round(gbps, 2),
            "sgemm_n": n, "copy_bytes": int(src.nbytes),
            "method": "numpy float32 matmul n^3 (best of runs); np.copyto, read+write bytes"}


def measure_gpu(quick=False):
    import cupy

    n = 4096 if quick else 8192
    a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    c = cupy.empty((n, n), cupy.float32)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()

    def ev_best(fn, repeats):
        fn()
        best = float("inf")
        for _ in range(repeats):
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, cupy.cuda.get_elapsed_time(start, end) / 1e3)
        return best

    t = ev_best(lambda: cupy.matmul(a, b, out=c), 5)
    m = (256 if quick else 1024) * 1024 * 1024 // 4
    src = cupy.ones(m, cupy.float32)
    dst = cupy.empty_like(src)
    tc = ev_best(lambda: dst.__setitem__(slice(None), src), 5)
    out = {"device": "cuda", "sgemm_gflops": round(2.0 * n ** 3 / t / 1e9, 1),
           "copy_gbps": round(2.0 * src.nbytes / tc / 1e9, 1), "sgemm_n": n, "copy_bytes": int(src.nbytes),
           "method": "cupy float32 matmul (cuBLAS) n^3 and d2d copy, CUDA events, best of runs"}
    del a, b, c, src, dst
    cupy.get_default_memory_pool().free_all_blocks()
    return out


def measure(device="cpu", quick=False):
    """Peak dict for the device; on failure the dict carries an 'error' and no numbers."""
    try:
        return measure_gpu(quick) if device == "cuda" else measure_cpu(quick)
    except Exception as exc:  # e.g. CuPy missing: fractions of peak are then left out
        return {"device": device, "sgemm_gflops": None, "copy_gbps": None, "error": f"{type(exc).__name__}: {exc}"}
