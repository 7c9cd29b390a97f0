"""Timers: perf_counter on the CPU, CUDA events on the GPU; repeat within a budget.

``measure(fn, timer, ...)`` times synchronised single calls until at least
``min_repeats`` runs and ``budget_s`` seconds are spent (or ``max_repeats``
runs, or ``hard_cap_s`` seconds with one run done, whichever first), after
``warmup`` untimed calls, and returns ``Stats`` (median, quartiles, IQR).
``measure_interleaved`` does the same for several callables round-robin (the
runner times a kernel and its PyTorch counterpart that way).
"""
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Stats:
    median_ms: float
    q25_ms: float
    q75_ms: float
    iqr_ms: float
    min_ms: float
    repeats: int

    def as_dict(self):
        return asdict(self)


def summarize(times_s):
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.size == 0:
        raise ValueError("summarize: no timings")
    q25, med, q75 = np.percentile(t, [25, 50, 75])
    return Stats(float(med), float(q25), float(q75), float(q75 - q25), float(t.min()), int(t.size))


class CpuTimer:
    """Wall-clock time of one call (CPU kernels return when done)."""

    name = "perf_counter"

    def sync(self):
        pass

    def time_call(self, fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


class CupyEventTimer:
    """CUDA events on CuPy's current stream around one call."""

    name = "cuda-events (cupy)"

    def __init__(self):
        import cupy

        self.cupy = cupy
        self.start, self.end = cupy.cuda.Event(), cupy.cuda.Event()

    def sync(self):
        self.cupy.cuda.get_current_stream().synchronize()

    def time_call(self, fn):
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.cupy.cuda.get_elapsed_time(self.start, self.end) / 1e3


class TorchEventTimer:
    """CUDA events on PyTorch's current stream around one call."""

    name = "cuda-events (torch)"

    def __init__(self):
        import torch

        self.torch = torch
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def sync(self):
        self.torch.cuda.synchronize()

    def time_call(self, fn):
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def make_timer(device, lib="fastconv"):
    """The timer for a device; ``lib='torch'`` times PyTorch's stream on the GPU."""
    if device == "cpu":
        return CpuTimer()
    if device == "cuda":
        return TorchEventTimer() if lib == "torch" else CupyEventTimer()
    raise ValueError(f"make_timer: unknown device {device!r}")


@dataclass
class Budget:
    """How long to time one case: at least ``min_repeats`` runs and ``budget_s`` seconds,
    at most ``max_repeats`` runs; stop after ``hard_cap_s`` once one run is in."""

    min_repeats: int = 5
    max_repeats: int = 200
    budget_s: float = 1.0
    hard_cap_s: float = 5.0
    warmup: int = 1
    deadline_s: float = None  # whole run: cases not started by then are reported 'skipped'

    @classmethod
    def quick(cls, device="cpu"):
        """--quick: a few runs per case, and a whole-run deadline (2 CPU cores: done in < 2 min;
        on the GPU the float64 CPU reference for the larger GPU shapes needs longer)."""
        return cls(min_repeats=3, max_repeats=20, budget_s=0.15, hard_cap_s=0.6, warmup=0,
                   deadline_s=90.0 if device == "cpu" else 240.0)

    def for_slow_call(self, seconds):
        """The budget for a kernel whose (validation) call took ``seconds``: one timed run
        when a single call already exceeds the hard cap."""
        if seconds <= self.hard_cap_s:
            return self
        return Budget(min_repeats=1, max_repeats=1, budget_s=0.0, hard_cap_s=0.0, warmup=0, deadline_s=self.deadline_s)


def measure(fn, timer, budget=None):
    """Time ``fn`` (already validated and warmed up by the caller); return Stats."""
    budget = budget or Budget()
    for _ in range(budget.warmup):
        fn()
    timer.sync()
    times, t_start = [], time.perf_counter()
    while True:
        times.append(timer.time_call(fn))
        n, spent = len(times), time.perf_counter() - t_start
        if n >= budget.max_repeats or spent >= budget.hard_cap_s:
            break
        if n >= budget.min_repeats and spent >= budget.budget_s:
            break
    return summarize(times)


def measure_interleaved(entries):
    """Time several callables round-robin: ``entries`` maps key -> (fn, timer, Budget).
    Each key stops on its own budget (counting its own timed seconds).  Returns
    key -> Stats, or key -> error text when its call raised."""
    out, times, spent = {}, {k: [] for k in entries}, dict.fromkeys(entries, 0.0)
    active = []
    for k, (fn, timer, b) in entries.items():
        try:
            for _ in range(b.warmup):
                fn()
            timer.sync()
            active.append(k)
        except Exception as exc:
            out[k] = f"{type(exc).__name__}: {exc}"
    while active:
        for k in list(active):
            fn, timer, b = entries[k]
            try:
                t = timer.time_call(fn)
            except Exception as exc:
                out[k] = f"{type(exc).__name__}: {exc}"
                active.remove(k)
                continue
            times[k].append(t)
            spent[k] += t
            n = len(times[k])
            if n >= b.max_repeats or spent[k] >= b.hard_cap_s or (n >= b.min_repeats and spent[k] >= b.budget_s):
                active.remove(k)
    for k, ts in times.items():
        if k not in out:
            out[k] = summarize(ts)
    return out
