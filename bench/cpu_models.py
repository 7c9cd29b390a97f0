#!/usr/bin/env python
"""Whole-model forward+backward on the CPU: fastconv against PyTorch, same weights, same threads.

    python bench/cpu_models.py [--threads N] [--reps R]

Issue #6's target: ResNet-18 forward+backward at batch 32, 112², >= 1.0x PyTorch.  Also
LeNet-5 (batch 64, 32²).  Weights are copied torch -> fastconv, the first loss is compared
(validation), then forward + cross-entropy + backward is timed; min and median of R runs,
interleaved so machine load hits both sides alike.
"""
import argparse
import os
import sys
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="0: fastconv's default")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import torch

    import fastconv as fc
    import fastconv.functional as F
    from fastconv import models
    from fastconv.bench.torch_models import TLeNet, TResNet

    if args.threads:
        fc.set_num_threads(args.threads)
    torch.set_num_threads(fc.get_num_threads())
    cases = [("lenet5", models.lenet5, lambda: TLeNet(), (64, 1, 32, 32), 10),
             ("resnet18", lambda: models.resnet18(num_classes=1000), lambda: TResNet([2, 2, 2, 2], 1000),
              (32, 3, 112, 112), 1000)]
    print(f"threads {fc.get_num_threads()}  torch {torch.__version__}  fastconv {fc.__version__}")
    print(f"{'model':9s} {'fastconv ms (min/med)':>22s} {'torch ms (min/med)':>20s} {'ratio(med)':>10s} {'loss diff':>9s}")
    for name, fmake, tmake, shape, ncls in cases:
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

        def f_step():
            for p in fm.parameters():
                p.grad = None
            loss = F.cross_entropy(fm(fx), fy)
            loss.backward()
            return float(loss.item())

        def t_step():
            tm.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(tm(tx), ty)
            loss.backward()
            return float(loss.item())

        diff = abs(f_step() - t_step())  # validation run (also warms caches)
        ft, tt = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            f_step()
            ft.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            t_step()
            tt.append(time.perf_counter() - t0)
        fmed, tmed = np.median(ft) * 1e3, np.median(tt) * 1e3
        print(f"{name:9s} {min(ft) * 1e3:10.1f} / {fmed:9.1f} {min(tt) * 1e3:9.1f} / {tmed:8.1f} "
              f"{tmed / fmed:10.2f} {diff:9.1e}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
