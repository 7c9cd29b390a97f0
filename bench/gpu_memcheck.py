#!/usr/bin/env python
"""Small CuPy conv and pooling calls, for `compute-sanitizer --tool memcheck`:

    compute-sanitizer --tool memcheck python bench/gpu_memcheck.py

Odd, non-square shapes with padding, stride, dilation and groups so that the
kernels' edge handling is exercised; prints one line per call.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402

from fastconv.kernels import cupy as K  # noqa: E402

rng = np.random.default_rng(0)
CASES = [  # N, C, H, W, K, R, S, stride, pad, dil, groups
    (2, 3, 13, 11, 5, 3, 3, 1, 1, 1, 1),
    (3, 8, 17, 9, 16, 5, 3, 2, 2, 1, 2),
    (2, 6, 10, 10, 6, 3, 3, 1, 1, 2, 6),
    (1, 4, 7, 7, 130, 1, 1, 1, 0, 1, 1),
]
for N, C, H, W, Kc, R, S, st, pd, dl, g in CASES:
    x = cp.asarray(rng.standard_normal((N, C, H, W)), dtype=cp.float32)
    w = cp.asarray(rng.standard_normal((Kc, C // g, R, S)), dtype=cp.float32)
    b = cp.asarray(rng.standard_normal(Kc), dtype=cp.float32)
    y = K.conv2d_forward(x, w, b, (st, st), (pd, pd), (dl, dl), g)
    dy = cp.ones_like(y)
    dx = K.conv2d_backward_input(dy, w, x.shape, (st, st), (pd, pd), (dl, dl), g)
    dw = K.conv2d_backward_weight(dy, x, w.shape, (st, st), (pd, pd), (dl, dl), g)
    db = K.conv2d_backward_bias(dy)
    cp.cuda.Device().synchronize()
    print("conv", (N, C, H, W, Kc, R, S, st, pd, dl, g), y.shape, dx.shape, dw.shape, db.shape, flush=True)
for ks, st, pd, ceil in ((3, 2, 1, False), (2, 2, 0, True), (3, 1, 1, False)):
    x = cp.asarray(rng.standard_normal((2, 3, 11, 9)), dtype=cp.float32)
    y, idx = K.max_pool2d_forward(x, ks, st, pd, 1, ceil)
    dx = K.max_pool2d_backward(cp.ones_like(y), idx, x.shape)
    a = K.avg_pool2d_forward(x, ks, st, pd, ceil, True)
    da = K.avg_pool2d_backward(cp.ones_like(a), x.shape, ks, st, pd, ceil, True)
    cp.cuda.Device().synchronize()
    print("pool", (ks, st, pd, ceil), y.shape, dx.shape, a.shape, da.shape, flush=True)
print("memcheck cases done")
