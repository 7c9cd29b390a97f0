#!/usr/bin/env python
"""One-shot GPU check, run from the repository root on a CUDA machine:

    python bench/gpu_check.py [--quick] [--budget SECONDS] [--no-tests] [--no-bench]

1. device and library information;
2. the GPU test files (CuPy kernels, Numba CUDA kernels), each in its own
   pytest subprocess with a timeout (a crashed CUDA context stays contained);
3. benchmarks: CuPy (and Numba CUDA when its kernels load) against PyTorch
   (cuDNN FP32, TF32 off; for the TF32 rows TF32 on both sides), CUDA-event
   timing, median of >= 20 runs after warm-up, each result validated first
   (relative error against PyTorch).  The benchmark runs in a child process
   that is restarted past a case that kills the CUDA context.

Prints one compact table; writes $OUT/gpu_check.json when OUT is set.
A global time guard keeps the whole run under --budget (default 330 s).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = time.time()

# name: (N, C, H, W, K, R, S, stride, padding, groups)
CONV_SHAPES = {
    "resnet_conv1": (64, 3, 224, 224, 64, 7, 7, 2, 3, 1),
    "res2": (64, 64, 56, 56, 64, 3, 3, 1, 1, 1),
    "res3": (64, 128, 28, 28, 128, 3, 3, 1, 1, 1),
    "res4": (64, 256, 14, 14, 256, 3, 3, 1, 1, 1),
    "res5": (64, 512, 7, 7, 512, 3, 3, 1, 1, 1),
    "bottleneck_1x1": (64, 256, 56, 56, 64, 1, 1, 1, 0, 1),
    "strided": (64, 128, 56, 56, 256, 3, 3, 2, 1, 1),
    "alexnet_5x5": (64, 64, 27, 27, 192, 5, 5, 1, 2, 1),
    "lenet_c3": (256, 6, 14, 14, 16, 5, 5, 1, 0, 1),
    "cifar": (256, 32, 16, 16, 32, 3, 3, 1, 1, 1),
    "depthwise": (64, 128, 56, 56, 128, 3, 3, 1, 1, 128),
}
QUICK_SHAPES = ["res3", "strided", "lenet_c3", "depthwise"]
TF32_SHAPES = ["res3", "res4", "strided"]
RUNS, WARMUP = 20, 3


def elapsed():
    return time.time() - T0


def say(msg=""):
    print(msg, flush=True)


def short(exc):
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


def numpy_compat():
    """numba-cuda 0.30 with NumPy 2.5 needs numpy.row_stack (removed from NumPy)."""
    import numpy

    if not hasattr(numpy, "row_stack"):
        numpy.row_stack = numpy.vstack


# ------------------------------------------------------------------ section 1
def device_info():
    info = {"python": sys.version.split()[0]}
    try:
        import cupy

        info["cupy"] = cupy.__version__
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["compute_capability"] = dev.compute_capability
        info["sm_count"] = dev.attributes["MultiProcessorCount"]
        info["memory_gb"] = round(props["totalGlobalMem"] / 2**30, 1)
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    except Exception as exc:
        info["cupy_error"] = short(exc)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.cuda.is_available()
        info["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except Exception as exc:
        info["torch_error"] = short(exc)
    try:
        numpy_compat()
        import numba_cuda  # noqa: F401

        info["numba_cuda"] = getattr(numba_cuda, "__version__", "?")
    except Exception as exc:
        info["numba_cuda_error"] = short(exc)
    try:
        sys.path.insert(0, ROOT)
        from fastconv import dispatch

        info["backends"] = {r["backend"]: (r["available"] or r["reason"][:120]) for r in dispatch.info()}
    except Exception as exc:
        info["fastconv_error"] = short(exc)
    for k, v in info.items():
        say(f"  {k:18s} {v}")
    return info


# ----------------------------------------------------------------- section 1b
def _compile_chunk(items):
    """Worker: compile (and load) CuPy kernels; CuPy's disk cache keeps them for later processes."""
    sys.path.insert(0, ROOT)
    from fastconv.kernels.cupy import _module as M

    out = []
    for f, e, w in items:
        t = time.time()
        try:
            M.function(f, e, wmma=w)
            out.append((f, e, None, time.time() - t))
        except Exception as exc:
            out.append((f, e, short(exc), time.time() - t))
    return out


