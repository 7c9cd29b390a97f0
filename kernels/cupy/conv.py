"""conv2d on the GPU: implicit GEMM (conv.cu), TF32 tensor cores (conv_tf32.cu: only
with ``USE_TF32_KERNEL`` set, it is slower than FP32 as it stands) and direct
depthwise kernels (conv_dw.cu).

float32 and float64.  Backward-weight is deterministic: the N*P*Q reduction is
split over blocks into a workspace (bounded by ``config.workspace_bytes``)
and summed in a fixed order; no float atomics anywhere.
Extra keyword beyond the contract: ``conv2d_forward(..., activation=None|'relu')``
fuses a ReLU into the epilogue (the bias is always fused).
"""
import cupy
import numpy as np

from .. import _checks as C
from . import _module as M

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]

_BK = 8
_CFG_BIG = (128, 128, 8, 8)
_CFG_SMALL = (64, 64, 4, 4)
_CFG_M32 = (32, 128, 4, 4)  # GEMMs with <= 32 rows (LeNet-sized layers): a 64-row tile would idle half or more
_INT_MAX = 2**31 - 1
# The TF32 WMMA kernel (conv_tf32.cu) measured SLOWER than the FP32 SIMT kernel on an
# H200 (ResNet res3 3x3 forward 0.782 vs 0.738 ms; cuDNN TF32 0.139 ms): its tile
# feeds one 16x16x8 MMA step per __syncthreads through the scalar im2col loader.  So
# allow_tf32 keeps the FP32 kernel until a faster tensor-core path exists; set this
# to True to run the WMMA kernel anyway (the GPU tests do, to keep it correct).
USE_TF32_KERNEL = False


def _config():
    from fastconv import config  # lazily: fastconv imports kernels first

    return config


def _gemm_name(dtype, cfg, mode):
    return "conv_gemm<%s,%d,%d,%d,%d,%d>" % ((M.ctype(dtype),) + cfg + (mode,))


def kernel_names():
    """Every (file, name expression, wmma) this module may compile (for the compile test)."""
    out = []
    for t in ("float", "double"):
        cfgs = (_CFG_BIG, _CFG_SMALL, _CFG_M32) if t == "float" else (_CFG_SMALL, _CFG_M32)
        for cfg in cfgs:
            for mode in (0, 1, 2):
                out.append(("conv.cu", "conv_gemm<%s,%d,%d,%d,%d,%d>" % ((t,) + cfg + (mode,)), False))
        out += [("conv.cu", f"sum_splits<{t}>", False), ("conv.cu", f"bias_grad<{t}>", False)]
        out += [("conv_dw.cu", f"{k}<{t}>", False) for k in ("dw_fwd", "dw_bwd_input", "dw_bwd_weight")]
        out += [("conv_dw.cu", f"dw_fwd_tile<{t},{ks},{st}>", False) for ks in _DW_KS for st in (1, 2)]
        out += [("conv_dw.cu", f"dw_bwd_weight_tile<{t},{ks}>", False) for ks in _DW_KS]
    out.append(("conv_tf32.cu", "conv_fwd_tf32", True))
    return out


_TAPS = {}
_DW_KS = (3, 5)  # square depthwise filter sizes with tiled kernels
_DW_TILE = 32    # output tile edge of dw_fwd_tile


