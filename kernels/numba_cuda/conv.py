"""2-D convolution as implicit GEMM with shared-memory tiles (plus direct depthwise kernels).

Per group g the three passes are GEMMs whose operands are gathered on the
fly from the NCHW / OIHW arrays (no im2col buffer):

    forward          y[k, (n,p,q)]   = sum_(c,r,s)  w[k, (c,r,s)] * x_col[(c,r,s), (n,p,q)]
    backward_input   dx[c, (n,h,w)]  = sum_(k,r,s)  w[k, c, r, s] * dy[n, k, (h+ph-r*dh)/sh, ...]
    backward_weight  dw[k, (c,r,s)]  = sum_(n,p,q)  dy[k, (n,p,q)] * x_col[(c,r,s), (n,p,q)]

Each block computes a BM x BN = 128 x 128 output tile (8 x 8 in the simulator)
with 16 x 16 threads, each thread an 8 x 8 register block (rows ty + 16*i,
columns tx + 16*j, so stores and B-tile reads are coalesced / bank-conflict
free; see _gemm_tile.py).  The reduction runs in TK = 16 slices staged in
shared memory, software-pipelined: the global loads of the next slice go to
registers before the current slice's FMAs.  (float32 on sm_90: 180-240
registers, no spills, so one 256-thread block per SM; float64 spills a little.)
When the output tiles alone would not fill the GPU (small batch, deep layers;
always for backward_weight, whose reduction N*P*Q is long) the reduction is
split over more blocks (split-K) and the partial tiles are summed in a fixed
order afterwards: deterministic, no float atomics.  backward_input with
stride > 1 runs one GEMM per stride phase of the dx pixels over only the taps
that land on it.  Depthwise convolution (groups == C) uses direct kernels
instead (one thread per output element), where a GEMM tile would be 1 row
tall.  The bias gradient is a per-channel block reduction.
"""
from numba import cuda, int64

from .. import _checks as C
from ..reference.conv import _check_dy, _shape4
from ._conv_direct import _bias_grad, _dw_bwd_input, _dw_bwd_weight, _dw_fwd
from ._gemm_tile import (A_LOADS, A_ROWSTEP, B_KSTEP, B_LOADS, BM, BN, BT, GEMM_JIT, MIN_SPLIT_TILES, SHAPE_A,
                         SHAPE_B, TARGET_BLOCKS, TK, TM, TN, _bwd_input_epilogue, _bwd_weight_epilogue, _fwd_epilogue,
                         _sum_splits, tile_fma, zero_acc)

A_ISTEP = A_ROWSTEP // BT  # tile-row groups between one thread's A loads
from ._launch import DEVICE, THREADS, Launch, blocks, cdiv, grid2, jit

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]