def warm_kernels(timeout):
    """Compile every CuPy kernel instantiation in parallel processes (fills CuPy's kernel cache)."""
    import concurrent.futures as cf
    import importlib
    import multiprocessing as mp

    sys.path.insert(0, ROOT)
    import fastconv  # noqa: F401  (maps kernels/ as fastconv.kernels)

    names = []
    for fam in ("conv", "pool", "activation", "optim", "norm", "loss"):
        try:
            names += importlib.import_module(f"fastconv.kernels.cupy.{fam}").kernel_names()
        except Exception as exc:
            say(f"  cannot list {fam} kernels: {short(exc)}")
    workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    chunks = [names[i::workers] for i in range(workers)]
    t = time.time()
    results, failed = [], []
    ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    try:
        futs = [ex.submit(_compile_chunk, c) for c in chunks if c]
        for fut in cf.as_completed(futs, timeout=timeout):
            try:
                results += fut.result()
            except Exception as exc:
                failed.append(("?", "?", short(exc), 0.0))
    except cf.TimeoutError:
        say(f"  compile warm-up timed out after {timeout:.0f}s (the rest compiles on first use)")
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    failed += [r for r in results if r[2]]
    slow = sorted(results, key=lambda r: -r[3])[:3]
    say(f"  {len(results) - len(failed)}/{len(names)} kernels compiled in {time.time() - t:.0f}s with {workers} "
        f"processes; slowest: " + ", ".join(f"{e} {d:.1f}s" for _, e, _, d in slow))
    for f, e, err, _ in failed[:20]:
        say(f"    FAILED {f}:{e}: {err}")
    return {"kernels": len(names), "compiled": len(results) - len(failed),
            "failed": [{"file": f, "kernel": e, "error": err} for f, e, err, _ in failed],
            "seconds": round(time.time() - t, 1)}


# ------------------------------------------------------------------ section 2
PYTEST_BOOT = (
    "import sys, numpy; numpy.row_stack = getattr(numpy, 'row_stack', numpy.vstack); "
    "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


def run_tests(files, timeout, extra=()):
    """Run pytest on ``files`` in a subprocess; return a summary dict."""
    cmd = [sys.executable, "-c", PYTEST_BOOT, "-q", "-rfE", "--tb=line", "-p", "no:cacheprovider", *extra, *files]
    t = time.time()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, rc = res.stdout + res.stderr, res.returncode
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        rc = "timeout"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    summary = next((ln for ln in reversed(lines) if (" passed" in ln or " failed" in ln or " error" in ln
                                                    or "no tests ran" in ln)), lines[-1] if lines else "")
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    say(f"  {' '.join(os.path.basename(f) for f in files)}: rc={rc} {time.time() - t:.0f}s :: {summary.strip()}")
    for ln in failures[:25]:
        say("    " + ln[:220])
    if len(failures) > 25:
        say(f"    ... {len(failures) - 25} more")
    if rc not in (0, 1, 5) and not failures:
        for ln in lines[-15:]:
            say("    | " + ln[:220])
    return {"files": files, "rc": rc, "summary": summary.strip(), "failures": failures[:100],
            "seconds": round(time.time() - t, 1)}


# ------------------------------------------------------------------ section 3
def bench_case_names(quick):
    shapes = QUICK_SHAPES if quick else list(CONV_SHAPES)
    names = ["relu", "max_pool2d", "adam"]  # quick ones first: the time guard cuts from the end
    names += [f"conv:{s}" for s in shapes]
    names += [f"conv_tf32:{s}" for s in (TF32_SHAPES[:1] if quick else TF32_SHAPES)]
    return names


def run_bench(cases, budget_end):
    """Run cases in child processes, restarting past crashes; return (rows, notes)."""
    rows, notes, disabled = [], [], set()
    todo = list(cases)
    for attempt in range(5):
        if not todo or time.time() > budget_end - 5:
            break
        fd, path = tempfile.mkstemp(suffix=".jsonl")
        os.close(fd)
        cmd = [sys.executable, os.path.abspath(__file__), "--bench-child", "--results", path,
               "--cases", ",".join(todo), "--disable", ",".join(sorted(disabled)), "--budget-end", str(budget_end)]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=max(10, budget_end - time.time() + 15))
            rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            rc, tail = "timeout", ""
        events = []
        with open(path) as f:
            for ln in f:
                try:
                    events.append(json.loads(ln))
                except ValueError:
                    pass
        os.unlink(path)
        started, ended, last_stage = [], set(), {}
        for ev in events:
            kind = ev.get("event")
            if kind == "row":
                rows.append(ev)
                print_row(ev)
            elif kind == "start":
                started.append(ev["case"])
            elif kind == "end":
                ended.add(ev["case"])
            elif kind == "stage":
                last_stage = ev
            elif kind in ("note", "error", "skip", "fatal"):
                notes.append(ev)
                say(f"  [{kind}] {ev.get('case', '')} {ev.get('text', '')}")
        if rc == 0:
            break
        crashed = [c for c in started if c not in ended]
        msg = f"bench child exited rc={rc} during {crashed or '?'} (stage {last_stage.get('backend', '?')})"
        say("  [crash] " + msg)
        if tail.strip():
            say("    | " + " | ".join(tail.strip().splitlines()[-4:])[:600])
        notes.append({"event": "crash", "text": msg})
        if last_stage.get("backend") in ("cupy", "numba_cuda"):
            key = f"{last_stage['backend']}@{last_stage.get('kind', '')}"
            disabled.add(key)
            notes.append({"event": "crash", "text": f"disabled {key} for the remaining cases"})
            say(f"  [crash] disabled {key} for the remaining cases")
        done = set(ended) | set(crashed)
        if any(ev.get("event") == "fatal" for ev in events):
            break
        todo = [c for c in todo if c not in done]
    return rows, notes


