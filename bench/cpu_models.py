#!/usr/bin/env python
"""Whole models on the CPU: fastconv against PyTorch, same weights, same threads.

    python bench/cpu_models.py [--threads N] [--reps R] [--cpu-time] [--profile] [--only NAME]

Issue #6: ResNet-18 forward+backward at batch 32, 112², >= 1.0x PyTorch.  Issue #4: whole
training steps (forward, backward, SGD-momentum step) of LeNet-5 and CIFAR ResNet-20 at
batch 64, 32², >= 1.2x.  Weights are copied torch -> fastconv and the first loss compared
(validation), then each step is timed; min and median of R runs, interleaved so machine load
hits both sides alike.  ``ratio`` is torch's median over fastconv's; ``pair`` the median of
the per-run ratios.

Each side runs its fastest configuration a user would pick: fastconv's SGD with
``flat=True`` (one fused kernel per step over a flat buffer) and the CIFAR/ImageNet ResNet
blocks' fused batch-norm/add/ReLU (the models' default); torch's SGD with ``fused=True``
(falling back to its default where a build lacks it).  ``--cpu-time`` times with
``time.thread_time`` (use with ``--threads 1``: robust to other load on a shared machine);
``--profile`` adds a per-op breakdown of one more round (fastconv kernels timed through
dispatch with the same clock; torch's ops as torch.profiler self-time shares of its timed
median step, since the profiler's wall-clock totals carry its own overhead).  Both sides run
under ``fastconv.config.keep_heap()`` (glibc keeps freed memory), as in the fastconv commands.
"""
import argparse
import collections
import os
import sys
import time

import numpy as np


def _fc_profile(step, reps, clock):
    """{kernel op: seconds per step} and the step time, fastconv kernels timed via dispatch."""
    import fastconv.functional._base as base
    from fastconv import dispatch

    acc, orig = collections.defaultdict(float), dispatch.kernel

    def timed(op, like, backend=None):
        fn = orig(op, like, backend)

        def run(*a, **k):
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                acc[op] += clock() - t0
        return run

    base.kernel = timed
    try:
        t0 = clock()
        for _ in range(reps):
            step()
        total = (clock() - t0) / reps
    finally:
        base.kernel = orig
    return {k: v / reps for k, v in acc.items()}, total


def _torch_profile(step, reps):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            step()
    return {e.key: e.self_cpu_time_total / 1e6 / reps for e in prof.key_averages() if e.self_cpu_time_total > 0}


def _print_profile(fc_ops, fc_total, t_ops, t_step):
    print(f"  fastconv per step {fc_total * 1e3:.1f} ms; kernels:")
    for op, s in sorted(fc_ops.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {op:34s} {s * 1e3:8.2f} ms  {100 * s / fc_total:5.1f}%")
    other = fc_total - sum(fc_ops.values())
    print(f"    {'(python, autograd, array ops)':34s} {other * 1e3:8.2f} ms  {100 * other / fc_total:5.1f}%")
    # the profiler's self times are wall-clock and carry its overhead: report each op's share,
    # scaled to the timed (median) step so the two breakdowns compare
    t_total = sum(t_ops.values())
    print(f"  torch per step {t_step * 1e3:.1f} ms (timed median; ops: profiler self-time shares of it):")
    for op, s in sorted(t_ops.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {op[:34]:34s} {s / t_total * t_step * 1e3:8.2f} ms  {100 * s / t_total:5.1f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="0: fastconv's default")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-time", action="store_true", help="time.thread_time instead of wall time")
    ap.add_argument("--profile", action="store_true", help="per-op breakdown after the timing")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    args = ap.parse_args()
    import torch

    import fastconv as fc
    import fastconv.functional as F
    from fastconv import models, optim
    from fastconv.bench.torch_models import TCifarResNet, TLeNet, TResNet

    # as the fastconv commands do: glibc keeps freed activations (both sides; without it torch
    # took 1k-15k page faults per step here and fastconv none, which flattered our ratio)
    fc.config.keep_heap()
    if args.threads:
        fc.set_num_threads(args.threads)
    torch.set_num_threads(fc.get_num_threads())
    clock = time.thread_time if args.cpu_time else time.perf_counter
    # name, fastconv model, torch model, input shape, classes, with an optimizer step
    cases = [("lenet5 step", models.lenet5, lambda: TLeNet(), (64, 1, 32, 32), 10, True),
             ("resnet20 step", models.resnet20, lambda: TCifarResNet(3), (64, 3, 32, 32), 10, True),
             ("resnet18 f+b", lambda: models.resnet18(num_classes=1000), lambda: TResNet([2, 2, 2, 2], 1000),
              (32, 3, 112, 112), 1000, False)]
    print(f"threads {fc.get_num_threads()}  torch {torch.__version__}  fastconv {fc.__version__}  "
          f"clock {'thread_time' if args.cpu_time else 'perf_counter'}")
    print(f"{'case':14s} {'fastconv ms (min/med)':>22s} {'torch ms (min/med)':>20s} {'ratio(med)':>10s} "
          f"{'pair':>5s} {'loss diff':>9s}")
    for name, fmake, tmake, shape, ncls, with_opt in cases:
        if args.only and args.only not in name:
            continue
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, ncls, shape[0])
        tm = tmake()
        fm = fmake()
        fm.load_state_dict({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})
        tm.train()
        fm.train()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        fx, fy = fc.Tensor(x), fc.Tensor(y)
        fopt = optim.SGD(fm.parameters(), lr=0.01, momentum=0.9, flat=True) if with_opt else None
        topt = None
        if with_opt:
            try:
                topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9, fused=True)
            except (RuntimeError, TypeError, ValueError):  # a torch without the fused CPU SGD
                topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)

        def f_step():
            if fopt is not None:
                fopt.zero_grad()
            else:
                fm.zero_grad()
            loss = F.cross_entropy(fm(fx), fy)
            loss.backward()
            if fopt is not None:
                fopt.step()
            return float(loss.item())

        def t_step():
            tm.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(tm(tx), ty)
            loss.backward()
            if topt is not None:
                topt.step()
            return float(loss.item())

        diff = abs(f_step() - t_step())  # validation run (also warms caches)
        ft, tt = [], []
        for _ in range(args.reps):
            t0 = clock()
            f_step()
            ft.append(clock() - t0)
            t0 = clock()
            t_step()
            tt.append(clock() - t0)
        fmed, tmed = np.median(ft) * 1e3, np.median(tt) * 1e3
        pair = np.median(np.array(tt) / np.array(ft))
        print(f"{name:14s} {min(ft) * 1e3:10.1f} / {fmed:9.1f} {min(tt) * 1e3:9.1f} / {tmed:8.1f} "
              f"{tmed / fmed:10.2f} {pair:5.2f} {diff:9.1e}", flush=True)
        if args.profile:
            reps = max(1, min(args.reps, 5))
            fc_ops, fc_total = _fc_profile(f_step, reps, clock)
            _print_profile(fc_ops, fc_total, _torch_profile(t_step, reps), tmed / 1e3)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