@jit(**GEMM_JIT)
def _fwd_gemm(x, w, b, y, geo, tab, chunk):
    """tab (3, C/groups*R*S): x offset (c*H + r*dh)*W + s*dw, r*dh, s*dw of each reduction index.

    Split-K: grid z = groups * splits; split s sums reduction indices
    [s*chunk, (s+1)*chunk) into y[s] (y then holds splits copies of the output)."""
    N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G, has_bias = geo
    Cg = C // G
    Kg = K // G
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * BT + tx
    m0 = cuda.blockIdx.x * BN
    k0 = cuda.blockIdx.y * BM
    g = cuda.blockIdx.z % G
    split = cuda.blockIdx.z // G
    PQ = P * Q
    M = N * PQ
    RS = R * S
    CRS = Cg * RS
    kbeg = split * chunk
    kend = min(CRS, kbeg + chunk)
    ysplit = split * N * K * PQ
    As = cuda.shared.array(SHAPE_A, dtype=y.dtype)
    Bs = cuda.shared.array(SHAPE_B, dtype=y.dtype)
    acc = cuda.local.array((TM, TN), dtype=y.dtype)
    zero_acc(acc)
    # B column of this thread = output pixel m, fixed over the reduction
    bcol = tid % BN
    bk = tid // BN
    bj = bcol // BT  # Bs[kk, bj, bt] is tile column bcol
    bt = bcol - bj * BT
    m = m0 + bcol
    n = m // PQ
    pq = m - n * PQ
    p = pq // Q
    q = pq - p * Q
    h0 = p * sh - ph
    w0 = q * sw - pw
    xpix = (n * C + g * Cg) * H * W + h0 * W + w0
    # A (weights, reduction index fastest across threads: coalesced)
    akk = tid % TK
    arow = tid // TK
    ai = arow // BT  # As[kk, ai + A_ISTEP*l, at] is tile row arow + A_ROWSTEP*l
    at = arow - ai * BT
    wbase = (g * Kg + k0) * CRS
    # software pipelining: the global loads of slice i + 1 go to registers (ra, rb)
    # before slice i is multiplied, so their latency hides behind the FMAs
    ra = cuda.local.array(A_LOADS, dtype=y.dtype)
    rb = cuda.local.array(B_LOADS, dtype=y.dtype)
    nslices = (kend - kbeg + TK - 1) // TK
    for it in range(nslices + 1):
        if it > 0:
            for l in range(A_LOADS):
                As[akk, ai + l * A_ISTEP, at] = ra[l]
            for l in range(B_LOADS):
                Bs[bk + l * B_KSTEP, bj, bt] = rb[l]
            cuda.syncthreads()
        if it < nslices:
            kt = kbeg + it * TK
            kr = kt + akk
            for l in range(A_LOADS):
                row = arow + l * A_ROWSTEP
                ra[l] = 0
                if kr < kend and k0 + row < Kg:
                    ra[l] = w[wbase + row * CRS + kr]
            for l in range(B_LOADS):
                kr2 = kt + bk + l * B_KSTEP
                rb[l] = 0
                if m < M and kr2 < kend:
                    hh = h0 + tab[CRS + kr2]
                    ww = w0 + tab[2 * CRS + kr2]
                    if hh >= 0 and hh < H and ww >= 0 and ww < W:
                        rb[l] = x[xpix + tab[kr2]]
        if it > 0:
            tile_fma(As, Bs, acc, tx, ty)
            cuda.syncthreads()
    _fwd_epilogue(acc, tx, ty, (y, b, m0, k0, M, PQ, K, Kg, g, ysplit, has_bias != 0 and split == 0))


