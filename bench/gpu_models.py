#!/usr/bin/env python
"""Whole training steps on the GPU: fastconv (CuPy backend) against PyTorch.

    python bench/gpu_models.py [--budget SECONDS]

Times forward + backward + SGD-momentum step of ResNet-18 (batch 64, 224²,
the issue's target) and LeNet-5 (batch 64, 32²), CUDA-synchronised, median
of a few steps after warm-up; first checks that both frameworks start from
the same loss.  Writes $OUT/gpu_models.json when OUT is set.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_steps(step, sync, n):
    out = []
    for _ in range(n):
        sync()
        t = time.perf_counter()
        step()
        sync()
        out.append(time.perf_counter() - t)
    return median(out)


def fastconv_step(name, batch, size, steps):
    import cupy as cp
    import numpy as np

    import fastconv as fc
    import fastconv.functional as F
    from fastconv import models, optim

    fc.manual_seed(0)
    model = getattr(models, name)(num_classes=1000 if name == "resnet18" else 10)
    model.to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = fc.Tensor(cp.asarray(rng.standard_normal((batch, 3 if name == "resnet18" else 1, size, size)).astype(np.float32)))
    y = fc.Tensor(cp.asarray(rng.integers(0, 1000 if name == "resnet18" else 10, batch)))
    losses = []

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss)

    step()
    step()
    t = time_steps(step, cp.cuda.get_current_stream().synchronize, steps)
    return t, float(losses[0].item()), model


def torch_step(name, batch, size, steps):
    import numpy as np
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=1000).cuda()
        cin, ncls = 3, 1000
    else:
        from torch import nn

        model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                              nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84),
                              nn.Tanh(), nn.Linear(84, 10)).cuda()
        cin, ncls = 1, 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, cin, size, size)).astype(np.float32)).cuda()
    y = torch.from_numpy(rng.integers(0, ncls, batch)).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()
    step()
    return time_steps(step, torch.cuda.synchronize, steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=150)
    args = ap.parse_args()
    t0 = time.time()
    rows = []
    for name, batch, size, steps in (("lenet5", 64, 32, 20), ("resnet18", 64, 224, 5)):
        if time.time() - t0 > args.budget:
            rows.append({"model": name, "error": "skipped: time budget"})
            continue
        row = {"model": name, "batch": batch, "size": size}
        try:
            row["fastconv_ms"], row["first_loss"], _ = fastconv_step(name, batch, size, steps)
            row["fastconv_ms"] *= 1e3
        except Exception as exc:  # report and go on
            row["error"] = f"fastconv: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        try:
            row["torch_ms"] = torch_step(name, batch, size, steps) * 1e3
        except Exception as exc:
            row["error_torch"] = f"torch: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if "fastconv_ms" in row and "torch_ms" in row:
            row["ratio"] = row["torch_ms"] / row["fastconv_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{'model':10s} {'fastconv ms':>12s} {'torch ms':>10s} {'ratio':>7s}")
    for r in rows:
        print(f"{r['model']:10s} {r.get('fastconv_ms', float('nan')):12.2f} {r.get('torch_ms', float('nan')):10.2f} "
              f"{r.get('ratio', float('nan')):7.2f}  {r.get('error', '')} {r.get('error_torch', '')}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_models.json"), "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
