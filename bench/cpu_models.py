#!/usr/bin/env python
"""Whole models on the CPU: fastconv against PyTorch, same weights, same threads.

    python bench/cpu_models.py [--threads N] [--reps R]

Issue #6: ResNet-18 forward+backward at batch 32, 112², >= 1.0x PyTorch.  Issue #4: whole
training steps (forward, backward, SGD-momentum step) of LeNet-5 and CIFAR ResNet-20 at
batch 64, 32², >= 1.2x.  Weights are copied torch -> fastconv and the first loss compared
(validation), then each step is timed; min and median of R runs, interleaved so machine load
hits both sides alike.
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
    from fastconv import models, optim
    from fastconv.bench.torch_models import TCifarResNet, TLeNet, TResNet

    if args.threads:
        fc.set_num_threads(args.threads)
    torch.set_num_threads(fc.get_num_threads())
    # name, fastconv model, torch model, input shape, classes, with an optimizer step
    cases = [("lenet5 step", models.lenet5, lambda: TLeNet(), (64, 1, 32, 32), 10, True),
             ("resnet20 step", models.resnet20, lambda: TCifarResNet(3), (64, 3, 32, 32), 10, True),
             ("resnet18 f+b", lambda: models.resnet18(num_classes=1000), lambda: TResNet([2, 2, 2, 2], 1000),
              (32, 3, 112, 112), 1000, False)]
    print(f"threads {fc.get_num_threads()}  torch {torch.__version__}  fastconv {fc.__version__}")
    print(f"{'case':14s} {'fastconv ms (min/med)':>22s} {'torch ms (min/med)':>20s} {'ratio(med)':>10s} {'loss diff':>9s}")
    for name, fmake, tmake, shape, ncls, with_opt in cases:
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
        fopt = optim.SGD(fm.parameters(), lr=0.01, momentum=0.9) if with_opt else None
        topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9) if with_opt else None

        def f_step():
            for p in fm.parameters():
                p.grad = None
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
            t0 = time.perf_counter()
            f_step()
            ft.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            t_step()
            tt.append(time.perf_counter() - t0)
        fmed, tmed = np.median(ft) * 1e3, np.median(tt) * 1e3
        print(f"{name:14s} {min(ft) * 1e3:10.1f} / {fmed:9.1f} {min(tt) * 1e3:9.1f} / {tmed:8.1f} "
              f"{tmed / fmed:10.2f} {diff:9.1e}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