@jit(**GEMM_JIT)
def _bwd_input_gemm(dy, w, dx, geo, tab, chunk, phase):
    """dx pixels of one stride phase: h = a + sh*i, w = b + sw*j (i < Hp, j < Wp).

    tab (4, KRS): the (k, r, s) whose taps land on that phase's pixels
    ((a + ph - r*dh) % sh == 0, likewise s): dy offset k*P*Q, r*dh, s*dw,
    weight offset k*Cg*R*S + r*S + s.  With stride 1 there is one phase and
    every tap; with stride 2 each phase gathers ~1/4 of the taps instead of
    gathering zeros for the rest.  Split-K over (k, r, s) as in _fwd_gemm:
    split s writes dx[s]."""
    N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G, unused = geo
    Cg = C // G
    Kg = K // G
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * BT + tx
    m0 = cuda.blockIdx.x * BN
    c0 = cuda.blockIdx.y * BM
    g = cuda.blockIdx.z % G
    split = cuda.blockIdx.z // G
    a, b, Hp, Wp, KRS = phase
    HW = H * W
    HWp = Hp * Wp
    PQ = P * Q
    M = N * HWp
    RS = R * S
    kbeg = split * chunk
    kend = min(KRS, kbeg + chunk)
    As = cuda.shared.array(SHAPE_A, dtype=dx.dtype)
    Bs = cuda.shared.array(SHAPE_B, dtype=dx.dtype)
    acc = cuda.local.array((TM, TN), dtype=dx.dtype)
    zero_acc(acc)
    bcol = tid % BN
    bk = tid // BN
    bj = bcol // BT
    bt = bcol - bj * BT
    m = m0 + bcol
    n = m // HWp
    hw = m - n * HWp
    hq = hw // Wp
    h = a + sh * hq
    x_w = b + sw * (hw - hq * Wp)
    dybase = (n * K + g * Kg) * PQ
    akk = tid % TK
    arow = tid // TK
    ai = arow // BT
    at = arow - ai * BT
    wgroup = (g * Kg * Cg + c0) * RS
    hp = h + ph
    wp = x_w + pw
    ra = cuda.local.array(A_LOADS, dtype=dx.dtype)  # next slice's loads (see _fwd_gemm)
    rb = cuda.local.array(B_LOADS, dtype=dx.dtype)
    nslices = (kend - kbeg + TK - 1) // TK
    for it in range(nslices + 1):
        if it > 0:
            for l in range(A_LOADS):
                As[akk, ai + l * A_ISTEP, at] = ra[l]
            for l in range(B_LOADS):
                Bs[bk + l * B_KSTEP, bj, bt] = rb[l]
            cuda.syncthreads()
        if it < nslices:
            kt = kbeg + it * TK
            kr = kt + akk
            abase = wgroup
            if kr < kend:
                abase = wgroup + tab[3 * KRS + kr]
            for l in range(A_LOADS):
                row = arow + l * A_ROWSTEP
                ra[l] = 0
                if kr < kend and c0 + row < Cg:
                    ra[l] = w[abase + row * RS]
            for l in range(B_LOADS):
                kr2 = kt + bk + l * B_KSTEP
                rb[l] = 0
                if m < M and kr2 < kend:
                    t = hp - tab[KRS + kr2]
                    u = wp - tab[2 * KRS + kr2]
                    if t >= 0 and u >= 0:
                        # the output pixel whose tap lands here (no division when stride is 1)
                        p = t if sh == 1 else t // sh
                        q = u if sw == 1 else u // sw
                        if p * sh == t and q * sw == u and p < P and q < Q:
                            rb[l] = dy[dybase + tab[kr2] + p * Q + q]
        if it > 0:
            tile_fma(As, Bs, acc, tx, ty)
            cuda.syncthreads()
    _bwd_input_epilogue(acc, tx, ty, (dx, m0, c0, M, HWp, Wp, a, b, sh, sw, W, HW, C, Cg, g, split * N * C * HW))


@jit(**GEMM_JIT)
def _bwd_weight_gemm(dy, x, ws, geo, chunk):
    """Partial dw over one split of the (n, p, q) reduction -> ws[split, g, k, crs]."""
    N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G, unused = geo
    Cg = C // G
    Kg = K // G
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * BT + tx
    j0 = cuda.blockIdx.x * BN
    k0 = cuda.blockIdx.y * BM
    g = cuda.blockIdx.z % G
    split = cuda.blockIdx.z // G
    PQ = P * Q
    M = N * PQ
    RS = R * S
    CRS = Cg * RS
    mbeg = split * chunk
    mend = min(M, mbeg + chunk)
    As = cuda.shared.array(SHAPE_A, dtype=ws.dtype)
    Bs = cuda.shared.array(SHAPE_B, dtype=ws.dtype)
    acc = cuda.local.array((TM, TN), dtype=ws.dtype)
    zero_acc(acc)
    # both tiles load with the reduction index (n, p, q) fastest: coalesced in q
    kkt = tid % TK
    lrow = tid // TK
    li = lrow // BT  # [kk, li + A_ISTEP*l, lt] is tile row / column lrow + A_ROWSTEP*l
    lt = lrow - li * BT
    # this thread's B columns (c, r, s), fixed over the reduction
    xoff = cuda.local.array(B_LOADS, dtype=int64)
    roff = cuda.local.array(B_LOADS, dtype=int64)
    soff = cuda.local.array(B_LOADS, dtype=int64)
    for l in range(B_LOADS):
        col = j0 + lrow + l * A_ROWSTEP
        if col < CRS:
            c = col // RS
            rs = col - c * RS
            r = rs // S
            roff[l] = r * dh - ph
            soff[l] = (rs - r * S) * dw - pw
            xoff[l] = (g * Cg + c) * H * W
        else:
            xoff[l] = -1
    # (n, p, q) of this thread's reduction index, advanced by TK per slice (no division in the loop)
    m = mbeg + kkt
    n = m // PQ
    p = (m - n * PQ) // Q
    q = m - n * PQ - p * Q
    ra = cuda.local.array(A_LOADS, dtype=ws.dtype)  # next slice's loads (see _fwd_gemm)
    rb = cuda.local.array(B_LOADS, dtype=ws.dtype)
    nslices = (mend - mbeg + TK - 1) // TK
    for it in range(nslices + 1):
        if it > 0:
            for l in range(A_LOADS):
                As[kkt, li + l * A_ISTEP, lt] = ra[l]
            for l in range(B_LOADS):
                Bs[kkt, li + l * A_ISTEP, lt] = rb[l]
            cuda.syncthreads()
        if it < nslices:
            inside = mbeg + it * TK + kkt < mend
            dybase = (n * K + g * Kg + k0) * PQ + p * Q + q
            for l in range(A_LOADS):
                row = lrow + l * A_ROWSTEP
                ra[l] = 0
                if inside and k0 + row < Kg:
                    ra[l] = dy[dybase + row * PQ]
            for l in range(B_LOADS):
                rb[l] = 0
                if inside and xoff[l] >= 0:
                    hh = p * sh + roff[l]
                    ww = q * sw + soff[l]
                    if hh >= 0 and hh < H and ww >= 0 and ww < W:
                        rb[l] = x[n * C * H * W + xoff[l] + hh * W + ww]
            q += TK
            while q >= Q:
                q -= Q
                p += 1
            while p >= P:
                p -= P
                n += 1
        if it > 0:
            tile_fma(As, Bs, acc, tx, ty)
            cuda.syncthreads()
    _bwd_weight_epilogue(acc, tx, ty, (ws, j0, k0, Kg, CRS, (split * G + g) * Kg))


