"""2-D pooling: max (with PyTorch's argmax), average, adaptive average; forward and backward.

Forward kernels: one thread per output element (consecutive threads ->
consecutive output columns -> coalesced), grid-stride.  Backward kernels
gather (one thread per input element sums the outputs whose windows cover
it): deterministic, no float atomics.

``max_pool2d_backward(dy, argmax, x_shape)`` does not get the window
geometry, so it first derives, from the argmax indices themselves, which
output rows / columns point at each input row / column (a per-row and
per-column min/max block reduction), then gathers over that range only.
Argmax values outside the input plane contribute nothing.
"""

import numpy as np
from numba import cuda, int32

from .. import _checks as C
from ..reference import pool as RP
from ..reference.conv import _shape4
from ._launch import DEVICE, THREADS, Launch, blocks, grid2, jit

__all__ = [
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
]


# --------------------------------------------------------------------- max pool


@jit
def _max_fwd(x, y, arg, geo, ninf):
    N, Cc, H, W, P, Q, kh, kw, sh, sw, ph, pw, dh, dw = geo
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * Cc, cuda.gridDim.y):
        for e in range(cuda.grid(1), P * Q, cuda.gridsize(1)):
            p = e // Q
            q = e - p * Q
            i = plane * P * Q + e
            xb = plane * H * W
            h0 = p * sh - ph
            w0 = q * sw - pw
            hend = min(h0 + (kh - 1) * dh + 1, H)
            wend = min(w0 + (kw - 1) * dw + 1, W)
            while h0 < 0:
                h0 += dh
            while w0 < 0:
                w0 += dw
            best = ninf
            bidx = h0 * W + w0  # PyTorch: the first in-bounds tap when nothing beats -inf
            # while loops: a range with a run-time step costs an integer division
            hh = h0
            while hh < hend:
                ww = w0
                while ww < wend:
                    v = x[xb + hh * W + ww]
                    if v > best or v != v:  # first max wins; NaN wins (like PyTorch)
                        best = v
                        bidx = hh * W + ww
                    ww += dw
                hh += dh
            y[i] = best
            arg[i] = bidx


@jit
def _argmax_hull(arg, lo, hi, N, Cc, H, W, P, Q):
    """Block b < P: min/max input row of argmax over output row b; block P + b: columns for output column b."""
    smin = cuda.shared.array(THREADS, dtype=int32)
    smax = cuda.shared.array(THREADS, dtype=int32)
    b = cuda.blockIdx.x
    rows = b < P
    HW = H * W
    count = N * Cc * Q if rows else N * Cc * P
    mn = 2147483647
    mx = -1
    for j in range(cuda.threadIdx.x, count, THREADS):
        if rows:
            plane = j // Q
            idx = (plane * P + b) * Q + (j - plane * Q)
        else:
            plane = j // P
            idx = (plane * P + (j - plane * P)) * Q + (b - P)
        a = arg[idx]
        if a >= 0 and a < HW:
            v = a // W if rows else a % W
            mn = min(mn, v)
            mx = max(mx, v)
    t = cuda.threadIdx.x
    smin[t] = mn
    smax[t] = mx
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            smin[t] = min(smin[t], smin[t + s])
            smax[t] = max(smax[t], smax[t + s])
        cuda.syncthreads()
        s //= 2
    if t == 0:
        lo[b] = smin[0]
        hi[b] = smax[0]


@jit
def _invert_hull(lo, hi, first, last, H, W, P, Q):
    """first[h]/last[h]: the range of output rows whose argmax rows cover input row h (then columns)."""
    i = cuda.grid(1)
    if i < H + W:
        rows = i < H
        v = i if rows else i - H
        n_out = P if rows else Q
        off = 0 if rows else P
        f = n_out
        l_ = -1
        for o in range(n_out):
            if lo[off + o] <= v and v <= hi[off + o]:
                f = min(f, o)
                l_ = max(l_, o)
        first[i] = f
        last[i] = l_


@jit
def _max_bwd(dy, arg, dx, first, last, N, Cc, H, W, P, Q, zero):
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * Cc, cuda.gridDim.y):
        for e in range(cuda.grid(1), H * W, cuda.gridsize(1)):
            hh = e // W
            ww = e - hh * W
            i = plane * H * W + e
            me = hh * W + ww
            ob = plane * P * Q
            acc = zero
            for p in range(first[hh], last[hh] + 1):
                for q in range(first[H + ww], last[H + ww] + 1):
                    o = ob + p * Q + q
                    if arg[o] == me:
                        acc += dy[o]
            dx[i] = acc


