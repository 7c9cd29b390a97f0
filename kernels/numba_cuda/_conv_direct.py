"""Direct convolution kernels: depthwise (groups == C) forward / backward and the bias gradient.

Depthwise: one thread per output (or input-gradient) element, planes on grid
y so each element costs one integer division; the weight gradient is one
block per filter tap reducing over (n, p, q) in shared memory.  The bias
gradient is one block per output channel.  All deterministic (no atomics).
Used by ``conv.py``.
"""
from numba import cuda

from ._launch import THREADS, block_sum, jit

__all__ = []  # helpers only; conv.py exposes the public functions


@jit
def _dw_fwd(x, w, b, y, geo, zero):
    N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G, has_bias = geo
    mult = K // C
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * K, cuda.gridDim.y):
        n = plane // K
        k = plane - n * K
        xb = (n * C + k // mult) * H * W
        wb = k * R * S
        for e in range(cuda.grid(1), P * Q, cuda.gridsize(1)):
            p = e // Q
            q = e - p * Q
            i = plane * P * Q + e
            acc = zero
            if has_bias:
                acc = b[k]
            for r in range(R):
                hh = p * sh - ph + r * dh
                if hh >= 0 and hh < H:
                    for s in range(S):
                        ww = q * sw - pw + s * dw
                        if ww >= 0 and ww < W:
                            acc += x[xb + hh * W + ww] * w[wb + r * S + s]
            y[i] = acc


@jit
def _dw_bwd_input(dy, w, dx, geo, zero):
    N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G, unused = geo
    mult = K // C
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * C, cuda.gridDim.y):
        n = plane // C
        c = plane - n * C
        for e in range(cuda.grid(1), H * W, cuda.gridsize(1)):
            h = e // W
            x_w = e - h * W
            i = plane * H * W + e
            acc = zero
            for j in range(mult):
                k = c * mult + j
                yb = (n * K + k) * P * Q
                for r in range(R):
                    th = h + ph - r * dh
                    if th >= 0:
                        p = th if sh == 1 else th // sh
                        if p * sh == th and p < P:
                            for s in range(S):
                                tw = x_w + pw - s * dw
                                if tw >= 0:
                                    q = tw if sw == 1 else tw // sw
                                    if q * sw == tw and q < Q:
                                        acc += dy[yb + p * Q + q] * w[(k * R + r) * S + s]
            dx[i] = acc


@jit
def _dw_bwd_weight(dy, x, dwt, geo, zero):
    """One block per weight tap (k, r, s): block reduction over (n, p, q)."""
    N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G, unused = geo
    mult = K // C
    sm = cuda.shared.array(THREADS, dtype=dwt.dtype)
    tap = cuda.blockIdx.x
    k = tap // (R * S)
    rs = tap - k * R * S
    r = rs // S
    s = rs - r * S
    c = k // mult
    PQ = P * Q
    acc = zero
    for i in range(cuda.threadIdx.x, N * PQ, THREADS):
        n = i // PQ
        pq = i - n * PQ
        p = pq // Q
        q = pq - p * Q
        hh = p * sh - ph + r * dh
        ww = q * sw - pw + s * dw
        if hh >= 0 and hh < H and ww >= 0 and ww < W:
            acc += dy[(n * K + k) * PQ + pq] * x[((n * C + c) * H + hh) * W + ww]
    total = block_sum(sm, acc)
    if cuda.threadIdx.x == 0:
        dwt[tap] = total


@jit
def _bias_grad(dy, db, N, K, PQ, zero):
    """One block per output channel: db[k] = sum over (n, p, q) of dy."""
    sm = cuda.shared.array(THREADS, dtype=db.dtype)
    k = cuda.blockIdx.x
    acc = zero
    for i in range(cuda.threadIdx.x, N * PQ, THREADS):
        n = i // PQ
        acc += dy[(n * K + k) * PQ + (i - n * PQ)]
    total = block_sum(sm, acc)
    if cuda.threadIdx.x == 0:
        db[k] = total