# ------------------------------------------------------------------- wrappers


def _geo(x_shape, w_shape, P, Q, stride, padding, dilation, groups, has_bias=False):
    N, Cx, H, W = x_shape
    K, _, R, S = w_shape
    return (int(N), int(Cx), int(H), int(W), int(K), int(P), int(Q), int(R), int(S),
            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, int(has_bias))


_tables = {}


def _table(xp, kind, *key):
    """Per-reduction-index offsets (int32), built once per geometry with xp (on the device);
    for "bwd_input" a pair (table, taps)."""
    full = (xp.__name__, kind) + key
    tab = _tables.get(full)
    if tab is None:
        if len(_tables) > 256:
            _tables.clear()
        if kind == "fwd":
            Cg, R, S, H, W, dh, dw = key
            kr = xp.arange(Cg * R * S, dtype=xp.int64)
            c, r, s = kr // (R * S), (kr // S) % R, kr % S
            tab = xp.concatenate([(c * H + r * dh) * W + s * dw, r * dh, s * dw])
        else:  # "bwd_input": the taps of stride phase (a, b)
            Kg, Cg, R, S, PQ, dh, dw, a, b, sh, sw, ph, pw = key
            kr = xp.arange(Kg * R * S, dtype=xp.int64)
            k, rs = kr // (R * S), kr % (R * S)
            keep = ((a + ph - (rs // S) * dh) % sh == 0) & ((b + pw - (rs % S) * dw) % sw == 0)
            if not bool(keep.any()):  # no tap lands on this phase: dx is 0 there (KRS = 0)
                tab = _tables[full] = (xp.zeros(4, dtype=xp.int32), 0)
                return tab
            kr = kr[keep]
            k, rs = kr // (R * S), kr % (R * S)
            tab = xp.concatenate([k * PQ, (rs // S) * dh, (rs % S) * dw, k * Cg * R * S + rs])
        if int(tab.max()) >= 2 ** 31:
            raise ValueError("conv2d: a filter spans more than 2**31 input elements")
        tab = xp.ascontiguousarray(tab.astype(xp.int32))
        if kind != "fwd":  # (table, number of taps)
            tab = (tab, tab.size // 4)
        _tables[full] = tab
    return tab


def _depthwise(x_shape, groups):
    return groups > 1 and groups == x_shape[1]


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/groups, R, S)) + b (K,)."""
    op = "conv2d_forward"
    x = C.array(op, "x", x, ndim=4, device=DEVICE)
    w = C.array(op, "w", w, ndim=4, device=DEVICE)
    b = C.array(op, "b", b, ndim=1, allow_none=True, device=DEVICE)
    C.same_dtype(op, x=x, w=w, b=b)
    C.same_device(op, x=x, w=w, b=b)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x.shape, w.shape, stride, padding, dilation, groups)
    if b is not None and b.shape[0] != K:
        raise ValueError(f"{op}: argument 'b' has shape {tuple(b.shape)}; expected ({K},) for w shape {tuple(w.shape)}")
    L = Launch(x)
    y = L.empty((N, K, P, Q), x.dtype)
    if y.size == 0:
        return y
    geo = _geo(x.shape, w.shape, P, Q, stride, padding, dilation, groups, b is not None)
    bb = L.dev(b if b is not None else L.zeros(1, x.dtype))
    if _depthwise(x.shape, groups):
        _dw_fwd[grid2(P * Q, N * K), THREADS, L.stream](L.dev(x), L.dev(w), bb, L.out(y), geo, x.dtype.type(0))
    else:
        Cg, R, S = w.shape[1:]
        base = (cdiv(N * P * Q, BN), cdiv(K // groups, BM), groups)
        chunk, splits = _split_k(Cg * R * S, base[0] * base[1] * base[2])
        tab = L.dev(_table(L.xp, "fwd", Cg, R, S, x.shape[2], x.shape[3], dilation[0], dilation[1]))
        _split_launch(L, _fwd_gemm, base, splits, y, (L.dev(x), L.dev(w), bb), (geo, tab, chunk))
    return L.done(y)


def conv2d_backward_input(dy, w, x_shape, stride, padding, dilation, groups):
    """dx of ``x_shape``: the transposed convolution of dy with w."""
    op = "conv2d_backward_input"
    dy = C.array(op, "dy", dy, ndim=4, device=DEVICE)
    w = C.array(op, "w", w, ndim=4, device=DEVICE)
    C.same_dtype(op, dy=dy, w=w)
    C.same_device(op, dy=dy, w=w)
    x_shape = _shape4(op, "x_shape", x_shape)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x_shape, w.shape, stride, padding, dilation, groups)
    _check_dy(op, dy, (N, K, P, Q))
    L = Launch(dy)
    dx = L.empty(x_shape, dy.dtype)
    if dx.size == 0:
        return dx
    geo = _geo(x_shape, w.shape, P, Q, stride, padding, dilation, groups)
    if _depthwise(x_shape, groups):
        _dw_bwd_input[grid2(x_shape[2] * x_shape[3], x_shape[0] * x_shape[1]), THREADS, L.stream](L.dev(dy), L.dev(w), L.out(dx), geo, dy.dtype.type(0))
    else:
        _bwd_input_phases(L, dy, w, dx, geo, stride, padding, dilation, groups)
    return L.done(dx)


def _bwd_input_phases(L, dy, w, dx, geo, stride, padding, dilation, groups):
    """One GEMM launch per stride phase (a, b) of the dx pixels, each over only the
    taps that land on it; all phases share one split count, so that every slice of
    the split-K workspace is written once (a split beyond a phase's taps writes 0)."""
    Nx, Cx, H, W = dx.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    sh, sw = stride
    PQ = dy.shape[2] * dy.shape[3]
    phases = []
    for a in range(min(sh, H)):
        for b in range(min(sw, W)):
            tab = _table(L.xp, "bwd_input", Kg, Cg, R, S, PQ, dilation[0], dilation[1], a, b, sh, sw,
                         padding[0], padding[1])
            tab, krs = tab
            Hp, Wp = cdiv(H - a, sh), cdiv(W - b, sw)
            phases.append((a, b, Hp, Wp, krs, tab, (cdiv(Nx * Hp * Wp, BN), cdiv(Cg, BM))))
    base_blocks = sum(ph[6][0] * ph[6][1] for ph in phases) * groups
    _, splits = _split_k(max(ph[4] for ph in phases) or 1, base_blocks)
    out = L.out(dx if splits == 1 else L.empty((splits,) + tuple(dx.shape), dx.dtype))
    dyd, wd = L.dev(dy), L.dev(w)
    for a, b, Hp, Wp, krs, tab, grid in phases:
        chunk = max(TK, cdiv(cdiv(krs, splits), TK) * TK)
        _bwd_input_gemm[grid + (groups * splits,), (BT, BT), L.stream](
            dyd, wd, out, geo, L.dev(tab), chunk, (a, b, Hp, Wp, krs))
    if splits > 1:
        _sum_splits[blocks(dx.size), THREADS, L.stream](out, L.out(dx), splits)


def _split_launch(L, kernel, base_grid, splits, out, inputs, params):
    """Launch a GEMM kernel over ``base_grid`` x ``splits``: straight into ``out`` when
    there is one split, else into a (splits, ...) workspace summed in split order."""
    grid = base_grid[:2] + (base_grid[2] * splits,)
    if splits == 1:
        kernel[grid, (BT, BT), L.stream](*inputs, L.out(out), *params)
        return
    ws = L.out(L.empty((splits,) + tuple(out.shape), out.dtype))
    kernel[grid, (BT, BT), L.stream](*inputs, ws, *params)
    _sum_splits[blocks(out.size), THREADS, L.stream](ws, L.out(out), splits)


def _split_k(M, base_blocks):
    """(chunk, splits): split a reduction of length M so that base_blocks * splits
    reaches about TARGET_BLOCKS, each split at least MIN_SPLIT_TILES slices long."""
    splits = max(1, min(cdiv(TARGET_BLOCKS, base_blocks), cdiv(M, MIN_SPLIT_TILES * TK)))
    chunk = cdiv(cdiv(M, splits), TK) * TK
    return chunk, cdiv(M, chunk)


def conv2d_backward_weight(dy, x, w_shape, stride, padding, dilation, groups):
    """dw of ``w_shape``: dy correlated with the input columns, summed over the batch."""
    op = "conv2d_backward_weight"
    dy = C.array(op, "dy", dy, ndim=4, device=DEVICE)
    x = C.array(op, "x", x, ndim=4, device=DEVICE)
    C.same_dtype(op, dy=dy, x=x)
    C.same_device(op, dy=dy, x=x)
    w_shape = _shape4(op, "w_shape", w_shape)
    stride, padding, dilation, groups, (N, K, P, Q) = C.conv2d_geometry(
        op, x.shape, w_shape, stride, padding, dilation, groups)
    _check_dy(op, dy, (N, K, P, Q))
    L = Launch(x)
    if N == 0:
        return L.zeros(w_shape, x.dtype)
    dwt = L.empty(w_shape, x.dtype)
    geo = _geo(x.shape, w_shape, P, Q, stride, padding, dilation, groups)
    zero = x.dtype.type(0)
    if _depthwise(x.shape, groups):
        _dw_bwd_weight[dwt.size, THREADS, L.stream](L.dev(dy), L.dev(x), L.out(dwt), geo, zero)
        return L.done(dwt)
    _, Cg, R, S = w_shape
    Kg, CRS, M = K // groups, Cg * R * S, N * P * Q
    base = (cdiv(CRS, BN), cdiv(Kg, BM), groups)
    chunk, splits = _split_k(M, base[0] * base[1] * base[2])
    _split_launch(L, _bwd_weight_gemm, base, splits, dwt, (L.dev(dy), L.dev(x)), (geo, chunk))
    return L.done(dwt)


def conv2d_backward_bias(dy):
    """db (K,) = dy summed over N, P, Q (one block per channel, deterministic)."""
    op = "conv2d_backward_bias"
    dy = C.array(op, "dy", dy, ndim=4, device=DEVICE)
    N, K, P, Q = dy.shape
    L = Launch(dy)
    db = L.zeros((K,), dy.dtype)
    if N * P * Q == 0 or K == 0:
        return db
    _bias_grad[K, THREADS, L.stream](L.dev(dy), L.out(db), N, K, P * Q, dy.dtype.type(0))
    return L.done(db)
