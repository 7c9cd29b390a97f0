"""Quick CPU timing of the Cython conv/pool kernels against PyTorch.

Usage: python bench/cpu_conv_quick.py [--reps 5] [--only NAME,...] [--algo auto]
                                      [--stat median|min] [--cpu]
Prints per shape the time of forward and forward+backward (input, weight, bias
gradients) for torch and fastconv, and the ratio torch_time / fastconv_time
(> 1 means fastconv is faster).  Default: 2 threads each, wall clock.
``--stat min`` is steadier on a machine shared with other jobs; ``--cpu`` runs
one thread each and times the calling thread's CPU time, which other jobs'
load barely disturbs.  ``--algo`` applies to the forward only.  The official
table comes from the bench suite.
"""
import argparse
import time

import numpy as np
import torch

import fastconv
from fastconv.kernels.cython import conv as CV
try:
    from fastconv.kernels.cython import pool as PL
except ImportError:  # pool not built
    PL = None

CONV = {  # name: (x shape, K, kernel, stride, padding, groups)
    "resnet_conv1": ((8, 3, 224, 224), 64, 7, 2, 3, 1),
    "res2_3x3": ((8, 64, 56, 56), 64, 3, 1, 1, 1),
    "res3_3x3": ((8, 128, 28, 28), 128, 3, 1, 1, 1),
    "res4_3x3": ((8, 256, 14, 14), 256, 3, 1, 1, 1),
    "res5_3x3": ((8, 512, 7, 7), 512, 3, 1, 1, 1),
    "bottleneck_1x1": ((8, 256, 56, 56), 64, 1, 1, 0, 1),
    "strided_3x3": ((8, 128, 56, 56), 256, 3, 2, 1, 1),
    "alexnet_5x5": ((8, 64, 27, 27), 192, 5, 1, 2, 1),
    "lenet_c1": ((64, 1, 32, 32), 6, 5, 1, 0, 1),
    "lenet_c3": ((64, 6, 14, 14), 16, 5, 1, 0, 1),
    "cifar_3x3": ((64, 32, 16, 16), 32, 3, 1, 1, 1),
    "depthwise_3x3": ((8, 128, 56, 56), 128, 3, 1, 1, 128),
}
POOL = {  # name: (x shape, kernel, stride, padding)
    "maxpool_3x3s2": ((8, 64, 112, 112), 3, 2, 1),
    "maxpool_2x2": ((64, 6, 28, 28), 2, 2, 0),
}


STAT = "median"
CLOCK = time.perf_counter


def med(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return float(np.min(ts) if STAT == "min" else np.median(ts)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--algo", default="auto")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="min is steadier on a machine shared with other jobs")
    ap.add_argument("--cpu", action="store_true",
                    help="one thread each, timed by the calling thread's CPU time (robust to other jobs' load)")
    a = ap.parse_args()
    global STAT, CLOCK
    STAT = a.stat
    nthreads = 1 if a.cpu else 2
    if a.cpu:
        CLOCK = time.thread_time  # all work runs on the calling thread with one thread
    torch.set_num_threads(nthreads)
    fastconv.set_num_threads(nthreads)
    only = set(a.only.split(",")) - {""}
    rng = np.random.default_rng(0)
    print(f"{'shape':16s} {'torch fwd':>9s} {'fc fwd':>8s} {'ratio':>6s} | {'torch f+b':>9s} {'fc f+b':>8s} {'ratio':>6s}")
    for name, (xs, K, k, s, p, g) in CONV.items():
        if only and name not in only:
            continue
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal((K, xs[1] // g, k, k), dtype=np.float32) * 0.1
        b = rng.standard_normal(K, dtype=np.float32)
        tx, tw, tb = (torch.from_numpy(v).requires_grad_(True) for v in (x, w, b))
        F = torch.nn.functional
        ty = F.conv2d(tx, tw, tb, s, p, 1, g)
        dy = torch.randn_like(ty)
        t_f = med(torch.no_grad()(lambda: F.conv2d(tx, tw, tb, s, p, 1, g)), a.reps)  # as the bench suite: no autograd graph

        def t_fb():
            y = F.conv2d(tx, tw, tb, s, p, 1, g)
            torch.autograd.grad(y, (tx, tw, tb), dy)

        t_b = med(t_fb, a.reps)
        dyn = dy.numpy()
        algo = a.algo
        f_f = med(lambda: CV.conv2d_forward(x, w, b, s, p, 1, g, algo=algo), a.reps)

        def f_fb():
            CV.conv2d_forward(x, w, b, s, p, 1, g, algo=algo)
            CV.conv2d_backward_input(dyn, w, xs, s, p, 1, g)
            CV.conv2d_backward_weight(dyn, x, w.shape, s, p, 1, g)
            CV.conv2d_backward_bias(dyn)

        f_b = med(f_fb, a.reps)
        print(f"{name:16s} {t_f:9.2f} {f_f:8.2f} {t_f / f_f:6.2f} | {t_b:9.2f} {f_b:8.2f} {t_b / f_b:6.2f}", flush=True)
    for name, (xs, k, s, p) in POOL.items():
        if PL is None or (only and name not in only):
            continue
        x = rng.standard_normal(xs, dtype=np.float32)
        tx = torch.from_numpy(x)
        t_f = med(lambda: torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True), a.reps)
        f_f = med(lambda: PL.max_pool2d_forward(x, k, s, p, 1, False), a.reps)
        print(f"{name:16s} {t_f:9.2f} {f_f:8.2f} {t_f / f_f:6.2f}", flush=True)


if __name__ == "__main__":
    main()
