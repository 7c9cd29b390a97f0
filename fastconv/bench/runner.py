"""The benchmark loop: op x direction x case x backend -> one result record.

For every record: resolve the kernel (missing -> status 'n/a'), run it once
and compare with the float64 NumPy reference on the same inputs (this call
also absorbs JIT compilation); a relative error over the op's tolerance, a
NaN, a wrong shape or an exception is reported as 'fail'/'error' and never
timed.  Validated kernels are then timed (synchronised; CUDA events on the
GPU) round-robin with their PyTorch counterparts, so both sides of each ratio
see the same machine conditions.
"""
import datetime
import gc
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import config as fc_config
from .. import dispatch
from . import peak as peak_mod
from . import torch_ref
from .cases import load_cases
from .machine import load_avg, machine_info
from .specs import SPECS, KernelMissing
from .timing import Budget, make_timer, measure_interleaved

SCHEMA_VERSION = 1
RECORD_KEYS = (
    "op", "direction", "case", "set", "backend", "device", "dtype", "status", "message",
    "rel_err", "tol", "median_ms", "q25_ms", "q75_ms", "iqr_ms", "min_ms", "repeats",
    "flops", "bytes", "gflops", "gbps", "bound", "peak_fraction",
    "torch_ms", "torch_variant", "torch_variants", "speedup_vs_torch", "params",
)
STATUSES = ("ok", "fail", "error", "n/a", "no-ref", "skipped")


@dataclass
class Config:
    device: str = "cpu"
    ops: list = None
    backends: list = None
    shapes: list = None
    quick: bool = False
    dtype: str = "float32"
    torch: bool = True
    seed: int = 0
    budget: Budget = None
    progress: object = None  # callable(str) for progress lines, or None
    peak: dict = None  # machine limits measured earlier; None: measure now
    threads: int = None  # CPU threads for fastconv, BLAS and PyTorch alike (None: fastconv's setting)


def default_backends(device):
    return [n for n, (_, devs) in dispatch.BACKENDS.items() if device in devs and n != "reference"]


def kernel_getter(backend, device):
    """get(name) -> kernel of ``backend`` for ``device``; raises KernelMissing."""
    def get(name):
        try:
            return dispatch.resolve(name, device, backend)[1]
        except dispatch.BackendUnavailable as exc:
            raise KernelMissing(str(exc)) from None
    return get


def convert(data, dtype, device):
    """Fresh copies of the case inputs: floats cast to ``dtype``, moved to ``device``."""
    out = {}
    for k, v in data.items():
        if v is None:
            out[k] = None
            continue
        a = v.astype(dtype) if v.dtype.kind == "f" else v.copy()
        if device == "cuda":
            import cupy

            a = cupy.asarray(a)
        out[k] = a
    return out


def _host64(a):
    if a is None:
        return None
    if hasattr(a, "get") and type(a).__module__.split(".")[0] == "cupy":
        a = a.get()
    return np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind in "fiub" else np.asarray(a)


def rel_err(outs, refs):
    """max over outputs of ||out - ref|| / ||ref||; (inf, why) on NaN, shape or arity mismatch."""
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    if len(outs) != len(refs):
        return float("inf"), f"returned {len(outs)} outputs, reference {len(refs)}"
    worst = 0.0
    for i, (o, r) in enumerate(zip(outs, refs)):
        if r is None:
            if o is not None:
                return float("inf"), f"output {i}: expected None"
            continue
        if o is None:
            return float("inf"), f"output {i}: got None"
        o = _host64(o)
        if o.shape != r.shape:
            return float("inf"), f"output {i}: shape {o.shape}, reference {r.shape}"
        if not np.all(np.isfinite(o)) and np.all(np.isfinite(r)):
            return float("inf"), f"output {i}: non-finite values"
        denom = np.linalg.norm(r.ravel())
        diff = np.linalg.norm((o - r).ravel())
        e = float(diff / denom) if denom > 0 else float(diff)
        worst = max(worst, e)
    return worst, ""


def reference_outputs(spec, direction, data, p):
    """Float64 outputs of the NumPy reference (KernelMissing if it lacks the op)."""
    get = kernel_getter("reference", "cpu")
    run, extract = spec.bind(get, direction, convert(data, np.float64, "cpu"), p)
    return tuple(None if o is None else _host64(o).copy() for o in extract(run()))


