"""GEMM tile configuration and the register-blocked inner product of the conv kernels.

A block of BT x BT threads computes a BM x BN = (BT*TM) x (BT*TN) output tile;
thread (tx, ty) owns rows ty + BT*i (i < TM) and columns tx + BT*j (j < TN),
so the shared-memory reads of a warp are broadcasts (A) or consecutive words
(B): no bank conflicts.  The reduction is staged in TK-deep slices.

On a GPU: 256 threads, 128 x 128 tiles, 8 x 8 register block per thread,
TK = 16 (two 16 x 8 x 17 float tiles: 17 KB of shared memory per block in float32).
The simulator runs every thread as a Python thread, so there the same code
runs with 8 x 8 tiles and 16 threads (FASTCONV_NUMBA_SIM_REAL_TILES=1 keeps
the GPU sizes; slow).

``tile_fma`` and ``zero_acc`` are generated source: with the TM x TN
products written out, every accumulator index is a constant, so the
``cuda.local.array`` accumulators live in registers (8 x 8 nested loops are not
always unrolled by LLVM, and one dynamic index puts the whole array in local
memory);
tests/_numba_cuda_ptx.py checks there is no local memory and no register
spill (ptxas -v).
"""
from numba import cuda

from ._launch import SIM, SMALL, jit

__all__ = []  # helpers only; conv.py exposes the public functions

if SMALL:
    BT, TM, TN, TK = 4, 2, 2, 4
else:
    BT, TM, TN, TK = 16, 8, 8, 16
BM = BT * TM  # tile rows
BN = BT * TN  # tile columns
NT = BT * BT  # threads per block
# shared tiles are (TK, TM, BT + 1): tile row ty + BT*i is [kk, i, ty].  Three
# indices keep each read base + constant offset (numba's int64 index math has
# no no-overflow flags, so LLVM cannot fold a constant out of (kk*BM + ty + BT*i)*4);
# the +1 pads against bank conflicts on the k-fast stores
SHAPE_A = (TK, TM, BT + 1)
SHAPE_B = (TK, TN, BT + 1)
A_LOADS = TK * BM // NT  # elements of the A tile each thread loads per slice
B_LOADS = TK * BN // NT
A_ROWSTEP = NT // TK  # rows between one thread's A loads (k-fast mapping)
B_KSTEP = NT // BN  # reduction rows between one thread's B loads (column-fast mapping)
# split-K aims for this many blocks: 2 waves of the one resident block per SM
# (float32 needs 180-240 registers a thread) on an H100 / H200 (132 SMs)
TARGET_BLOCKS = 4 if SMALL else 264
MIN_SPLIT_TILES = 8  # a split-K slice covers at least this many TK slices
assert NT % TK == 0 and NT % BN == 0 and (TK * BM) % NT == 0 and (TK * BN) % NT == 0
assert A_ROWSTEP % BT == 0  # a thread's tile loads keep their position within a BT group

# kernel options of the GEMM kernels: at most NT threads per block (lets ptxas
# budget registers for the 8 x 8 block; the simulator takes no such option)
GEMM_JIT = {} if SIM else {"launch_bounds": NT}


def _source():
    """tile_fma: the TM x TN products of one reduction step written out (kk stays a loop:
    unrolling it too makes a kernel take ~30 s to compile); zero_acc likewise."""
    lines = ["def tile_fma(As, Bs, acc, tx, ty):",
             f'    """acc[i, j] += sum over kk < {TK} of As[kk, i, ty] * Bs[kk, j, tx]."""',
             f"    for kk in range({TK}):"]
    for i in range(TM):
        lines.append(f"        a{i} = As[kk, {i}, ty]")
    for j in range(TN):
        lines.append(f"        b{j} = Bs[kk, {j}, tx]")
    for i in range(TM):
        for j in range(TN):
            lines.append(f"        acc[{i}, {j}] += a{i} * b{j}")
    lines.append("")
    lines.append("def zero_acc(acc):")
    lines += [f"    acc[{i}, {j}] = 0" for i in range(TM) for j in range(TN)]
    return "\n".join(lines) + "\n"


_ns = {}
exec(compile(_source(), f"<fastconv numba tile_fma {TM}x{TN}x{TK}>", "exec"), _ns)
# generated source: no file for numba's on-disk cache (the kernels that inline it are cached)
tile_fma = jit(_ns["tile_fma"], device=True, cache=False)
zero_acc = jit(_ns["zero_acc"], device=True, cache=False)


def make_epilogue(store):
    """epilogue(acc, tx, ty, p): store(p, ty + BT*i, tx + BT*j, acc[i, j]) for every i, j,
    written out so that every accumulator index is a constant (``store`` is a
    device function doing the bounds checks and the write; ``p`` its parameters)."""
    lines = ["def epilogue(acc, tx, ty, p):"]
    lines += [f"    store(p, ty + {i * BT}, tx + {j * BT}, acc[{i}, {j}])" for j in range(TN) for i in range(TM)]
    ns = {"store": store}
    exec(compile("\n".join(lines) + "\n", "<fastconv numba epilogue>", "exec"), ns)
    return jit(ns["epilogue"], device=True, cache=False)


# ------------------------------------------- conv GEMM epilogues and split-K sum


@jit(device=True)
def _fwd_store(p, row, col, v):
    y, b, m0, k0, M, PQ, K, Kg, g, ysplit, add_bias = p
    mm = m0 + col
    k = k0 + row
    if mm < M and k < Kg:
        nn = mm // PQ  # the same for every row of a column: CSE'd after inlining
        kg = g * Kg + k
        if add_bias:
            v += b[kg]
        y[ysplit + (nn * K + kg) * PQ + (mm - nn * PQ)] = v


@jit(device=True)
def _bwd_input_store(p, row, col, v):
    dx, m0, c0, M, HWp, Wp, a, b, sh, sw, W, HW, C, Cg, g, xsplit = p
    mm = m0 + col
    c = c0 + row
    if mm < M and c < Cg:
        nn = mm // HWp
        r = mm - nn * HWp
        hq = r // Wp
        dx[xsplit + (nn * C + g * Cg + c) * HW + (a + sh * hq) * W + b + sw * (r - hq * Wp)] = v


@jit(device=True)
def _bwd_weight_store(p, row, col, v):
    ws, j0, k0, Kg, CRS, obase = p
    k = k0 + row
    c = j0 + col
    if k < Kg and c < CRS:
        ws[(obase + k) * CRS + c] = v


_fwd_epilogue = make_epilogue(_fwd_store)
_bwd_input_epilogue = make_epilogue(_bwd_input_store)
_bwd_weight_epilogue = make_epilogue(_bwd_weight_store)


@jit
def _sum_splits(ws, out, splits):
    """out[i] = sum over splits of ws[split, i], in split order (deterministic)."""
    total = out.size
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < total:
        v = ws[i]
        for sp in range(1, splits):
            v += ws[sp * total + i]
        out[i] = v
        i += step