def summarize(rows):
    """Geometric-mean torch/ours ratio per (backend, conv fwd | conv fwd+bwd)."""
    import math

    groups = {}
    for r in rows:
        if not r["name"].startswith("conv ") or " tf32" in r["name"] or not r.get("ratio"):
            continue
        kind = "fwd+bwd" if r["name"].endswith("fwd+bwd") else "fwd"
        groups.setdefault(f"{r['backend']} conv {kind}", []).append(r["ratio"])
    out = {}
    for k, v in sorted(groups.items()):
        out[k] = round(math.exp(sum(math.log(x) for x in v) / len(v)), 3)
        say(f"  geomean ratio {k:28s} {out[k]:6.3f}  ({len(v)} shapes)")
    return out


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def print_row(r):
    say(f"  {r['name'][:34]:34s} {r['backend'][:10]:10s} {fmt(r['ours_ms'], '9.3f')} {fmt(r['torch_ms'], '9.3f')} "
        f"{fmt(r['ratio'], '7.2f')} {fmt(r['rel_err'], '9.1e')}  {r.get('note', '')[:90]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer benchmark shapes")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for the whole run (default 330)")
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--bench-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="", help=argparse.SUPPRESS)
    ap.add_argument("--disable", default="", help=argparse.SUPPRESS)
    ap.add_argument("--budget-end", default="0", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bench_child:
        from gpu_bench_cases import child_main

        return child_main(args)

    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "errors": []}
    budget_end = T0 + args.budget

    say("== 1. device")
    try:
        report["device"] = device_info()
    except Exception as exc:
        report["errors"].append(f"device: {short(exc)}")
        say(f"  FAILED: {short(exc)}")

    say(f"== 1b. compile CuPy kernels  (t={elapsed():.0f}s)")
    try:
        report["compile"] = warm_kernels(timeout=min(90.0, 0.25 * args.budget))
    except Exception as exc:
        report["errors"].append(f"compile: {short(exc)}")
        say(f"  FAILED: {short(exc)}")

    say(f"== 2. GPU tests  (t={elapsed():.0f}s)")
    report["tests"] = []
    if not args.no_tests:
        # -m gpu: the CPU-emulation half of these files is for GPU-less CI
        groups = [["tests/test_cupy_kernels.py", "tests/test_cupy_kernels_nn.py"]]
        numba_files = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "tests", "test_numba_cuda*.py")))
        if numba_files:
            groups.append(numba_files)
        # tests get at most ~55% of the budget: CuPy tests (NVRTC compiles ~90 kernels) 60%, Numba 40%
        shares = [0.55 * args.budget * (0.6 if len(groups) > 1 else 1.0), 0.55 * args.budget * 0.4]
        for files, share in zip(groups, shares):
            left = budget_end - time.time()
            if left < 90:
                say(f"  skipped {files}: time budget")
                continue
            try:
                extra = ("-m", "gpu") if files == groups[0] else ()
                report["tests"].append(run_tests(files, timeout=min(share, left - 75), extra=extra))
            except Exception as exc:
                report["errors"].append(f"tests {files}: {short(exc)}")
                say(f"  FAILED to run {files}: {short(exc)}")

    say(f"== 3. benchmarks  (t={elapsed():.0f}s)   ratio = torch_ms / ours_ms (>1: ours faster)")
    say(f"  {'case':34s} {'backend':10s} {'ours ms':>9s} {'torch ms':>9s} {'ratio':>7s} {'rel err':>9s}  note")
    report["bench"], report["bench_notes"] = [], []
    if not args.no_bench:
        try:
            rows, notes = run_bench(bench_case_names(args.quick), budget_end - 5)
            report["bench"], report["bench_notes"] = rows, notes
            report["summary"] = summarize(rows)
        except Exception as exc:
            report["errors"].append(f"bench: {short(exc)}")
            say(f"  FAILED: {short(exc)}")

    report["seconds"] = round(elapsed(), 1)
    say(f"== done in {elapsed():.0f}s")
    out_dir = os.environ.get("OUT")
    if out_dir:
        try:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
                json.dump(report, f, indent=1, default=str)
            say(f"  wrote {os.path.join(out_dir, 'gpu_check.json')}")
        except Exception as exc:
            say(f"  could not write JSON: {short(exc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