def _record(case, direction, backend, cfg, spec, **kw):
    r = dict.fromkeys(RECORD_KEYS)
    r.update(op=case.op, direction=direction, case=case.name, set=case.set, backend=backend, device=cfg.device,
             dtype=cfg.dtype, tol=spec.tol, bound=spec.bound, params=dict(case.params), message="")
    r.update(kw)
    return r


def _sync(device):
    if device == "cuda":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def validate_one(spec, case, direction, backend, data, ref, cfg):
    """Resolve and validate one backend: (record, timed callable or None, seconds of the first call).

    The record's status is final ('n/a', 'no-ref', 'fail', 'error') unless a callable is
    returned; ``ref`` is a callable giving the reference outputs."""
    rec = _record(case, direction, backend, cfg, spec)
    get = kernel_getter(backend, cfg.device)
    try:
        for name in spec.kernels.get(direction, ()):
            get(name)
    except KernelMissing as exc:
        rec.update(status="n/a", message=str(exc))
        return rec, None, 0.0
    try:
        refs = ref()
    except KernelMissing as exc:
        rec.update(status="no-ref", message=f"reference lacks the op, not validated: {exc}")
        return rec, None, 0.0
    try:
        run, extract = spec.bind(get, direction, convert(data, cfg.dtype, cfg.device), case.params)
        t0 = time.perf_counter()
        out = extract(run())  # validation call: also JIT warm-up
        _sync(cfg.device)
        t_call = time.perf_counter() - t0
        err, why = rel_err(out, refs)
        del out
    except KernelMissing as exc:
        rec.update(status="n/a", message=str(exc))
        return rec, None, 0.0
    except Exception as exc:
        rec.update(status="error", message=f"{type(exc).__name__}: {exc}"[:300])
        return rec, None, 0.0
    rec["rel_err"] = err
    if not err <= spec.tol:
        rec.update(status="fail", message=why or f"relative error {err:.3g} > tolerance {spec.tol:g}")
        return rec, None, 0.0
    return rec, run, t_call


def build_torch(case, direction, data, cfg):
    """{variant: (callable, seconds of its warm-up call)} or {variant: error text}."""
    if not cfg.torch:
        return {}
    out = {}
    for variant, build in torch_ref.builders(case.op, direction, data, case.params, cfg.dtype, cfg.device).items():
        try:
            fn = build()
            t0 = time.perf_counter()
            fn()  # warm-up (cuDNN autotune, lazy state)
            make_timer(cfg.device, "torch").sync()
            out[variant] = (fn, time.perf_counter() - t0)
        except Exception as exc:  # e.g. a fused optimizer this torch build lacks
            out[variant] = f"{type(exc).__name__}: {exc}"[:160]
    return out


def time_direction(recs, runs, torch_fns, cfg, budget):
    """Time validated kernels and PyTorch's variants interleaved (round-robin), so a
    shared or throttling machine affects both sides of each ratio alike."""
    entries = {}
    for rec, (run, t_call) in zip(recs, runs):
        if run is not None:
            entries[("k", rec["backend"])] = (run, make_timer(cfg.device), budget.for_slow_call(t_call))
    torch_variants = {}
    for variant, v in torch_fns.items():
        if isinstance(v, str):
            torch_variants[variant] = v
        else:
            entries[("t", variant)] = (v[0], make_timer(cfg.device, "torch"), budget.for_slow_call(v[1]))
    stats = measure_interleaved(entries)
    for rec in recs:
        st = stats.get(("k", rec["backend"]))
        if st is None:
            continue
        if isinstance(st, str):
            rec.update(status="error", message=f"while timing: {st}"[:300])
        else:
            rec.update(status="ok", **st.as_dict())
    for (kind, variant), st in stats.items():
        if kind == "t":
            torch_variants[variant] = st if isinstance(st, str) else st.median_ms
    return torch_variants


