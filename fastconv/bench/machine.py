"""Machine description for benchmark reports: CPU, threads, BLAS, GPU, driver, versions, git commit."""
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa():
    """The SIMD extensions that matter for these kernels, from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
                                    "avx512_bf16", "amx_tile") if f in flags]
    except OSError:
        pass
    return None


def blas_info():
    try:
        import threadpoolctl

        blas = [d for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
        blas.sort(key=lambda d: "numpy" not in str(d.get("filepath", "")))  # NumPy's BLAS first
        if blas:
            d = blas[0]
            return {"name": d.get("internal_api"), "version": d.get("version"),
                    "threads": d.get("num_threads"), "arch": d.get("architecture")}
    except Exception:
        pass
    try:
        import numpy as np

        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"name": b.get("name"), "version": b.get("version"), "threads": None, "arch": None}
    except Exception:
        return {"name": None, "version": None, "threads": None, "arch": None}


def git_commit():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else None
    except Exception:
        return None


def versions():
    out = {"python": platform.python_version()}
    for dist in ("fastconv", "numpy", "scipy", "torch", "cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda", "Cython"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def gpu_info():
    """GPU name, compute capability, SM count, driver and runtime versions (None without a GPU)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        drv = cupy.cuda.runtime.driverGetVersion()
        rt = cupy.cuda.runtime.runtimeGetVersion()
        info = {"name": name, "cc": f"{props['major']}.{props['minor']}", "sms": props.get("multiProcessorCount"),
                "memory_gib": round(props.get("totalGlobalMem", 0) / 2 ** 30, 1),
                "cuda_driver_api": f"{drv // 1000}.{drv % 1000 // 10}", "cuda_runtime": f"{rt // 1000}.{rt % 1000 // 10}"}
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
            info["driver"] = smi[0] if smi else None
        except Exception:
            info["driver"] = None
        return info
    except Exception:
        return None


def load_avg():
    """1/5/15-minute load averages: above the core count, other work shared the CPU."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device="cpu"):
    from ..config import get_num_threads

    info = {"cpu_model": cpu_model(), "cpu_isa": cpu_isa(), "cpu_count": os.cpu_count(), "threads": get_num_threads(),
            "platform": platform.platform(), "blas": blas_info(), "git_commit": git_commit(),
            "versions": versions(), "gpu": gpu_info() if device == "cuda" else None,
            "load_avg": load_avg()}
    return info
