"""Interleaved PyTorch vs fastconv (Cython) softmax / log_softmax / prelu, forward + backward.

Usage: python bench/cpu_softmax_quick.py [threads=1] [reps=30]
One thread: the calling thread's CPU time (time.thread_time), steady on a shared machine;
more threads: wall clock.  Per case: the median and min of the per-pair ratios torch / ours
(> 1: fastconv faster), the medians of both, the NumPy reference's best of 3, and the ratio
of the best times (steadier than the per-pair ratios for the wall clock on a loaded machine).
torch side: aten's _softmax / _log_softmax + *_backward_data; prelu through autograd
(F.prelu forward + backward, the weight gradient summed as torch does it).
"""
import sys
import time

import torch
import numpy as np
import fastconv
from fastconv import config
from fastconv.kernels import cython as K, reference as R

config.keep_heap()
nt = int(sys.argv[1]) if len(sys.argv) > 1 else 1
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(nt); fastconv.set_num_threads(nt)
clock = time.thread_time if nt == 1 else time.perf_counter
rng = np.random.default_rng(0)

def case_sm(name, shape, axis):
    x = rng.standard_normal(shape).astype(np.float32); dy = rng.standard_normal(shape).astype(np.float32)
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    f, b = getattr(K, name + "_forward"), getattr(K, name + "_backward")
    rf, rb = getattr(R, name + "_forward"), getattr(R, name + "_backward")
    tf = torch._softmax if name == "softmax" else torch._log_softmax
    tb = torch._softmax_backward_data if name == "softmax" else torch._log_softmax_backward_data
    def ours(): y = f(x, axis); b(dy, y, axis)
    def ref(): y = rf(x, axis); rb(dy, y, axis)
    def th(): y = tf(tx, axis, False); tb(tdy, y, axis, torch.float32)
    return ours, th, ref

def case_prelu(shape):
    x = rng.standard_normal(shape).astype(np.float32); dy = rng.standard_normal(shape).astype(np.float32)
    w = rng.uniform(0, 0.3, shape[1]).astype(np.float32)
    tx, tdy, tw = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(w)
    def ours(): K.prelu_forward(x, w); K.prelu_backward(dy, x, w)
    def ref(): R.prelu_forward(x, w); R.prelu_backward(dy, x, w)
    tx.requires_grad_(True); tw.requires_grad_(True)
    def th():  # autograd: _prelu_kernel forward, _prelu_kernel_backward + the weight-grad sum
        tx.grad = tw.grad = None
        torch.nn.functional.prelu(tx, tw).backward(tdy)
    return ours, th, ref

def t(fn):
    t0 = clock(); fn(); return clock() - t0

cases = []
for name in ("softmax", "log_softmax"):
    cases += [(f"{name} (256,1000) -1", case_sm(name, (256, 1000), -1)),
              (f"{name} (16384,256) -1", case_sm(name, (8 * 8 * 256, 256), -1)),
              (f"{name} (64,10,32,32) 1", case_sm(name, (64, 10, 32, 32), 1))]
cases.append(("prelu (8,64,56,56)", case_prelu((8, 64, 56, 56))))
print(f"threads={nt} reps={reps} clock={'thread_time' if nt == 1 else 'wall'}")
for label, (ours, th, ref) in cases:
    for _ in range(3): ours(); th()
    ratios, to, tt = [], [], []
    for _ in range(reps):
        a = t(ours); c = t(th); ratios.append(c / a); to.append(a); tt.append(c)
    tr = min(t(ref) for _ in range(3))
    print(f"{label:28s} ratio med {np.median(ratios):5.2f} min {min(ratios):5.2f} | ours {np.median(to)*1e3:7.3f} ms torch {np.median(tt)*1e3:7.3f} ms ref {tr*1e3:7.3f} ms (torch/ref {np.median(tt)/tr:4.2f}) | min/min {min(tt)/min(to):5.2f}")