def _derive(rec, peak):
    flops, nbytes = rec["flops"], rec["bytes"]
    if rec["status"] != "ok":
        return
    sec = rec["median_ms"] / 1e3
    rec["gflops"] = flops / sec / 1e9 if flops else None
    rec["gbps"] = nbytes / sec / 1e9 if nbytes else None
    if rec["bound"] == "flops" and rec["gflops"] and peak.get("sgemm_gflops"):
        rec["peak_fraction"] = rec["gflops"] / peak["sgemm_gflops"]
    elif rec["bound"] == "bytes" and rec["gbps"] and peak.get("copy_gbps"):
        rec["peak_fraction"] = rec["gbps"] / peak["copy_gbps"]
    tv = {k: v for k, v in (rec["torch_variants"] or {}).items() if isinstance(v, float)}
    if tv:
        best = min(tv, key=tv.get)
        rec["torch_ms"], rec["torch_variant"] = tv[best], best
        rec["speedup_vs_torch"] = tv[best] / rec["median_ms"]


def _fair_openmp():
    """OpenMP wait policy both sides run under.  PyTorch and the Cython kernels load one and
    the same libgomp (soname libgomp.so.1), which reads OMP_WAIT_POLICY once, so they cannot
    run under different policies in one process.  fastconv sets PASSIVE for itself on import
    (good alone, with OpenBLAS threads beside it); PyTorch ran up to 3-5x slower under it on
    small ops (Adam over ResNet-20, LeNet convs), which flattered the ratios.  So unless the
    user set OMP_WAIT_POLICY, the benchmark undoes fastconv's default before libgomp loads
    and both run under OpenMP's own default, which is what PyTorch users get."""
    import os

    if policy_is_ours() and not gomp_loaded():
        del os.environ["OMP_WAIT_POLICY"]
    return os.environ.get("OMP_WAIT_POLICY") or "default"


def policy_is_ours():
    """True while OMP_WAIT_POLICY is the PASSIVE that fastconv itself set on import."""
    import os
    import fastconv

    return fastconv._OMP_POLICY_DEFAULTED and os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"


def gomp_loaded():
    """Whether libgomp is already loaded (then its wait policy is fixed for this process)."""
    import os

    if not os.path.exists("/proc/self/maps"):
        return True  # cannot tell: assume it is
    with open("/proc/self/maps") as f:
        return any("gomp" in line for line in f)


def run(cfg):
    """Run the benchmark; return the report dict (see report.py for its outputs)."""
    policy = _fair_openmp()
    _run_policy[0] = policy
    if not cfg.threads:
        return _run(cfg)
    saved = fc_config.get_num_threads()
    fc_config.set_num_threads(int(cfg.threads))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # BLAS keeps its own thread count
            return _run(cfg)
        with threadpool_limits(limits=int(cfg.threads), user_api="blas"):
            return _run(cfg)
    finally:
        fc_config.set_num_threads(saved)


_run_policy = [None]