def max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode):
    """(y, argmax): argmax int64 is the flat index h*W + w into the input plane."""
    op = "max_pool2d_forward"
    x = C.array(op, "x", x, ndim=4, device=DEVICE)
    k, s, pd, dl, (P, Q) = C.pool2d_geometry(op, x.shape, kernel_size, stride, padding, dilation, bool(ceil_mode))
    N, Cc, H, W = x.shape
    L = Launch(x)
    y = L.empty((N, Cc, P, Q), x.dtype)
    arg = L.empty((N, Cc, P, Q), np.int64)
    if y.size == 0:
        return y, arg
    geo = (N, Cc, H, W, P, Q) + k + s + pd + dl
    _max_fwd[grid2(P * Q, N * Cc), THREADS, L.stream](L.dev(x), L.out(y), L.out(arg), geo, x.dtype.type(-np.inf))
    return L.done((y, arg))


def max_pool2d_backward(dy, argmax, x_shape):
    """dx: each input element sums the dy of the outputs whose argmax points at it."""
    op = "max_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4, device=DEVICE)
    argmax = C.array(op, "argmax", argmax, ndim=4, dtypes=(np.dtype(np.int64),), device=DEVICE)
    C.same_device(op, dy=dy, argmax=argmax)
    C.same_shape(op, "dy", dy, "argmax", argmax)
    x_shape = _shape4(op, "x_shape", x_shape)
    N, Cc, H, W = x_shape
    if tuple(dy.shape[:2]) != (N, Cc):
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match x_shape {x_shape} in (N, C)")
    P, Q = dy.shape[2], dy.shape[3]
    L = Launch(dy)
    dx = L.zeros(x_shape, dy.dtype)
    if dx.size == 0 or dy.size == 0:
        return dx
    lo = L.empty(P + Q, np.int32)
    hi = L.empty(P + Q, np.int32)
    first = L.empty(H + W, np.int32)
    last = L.empty(H + W, np.int32)
    darg = L.dev(argmax)
    dlo, dhi, dfirst, dlast = L.out(lo), L.out(hi), L.out(first), L.out(last)
    _argmax_hull[P + Q, THREADS, L.stream](darg, dlo, dhi, N, Cc, H, W, P, Q)
    _invert_hull[blocks(H + W, cap=1 << 30), THREADS, L.stream](dlo, dhi, dfirst, dlast, H, W, P, Q)
    _max_bwd[grid2(H * W, N * Cc), THREADS, L.stream](
        L.dev(dy), darg, L.out(dx), dfirst, dlast, N, Cc, H, W, P, Q, dy.dtype.type(0))
    return L.done(dx)


# --------------------------------------------------------------------- avg pool


@jit(device=True)
def _avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad):
    """PyTorch's divisor for output (p, q): window size clipped to the padded (or the real) input."""
    h0 = p * sh - ph
    w0 = q * sw - pw
    h1 = min(h0 + kh, H + ph)
    w1 = min(w0 + kw, W + pw)
    if include_pad:
        return (h1 - h0) * (w1 - w0)
    return (min(h1, H) - max(h0, 0)) * (min(w1, W) - max(w0, 0))


@jit
def _avg_fwd(x, y, geo, zero):
    N, Cc, H, W, P, Q, kh, kw, sh, sw, ph, pw, include_pad = geo
    div = cuda.local.array(1, dtype=y.dtype)  # divisors in the array's dtype (no float64 math in float32)
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * Cc, cuda.gridDim.y):
        for e in range(cuda.grid(1), P * Q, cuda.gridsize(1)):
            p = e // Q
            q = e - p * Q
            i = plane * P * Q + e
            xb = plane * H * W
            h0 = p * sh - ph
            w0 = q * sw - pw
            acc = zero
            for hh in range(max(h0, 0), min(h0 + kh, H)):
                for ww in range(max(w0, 0), min(w0 + kw, W)):
                    acc += x[xb + hh * W + ww]
            div[0] = _avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad)  # int -> dtype
            y[i] = acc / div[0]


