"""CPU timing of the Cython mse / huber / bce_with_logits kernels against PyTorch and the reference.

Usage: python bench/cpu_loss_reg.py [--reps 200] [--threads 1|2] [--cpu] [--shapes 4096x1000,64x10]
                                    [--dtype float32|float64]
Round-robin per rep: torch, fastconv (and the reference every 10th rep); prints the median and
min of the per-pair ratios torch / fastconv (> 1: fastconv faster) and median times.
``--cpu`` times the calling thread's CPU time (use with --threads 1, load-robust); else wall.
Torch's backward: aten's mse_loss_backward / huber_loss_backward directly; bce_with_logits
has no aten backward, so its autograd backward() is timed (the forward runs untimed before it).
Reduction 'mean', float32 unless --dtype.
"""
import argparse
import time

import numpy as np
import torch  # before fastconv (the project's rule for benchmarks)
import torch.nn.functional as TF

import fastconv
from fastconv.kernels.cython import loss as L
from fastconv.kernels.reference import loss as R


def cases(x, t, tx, tt):
    g = np.asarray(1.0, x.dtype)
    tg = torch.tensor(1.0, dtype=tx.dtype)
    txg = tx.clone().requires_grad_(True)

    def t_bce_bwd():
        loss = TF.binary_cross_entropy_with_logits(txg, tt)
        t0 = clock()
        loss.backward()
        return clock() - t0

    return {
        "mse fwd": (lambda: TF.mse_loss(tx, tt), lambda: L.mse_forward(x, t, "mean"),
                    lambda: R.mse_forward(x, t, "mean")),
        "mse bwd": (lambda: torch.ops.aten.mse_loss_backward(tg, tx, tt, 1), lambda: L.mse_backward(g, x, t, "mean"),
                    lambda: R.mse_backward(g, x, t, "mean")),
        "huber fwd": (lambda: TF.huber_loss(tx, tt, delta=1.0), lambda: L.huber_forward(x, t, 1.0, "mean"),
                      lambda: R.huber_forward(x, t, 1.0, "mean")),
        "huber bwd": (lambda: torch.ops.aten.huber_loss_backward(tg, tx, tt, 1, 1.0),
                      lambda: L.huber_backward(g, x, t, 1.0, "mean"), lambda: R.huber_backward(g, x, t, 1.0, "mean")),
        "bce fwd": (lambda: TF.binary_cross_entropy_with_logits(tx, tt),
                    lambda: L.bce_with_logits_forward(x, t, None, None, "mean"),
                    lambda: R.bce_with_logits_forward(x, t, None, None, "mean")),
        "bce bwd": (t_bce_bwd, lambda: L.bce_with_logits_backward(g, x, t, None, None, "mean"),
                    lambda: R.bce_with_logits_backward(g, x, t, None, None, "mean")),
    }


def timed(fn):
    t0 = clock()
    r = fn()
    dt = clock() - t0
    return r if isinstance(r, float) else dt


def main():
    global clock
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--shapes", default="4096x1000,64x10")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    a = ap.parse_args()
    clock = time.thread_time if a.cpu else time.perf_counter
    fastconv.config.keep_heap()
    torch.set_num_threads(a.threads)
    fastconv.set_num_threads(a.threads)
    print(f"{a.dtype} threads={a.threads} clock={'thread cpu' if a.cpu else 'wall'} reps={a.reps}")
    for s in a.shapes.split(","):
        shape = tuple(int(v) for v in s.split("x"))
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(a.dtype)
        t = rng.random(shape).astype(a.dtype)
        tx, tt = torch.from_numpy(x), torch.from_numpy(t)
        reps = a.reps if x.size < 1e6 else max(10, a.reps // 10)
        for name, (ft, ff, fr) in cases(x, t, tx, tt).items():
            for _ in range(3):
                ft(), ff(), fr()
            tt_, tf_, tr_, ratios = [], [], [], []
            for i in range(reps):
                a_, b_ = timed(ft), timed(ff)
                tt_.append(a_)
                tf_.append(b_)
                ratios.append(a_ / b_)
                if i % 10 == 0:
                    tr_.append(timed(fr))
            print(f"{s:>10} {name:<10} torch {np.median(tt_) * 1e6:9.1f} us  fastconv {np.median(tf_) * 1e6:9.1f} us"
                  f"  ref {np.median(tr_) * 1e6:9.1f} us  ratio median {np.median(ratios):5.2f} min {min(ratios):5.2f}"
                  f"  (ref/fastconv {np.median(tr_) / np.median(tf_):5.1f})", flush=True)


clock = time.perf_counter

if __name__ == "__main__":
    main()