def _dw_tiled_fwd(x, w, b, y, C, H, W, K, P, Q, st, pad, flip, act):
    """Launch dw_fwd_tile when it applies (square 3x3/5x5 filter, dilation 1 and stride
    1 or 2 checked by the caller); False when the grid limits or a plane filling under
    40% of its tiles rule it out."""
    N, KS = x.shape[0], w.shape[2]
    tiles = -(-P // _DW_TILE) * -(-Q // _DW_TILE)
    if N * K > _INT_MAX or tiles > 65535 or P * Q > _INT_MAX:
        return False
    if P * Q < 0.4 * tiles * _DW_TILE * _DW_TILE:
        return False  # small planes (e.g. 14x14) would idle most of a 32x32 tile: direct kernel
    fn = M.function("conv_dw.cu", f"dw_fwd_tile<{M.ctype(x.dtype)},{KS},{st}>")
    args = (x, w, M.ptr_or_null(b), y) + tuple(M.i32(v) for v in (C, H, W, K, P, Q, pad[0], pad[1], flip)) + (act,)
    M.launch(fn, (N * K, tiles), M.THREADS, args)
    return True


def _dw_square(w_shape, dilation):
    return w_shape[2] == w_shape[3] and w_shape[2] in _DW_KS and tuple(dilation) == (1, 1)


def _tap_table(Cg, R, S, H, W, dh, dw):
    """int32 (Cg*R*S, 4) rows (c*H*W + r*dh*W + s*dw, r*dh, s*dw, 0): the forward im2col
    loader reads one row per reduction index instead of dividing by R*S and S.  Cached."""
    key = (Cg, R, S, H, W, dh, dw)
    t = _TAPS.get(key)
    if t is None:
        kk = np.arange(Cg * R * S, dtype=np.int64)
        c, rs = kk // (R * S), kk % (R * S)
        rd, sd = (rs // S) * dh, (rs % S) * dw
        host = np.stack([c * H * W + rd * W + sd, rd, sd, np.zeros_like(kk)], axis=1).astype(np.int32)
        t = _TAPS[key] = cupy.asarray(np.ascontiguousarray(host))
    return t


def _phase_taps(a, sh, ph, R, dh):
    """[(r, dp)] for the filter rows that land on input rows h = a + sh*i: dy row i + dp."""
    return [(r, (a + ph - r * dh) // sh) for r in range(R) if (a + ph - r * dh) % sh == 0]


def _phase_table(Kg, Cg, R, S, P, Q, sh, sw, ph, pw, dh, dw, a, b):
    """Backward-input stride phase (a, b): (int32 (Kg*T, 4) rows (k*P*Q + dp*Q + dq, dp, dq,
    k*Cg*R*S + r*S + s) over k then the T taps landing on it, T).  T = 0 gives one zero row
    (the kernel then writes zeros).  Cached."""
    key = ("phase", Kg, Cg, R, S, P, Q, sh, sw, ph, pw, dh, dw, a, b)
    hit = _TAPS.get(key)
    if hit is None:
        taps = [(r, dp, s, dq) for r, dp in _phase_taps(a, sh, ph, R, dh) for s, dq in _phase_taps(b, sw, pw, S, dw)]
        T = len(taps)
        if T == 0:
            host = np.zeros((1, 4), dtype=np.int32)
        else:
            t = np.asarray(taps, dtype=np.int64)
            k = np.repeat(np.arange(Kg, dtype=np.int64), T)
            r, dp, s, dq = (np.tile(t[:, i], Kg) for i in range(4))
            host = np.stack([k * P * Q + dp * Q + dq, dp, dq, k * Cg * R * S + r * S + s], axis=1).astype(np.int32)
        hit = _TAPS[key] = (cupy.asarray(np.ascontiguousarray(host)), T)
    return hit


def _pick(dtype, m_dim, n_dim, groups, split=False):
    """Tile configuration for a GEMM of m_dim x n_dim per group.  ``split``: the reduction
    is split over blocks (backward-weight), so big tiles never starve the grid."""
    if m_dim <= 32:
        return _CFG_M32
    if dtype != cupy.float32 or m_dim <= 64:
        return _CFG_SMALL
    if split:
        return _CFG_BIG if n_dim > 64 else _CFG_SMALL
    blocks = -(-m_dim // 128) * -(-n_dim // 128) * groups
    return _CFG_BIG if blocks >= M.sm_count() else _CFG_SMALL


def _geo_args(x_shape, w_shape, stride, padding, dilation, groups, PQ):
    N, Cc, H, W = x_shape
    K, _, R, S = w_shape
    P, Q = PQ
    vals = (N, Cc, H, W, K, R, S, P, Q, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])
    return tuple(M.i32(v) for v in vals)


def _check_int_range(op, *sizes):
    for s in sizes:
        if s > _INT_MAX:
            raise ValueError(f"{op}: problem too large for 32-bit GEMM indices (a GEMM dimension is {s})")


def _depthwise(x_shape, w_shape, groups):
    return groups > 1 and groups == x_shape[1] and w_shape[1] == 1


def _activation(op, activation):
    C.choice(op, "activation", activation, (None, "relu"))
    return M.i32(1 if activation == "relu" else 0)


def conv2d_forward(x, w, b, stride, padding, dilation, groups, activation=None):
    """y = conv(x, w) + b (optionally ReLU'd); x (N, C, H, W), w (K, C/groups, R, S)."""
    op = "conv2d_forward"
    x = C.array(op, "x", x, ndim=4, device="cuda")
    w = C.array(op, "w", w, ndim=4, device="cuda")
    b = C.array(op, "b", b, ndim=1, allow_none=True, device="cuda")
    C.same_dtype(op, x=x, w=w, b=b)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x.shape, w.shape, stride, padding, dilation, groups
    )
    if b is not None and b.shape[0] != K:
        raise ValueError(f"{op}: bias 'b' shape {tuple(b.shape)} does not match K={K} output channels")
    act = _activation(op, activation)
    y = cupy.empty((N, K, P, Q), dtype=x.dtype)
    if N == 0:
        return y
    Cc, R, S = x.shape[1], w.shape[2], w.shape[3]
    geo = _geo_args(x.shape, w.shape, stride, padding, dilation, groups, (P, Q))
    bias = M.ptr_or_null(b)
    if _depthwise(x.shape, w.shape, groups):
        if (_dw_square(w.shape, dilation) and stride[0] == stride[1] and stride[0] in (1, 2)
                and _dw_tiled_fwd(x, w, b, y, Cc, x.shape[2], x.shape[3], K, P, Q, stride[0], padding, 0, act)):
            return y
        fn = M.function("conv_dw.cu", f"dw_fwd<{M.ctype(x.dtype)}>")
        M.launch(fn, M.blocks_for(y.size), M.THREADS, (x, w, bias, y) + geo + (act,))
        return y
    Kg, CRS, NPQ = K // groups, (Cc // groups) * R * S, N * P * Q
    _check_int_range(op, NPQ, CRS, x.size // max(N, 1), y.size // max(N, 1))
    if groups > 65535:
        raise ValueError(f"{op}: groups={groups} exceeds the grid limit 65535 (non-depthwise)")
    if USE_TF32_KERNEL and x.dtype == cupy.float32 and _config().allow_tf32 and M.compute_capability() >= 80:
        fn = M.function("conv_tf32.cu", "conv_fwd_tf32", wmma=True)
        grid = (-(-NPQ // 128), -(-Kg // 128), groups)
        taps = _tap_table(Cc // groups, R, S, x.shape[2], x.shape[3], dilation[0], dilation[1])
        M.launch(fn, grid, M.THREADS, (w, x, bias, taps, y) + geo + (M.i32(groups), act))
        return y
    cfg = _pick(x.dtype, Kg, NPQ, groups)
    fn = M.function("conv.cu", _gemm_name(x.dtype, cfg, 0))
    grid = (-(-NPQ // cfg[1]), -(-Kg // cfg[0]), groups)
    taps = _tap_table(Cc // groups, R, S, x.shape[2], x.shape[3], dilation[0], dilation[1])
    M.launch(fn, grid, M.THREADS, (w, x, bias, taps, y) + geo + (M.i32(groups), M.i32(0), act))
    return y


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups):
    """dx (x_shape) = transposed convolution of dy with w (gather: no atomics).

    One implicit GEMM per stride phase (a, b) (pixels a + sh*i, b + sw*j) over only the
    filter taps that land on it, so stride 2 gathers no zero taps."""
    op = "conv2d_backward_input"
    dy = C.array(op, "dy", dy, ndim=4, device="cuda")
    w = C.array(op, "w", w, ndim=4, device="cuda")
    C.same_dtype(op, dy=dy, w=w)
    x_shape = _shape4(op, "x_shape", x_shape)
    stride, padding, dilation, groups, out_shape = C.conv2d_geometry(
        op, x_shape, w.shape, stride, padding, dilation, groups
    )
    _check_dy(op, dy, out_shape)
    dx = cupy.empty(x_shape, dtype=dy.dtype)
    N, Cc, H, W = x_shape
    if N == 0:
        return dx
    P, Q = out_shape[2], out_shape[3]
    geo = _geo_args(x_shape, w.shape, stride, padding, dilation, groups, (P, Q))
    if _depthwise(x_shape, w.shape, groups):
        KS = w.shape[2]
        # stride 1, multiplier 1: dx = dy correlated with the flipped filter, padding KS-1-p
        if (_dw_square(w.shape, dilation) and tuple(stride) == (1, 1) and w.shape[0] == Cc
                and _dw_tiled_fwd(dy, w, None, dx, Cc, P, Q, Cc, H, W, 1,
                                  (KS - 1 - padding[0], KS - 1 - padding[1]), 1, M.i32(0))):
            return dx
        fn = M.function("conv_dw.cu", f"dw_bwd_input<{M.ctype(dy.dtype)}>")
        M.launch(fn, M.blocks_for(dx.size), M.THREADS, (dy, w, dx) + geo)
        return dx
    Cg, KRS, NHW = Cc // groups, (w.shape[0] // groups) * w.shape[2] * w.shape[3], N * H * W
    _check_int_range(op, NHW, KRS, dx.size // N, dy.size // N)
    if groups > 65535:
        raise ValueError(f"{op}: groups={groups} exceeds the grid limit 65535 (non-depthwise)")
    Kg, R, S = w.shape[0] // groups, w.shape[2], w.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    # table entries k*P*Q + dp*Q + dq and k*Cg*R*S + r*S + s are int32
    _check_int_range(op, Kg * P * Q + (abs(ph) + R * dh + 2) * Q + S * dw + pw, Kg * Cg * R * S)
    null = M.ptr_or_null(None)
    for a in range(min(sh, H)):
        for b in range(min(sw, W)):
            # one GEMM per stride phase over only the taps that land on it
            tab, T = _phase_table(Kg, Cg, R, S, P, Q, sh, sw, ph, pw, dh, dw, a, b)
            ncols = N * (-(-(H - a) // sh)) * (-(-(W - b) // sw))
            cfg = _pick(dy.dtype, Cg, ncols, groups)
            fn = M.function("conv.cu", _gemm_name(dy.dtype, cfg, 1))
            grid = (-(-ncols // cfg[1]), -(-Cg // cfg[0]), groups)
            M.launch(fn, grid, M.THREADS, (w, dy, null, tab, dx) + geo + (M.i32(groups), M.i32(T), M.i32(a * sw + b)))
    return dx


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    """dw (w_shape) = correlation of x with dy, reduced over N, P, Q in a fixed order."""
    op = "conv2d_backward_weight"
    dy = C.array(op, "dy", dy, ndim=4, device="cuda")
    x = C.array(op, "x", x, ndim=4, device="cuda")
    C.same_dtype(op, dy=dy, x=x)
    w_shape = _shape4(op, "w_shape", w_shape)
    stride, padding, dilation, groups, out_shape = C.conv2d_geometry(
        op, x.shape, w_shape, stride, padding, dilation, groups
    )
    _check_dy(op, dy, out_shape)
    N = x.shape[0]
    if N == 0:
        return cupy.zeros(w_shape, dtype=x.dtype)
    dw = cupy.empty(w_shape, dtype=x.dtype)
    P, Q = out_shape[2], out_shape[3]
    geo = _geo_args(x.shape, w_shape, stride, padding, dilation, groups, (P, Q))
    if _depthwise(x.shape, w_shape, groups):
        KS, K = w_shape[2], w_shape[0]
        if w_shape[2] == w_shape[3] and KS in _DW_KS and K <= 65535 and P * Q <= _INT_MAX:
            # all KS*KS taps of a filter per block, images split over blocks, fixed-order sums
            splits = max(1, min(N, -(-4 * M.sm_count() // K), 65535))
            nper = -(-N // splits)
            splits = -(-N // nper)
            target = dw if splits == 1 else cupy.empty((splits,) + tuple(w_shape), dtype=x.dtype)
            fn = M.function("conv_dw.cu", f"dw_bwd_weight_tile<{M.ctype(x.dtype)},{KS}>")
            M.launch(fn, (K, splits), 256, (dy, x, target) + geo[0:5] + geo[7:15] + (M.i32(nper),))
            if splits > 1:
                fn = M.function("conv.cu", f"sum_splits<{M.ctype(x.dtype)}>")
                M.launch(fn, M.blocks_for(dw.size), M.THREADS, (target, dw, M.i64(dw.size), M.i32(splits)))
            return dw
        fn = M.function("conv_dw.cu", f"dw_bwd_weight<{M.ctype(x.dtype)}>")
        M.launch(fn, dw.size, 256, (dy, x, dw) + geo)
        return dw
    K = w_shape[0]
    Kg, CRS, NPQ = K // groups, w_shape[1] * w_shape[2] * w_shape[3], N * P * Q
    _check_int_range(op, NPQ, CRS, x.size // N, dy.size // N)
    # int32 tap offsets c*H*W + r*dh*W + s*dw in the loader
    _check_int_range(op, w_shape[1] * x.shape[2] * x.shape[3] + w_shape[2] * dilation[0] * x.shape[3] + w_shape[3] * dilation[1])
    cfg = _pick(x.dtype, Kg, CRS, groups, split=True)
    base = -(-Kg // cfg[0]) * -(-CRS // cfg[1]) * groups
    splits = max(1, min(-(-2 * M.sm_count() // base), -(-NPQ // (32 * _BK)), 65535 // groups))
    per_split = K * CRS * x.dtype.itemsize
    splits = max(1, min(splits, _config().workspace_bytes // max(per_split, 1)))
    ksplit = -(-NPQ // splits)
    ksplit = -(-ksplit // _BK) * _BK
    splits = -(-NPQ // ksplit)
    if groups * splits > 65535:
        raise ValueError(f"{op}: groups={groups} exceeds the grid limit 65535 (non-depthwise)")
    fn = M.function("conv.cu", _gemm_name(x.dtype, cfg, 2))
    grid = (-(-CRS // cfg[1]), -(-Kg // cfg[0]), groups * splits)
    target = dw if splits == 1 else cupy.empty((splits,) + tuple(w_shape), dtype=x.dtype)
    null = M.ptr_or_null(None)
    M.launch(fn, grid, M.THREADS, (dy, x, null, null, target) + geo + (M.i32(groups), M.i32(ksplit), M.i32(0)))
    if splits > 1:
        fn = M.function("conv.cu", f"sum_splits<{M.ctype(x.dtype)}>")
        M.launch(fn, M.blocks_for(dw.size), M.THREADS, (target, dw, M.i64(dw.size), M.i32(splits)))
    return dw


def conv2d_backward_bias(dy):
    """db (K,) = dy summed over N, P, Q: blocks per (channel, image chunk), chunks summed
    in a fixed order (deterministic)."""
    op = "conv2d_backward_bias"
    dy = C.array(op, "dy", dy, ndim=4, device="cuda")
    N, K = dy.shape[0], dy.shape[1]
    if N == 0 or dy.size == 0:
        return cupy.zeros((K,), dtype=dy.dtype)
    db = cupy.empty((K,), dtype=dy.dtype)
    if K > _INT_MAX:
        raise ValueError(f"{op}: K={K} exceeds the grid limit")
    splits = max(1, min(N, -(-4 * M.sm_count() // K), 65535))
    nper = -(-N // splits)
    splits = -(-N // nper)
    target = db if splits == 1 else cupy.empty((splits, K), dtype=dy.dtype)
    fn = M.function("conv.cu", f"bias_grad<{M.ctype(dy.dtype)}>")
    M.launch(fn, (K, splits), 256, (dy, target, M.i32(N), M.i32(K), M.i64(dy.shape[2] * dy.shape[3]), M.i32(nper)))
    if splits > 1:
        fn = M.function("conv.cu", f"sum_splits<{M.ctype(dy.dtype)}>")
        M.launch(fn, M.blocks_for(K), M.THREADS, (target, db, M.i64(K), M.i32(splits)))
    return db


def _shape4(op, name, shape):
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{op}: argument '{name}' must be a tuple of 4 ints, got {shape!r}") from None
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"{op}: argument '{name}' must be 4 non-negative ints, got {shape!r}")
    return shape


def _check_dy(op, dy, out_shape):
    if tuple(dy.shape) != tuple(out_shape):
        raise ValueError(f"{op}: 'dy' shape {tuple(dy.shape)} does not match the convolution output {tuple(out_shape)}")