def _run(cfg):
    say = cfg.progress or (lambda s: None)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = machine_info(cfg.device)  # at the start: its load average is the one before the run
    machine["omp_wait_policy"] = _run_policy[0]
    if cfg.device == "cuda":
        ok, why = dispatch.gpu_status()
        if not ok:
            raise dispatch.BackendUnavailable(f"cannot benchmark on cuda: {why}")
    elif cfg.device != "cpu":
        raise ValueError(f"unknown device {cfg.device!r}: expected 'cpu' or 'cuda'")
    t_start = time.perf_counter()
    budget = cfg.budget or (Budget.quick(cfg.device) if cfg.quick else Budget())
    cases = load_cases(cfg.device, cfg.shapes, cfg.ops, cfg.quick)
    backends = list(cfg.backends) if cfg.backends else default_backends(cfg.device)
    unavailable = {}
    for b in list(backends):
        ok, why = dispatch.available(b) if b in dispatch.BACKENDS else (False, f"unknown backend {b!r}")
        if ok and b in dispatch.BACKENDS and cfg.device not in dispatch.BACKENDS[b][1]:
            ok, why = False, f"backend {b!r} does not serve {cfg.device}"
        if ok and cfg.device == "cuda" and b != "reference":
            ok, why = dispatch.gpu_status()[0], dispatch.gpu_status()[1]
        if not ok:
            unavailable[b] = why
            backends.remove(b)
    torch_cfg = None
    if cfg.torch and torch_ref.available():
        torch_cfg = torch_ref.configure(cfg.device, fc_config.get_num_threads(), fc_config.allow_tf32)
    if cfg.peak is None:
        say(f"measuring {cfg.device} peak (SGEMM, copy bandwidth)...")
    peak = dict(cfg.peak) if cfg.peak is not None else peak_mod.measure(cfg.device, quick=cfg.quick)
    timer = make_timer(cfg.device)  # for the record: which clock timed the kernels
    itemsize = np.dtype(cfg.dtype).itemsize
    results = []
    for ci, case in enumerate(cases):
        spec = SPECS.get(case.op)
        if spec is None:
            results.append(dict(dict.fromkeys(RECORD_KEYS), op=case.op, case=case.name, set=case.set,
                                status="error", message=f"unknown op {case.op!r}; known: {sorted(SPECS)}"))
            continue
        rng = np.random.default_rng(cfg.seed)
        try:
            data = spec.make(case.params, rng)
        except Exception as exc:
            for b in backends:
                results.append(_record(case, spec.directions[0], b, cfg, spec, status="error",
                                       message=f"building inputs: {type(exc).__name__}: {exc}"))
            continue
        for d in spec.directions:
            if budget.deadline_s is not None and time.perf_counter() - t_start > budget.deadline_s:
                for b in backends:
                    results.append(_record(case, d, b, cfg, spec, status="skipped",
                                           message=f"run time budget of {budget.deadline_s:g} s spent"))
                continue
            cache = {}

            def ref(d=d, cache=cache):
                if "v" not in cache:
                    try:
                        cache["v"] = reference_outputs(spec, d, data, case.params)
                    except KernelMissing as exc:
                        cache["v"] = exc
                if isinstance(cache["v"], Exception):
                    raise cache["v"]
                return cache["v"]
            checked = [validate_one(spec, case, d, b, data, ref, cfg) for b in backends]
            cache.clear()
            recs, runs = [c[0] for c in checked], [(c[1], c[2]) for c in checked]
            torch_fns = build_torch(case, d, data, cfg) if any(r is not None for r, _ in runs) else {}
            tv = time_direction(recs, runs, torch_fns, cfg, budget)
            del checked, runs, torch_fns
            flops, nbytes = spec.work(case.params, d, itemsize)
            for r in recs:
                r.update(flops=flops, bytes=nbytes, torch_variants=tv or None)
                _derive(r, peak)
                results.append(r)
                say(f"[{ci + 1}/{len(cases)}] {case.op}.{d} {case.name} {r['backend']}: {r['status']}"
                    + (f" {r['median_ms']:.3f} ms" if r["status"] == "ok" else ""))
        del data
        gc.collect()
        if cfg.device == "cuda":
            try:
                import cupy

                cupy.get_default_memory_pool().free_all_blocks()
            except Exception:
                pass
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "fastconv bench",
        "created_utc": started,
        "machine": machine,
        "peak": peak,
        "config": {"device": cfg.device, "ops": cfg.ops, "backends": backends, "shapes": cfg.shapes,
                   "quick": cfg.quick, "dtype": cfg.dtype, "torch": bool(cfg.torch and torch_ref.available()), "torch_settings": torch_cfg,
                   "allow_tf32": fc_config.allow_tf32,
                   "seed": cfg.seed, "budget": budget.__dict__.copy(), "timer": timer.name,
                   "argv": list(sys.argv)},
        "backends_unavailable": unavailable,
        "elapsed_s": round(time.perf_counter() - t_start, 2),
        "load_avg_end": load_avg(),
        "results": results,
    }


class ValidationFailed(AssertionError):
    """A kernel's output does not match the float64 reference."""


def prepare_validated(case, direction, backend, device="cpu", dtype="float32", seed=0):
    """The timed callable for (case, direction, backend) after validating it once against
    the reference (for pytest-benchmark).  Raises KernelMissing (backend or reference
    lacks the op) or ValidationFailed."""
    spec = SPECS[case.op]
    data = spec.make(case.params, np.random.default_rng(seed))
    get = kernel_getter(backend, device)
    for name in spec.kernels.get(direction, ()):
        get(name)
    refs = reference_outputs(spec, direction, data, case.params)
    run_, extract = spec.bind(get, direction, convert(data, dtype, device), case.params)
    err, why = rel_err(extract(run_()), refs)
    if not err <= spec.tol:
        raise ValidationFailed(f"{backend} {case.op}.{direction} {case.name}: relative error {err:.3g} "
                               f"> tolerance {spec.tol:g} {why}")
    return run_, err