@jit
def _avg_bwd(dy, dx, geo, zero):
    N, Cc, H, W, P, Q, kh, kw, sh, sw, ph, pw, include_pad = geo
    div = cuda.local.array(1, dtype=dx.dtype)
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * Cc, cuda.gridDim.y):
        for e in range(cuda.grid(1), H * W, cuda.gridsize(1)):
            hh = e // W
            ww = e - hh * W
            i = plane * H * W + e
            ob = plane * P * Q
            acc = zero
            # outputs whose window [p*sh - ph, p*sh - ph + kh) contains hh
            p0 = max(0, (hh + ph - kh) // sh + 1)
            p1 = min(P - 1, (hh + ph) // sh)
            q0 = max(0, (ww + pw - kw) // sw + 1)
            q1 = min(Q - 1, (ww + pw) // sw)
            for p in range(p0, p1 + 1):
                for q in range(q0, q1 + 1):
                    div[0] = _avg_divisor(p, q, H, W, kh, kw, sh, sw, ph, pw, include_pad)
                    acc += dy[ob + p * Q + q] / div[0]
            dx[i] = acc


def _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    k, s, pd, _, (P, Q) = C.pool2d_geometry(op, x_shape, kernel_size, stride, padding, 1, bool(ceil_mode))
    N, Cc, H, W = x_shape
    return (N, Cc, H, W, P, Q) + k + s + pd + (int(bool(count_include_pad)),), (P, Q)


def avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    op = "avg_pool2d_forward"
    x = C.array(op, "x", x, ndim=4, device=DEVICE)
    geo, (P, Q) = _avg_geometry(op, x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    L = Launch(x)
    y = L.empty(x.shape[:2] + (P, Q), x.dtype)
    if y.size == 0:
        return y
    _avg_fwd[grid2(P * Q, y.shape[0] * y.shape[1]), THREADS, L.stream](L.dev(x), L.out(y), geo, x.dtype.type(0))
    return L.done(y)


def avg_pool2d_backward(dy, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    op = "avg_pool2d_backward"
    dy = C.array(op, "dy", dy, ndim=4, device=DEVICE)
    x_shape = _shape4(op, "x_shape", x_shape)
    geo, (P, Q) = _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    if tuple(dy.shape) != tuple(x_shape[:2]) + (P, Q):
        raise ValueError(f"{op}: argument 'dy' has shape {tuple(dy.shape)}; this geometry gives "
                         f"{tuple(x_shape[:2]) + (P, Q)}")
    L = Launch(dy)
    dx = L.empty(x_shape, dy.dtype)
    if dx.size == 0:
        return dx
    _avg_bwd[grid2(x_shape[2] * x_shape[3], x_shape[0] * x_shape[1]), THREADS, L.stream](L.dev(dy), L.out(dx), geo, dy.dtype.type(0))
    return L.done(dx)


# ------------------------------------------------------------ adaptive avg pool


@jit
def _adaptive_fwd(x, y, N, Cc, H, W, P, Q, zero):
    div = cuda.local.array(1, dtype=y.dtype)
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * Cc, cuda.gridDim.y):
        for e in range(cuda.grid(1), P * Q, cuda.gridsize(1)):
            p = e // Q
            q = e - p * Q
            i = plane * P * Q + e
            h0 = (p * H) // P
            h1 = ((p + 1) * H + P - 1) // P
            w0 = (q * W) // Q
            w1 = ((q + 1) * W + Q - 1) // Q
            acc = zero
            for hh in range(h0, h1):
                for ww in range(w0, w1):
                    acc += x[(plane * H + hh) * W + ww]
            div[0] = (h1 - h0) * (w1 - w0)
            y[i] = acc / div[0]


@jit
def _adaptive_bwd(dy, dx, N, Cc, H, W, P, Q, zero):
    div = cuda.local.array(1, dtype=dx.dtype)
    # planes along grid y, pixels of a plane along grid x (one division per element)
    for plane in range(cuda.blockIdx.y, N * Cc, cuda.gridDim.y):
        for e in range(cuda.grid(1), H * W, cuda.gridsize(1)):
            hh = e // W
            ww = e - hh * W
            i = plane * H * W + e
            acc = zero
            # bins [floor(p*H/P), ceil((p+1)*H/P)) that contain hh start at p = floor(hh*P/H)
            for p in range((hh * P) // H, min(P, ((hh + 1) * P) // H + 1)):
                h0 = (p * H) // P
                h1 = ((p + 1) * H + P - 1) // P
                if h0 <= hh and hh < h1:
                    for q in range((ww * Q) // W, min(Q, ((ww + 1) * Q) // W + 1)):
                        w0 = (q * W) // Q
                        w1 = ((q + 1) * W + Q - 1) // Q
                        if w0 <= ww and ww < w1:
                            div[0] = (h1 - h0) * (w1 - w0)
                            acc += dy[(plane * P + p) * Q + q] / div[0]
            dx[i] = acc


def adaptive_avg_pool2d_forward(x, output_size):
    x, (P, Q) = RP.check_adaptive_avg_pool2d_forward(x, output_size, device=DEVICE)
    N, Cc, H, W = x.shape
    L = Launch(x)
    y = L.empty((N, Cc, P, Q), x.dtype)
    if y.size == 0:
        return y
    _adaptive_fwd[grid2(P * Q, N * Cc), THREADS, L.stream](L.dev(x), L.out(y), N, Cc, H, W, P, Q, x.dtype.type(0))
    return L.done(y)


def adaptive_avg_pool2d_backward(dy, x_shape):
    dy, x_shape = RP.check_adaptive_avg_pool2d_backward(dy, x_shape, device=DEVICE)
    N, Cc, H, W = x_shape
    P, Q = dy.shape[2], dy.shape[3]
    L = Launch(dy)
    dx = L.empty(x_shape, dy.dtype)
    if dx.size == 0:
        return dx
    _adaptive_bwd[grid2(H * W, N * Cc), THREADS, L.stream](L.dev(dy), L.out(dx), N, Cc, H, W, P, Q, dy.dtype.type(0))
    return L.done(dx)
