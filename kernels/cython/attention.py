"""Scaled dot-product attention on the CPU, blocked over query rows.

Same semantics, validation and conventions as the reference
(``kernels/reference/attention.py``): (out, lse) forward, (dq, dk, dv)
backward with the probabilities rebuilt from lse; fully masked rows give 0
output, lse = -inf and no gradient; NaN propagates.

The difference is memory: the reference materialises the whole (..., L, S)
score tensor (and several temporaries of that size); here the flattened
(batch*heads, L) query rows are processed in blocks so that at most one
block of about ``BLOCK`` score elements (plus one gradient block in the
backward) exists at a time, and each block's mask/softmax/exp passes run in
place while it is still in cache.  The GEMMs go to NumPy's BLAS.  Plain
Python over NumPy, except without a mask, where forward and backward run compiled (``_attn.pyx``:
OpenMP over blocks, SciPy's BLAS single-threaded inside them, the softmax in C): the NumPy
version's matmuls ran on NumPy's own BLAS thread pool, which fights spinning OpenMP threads for
the cores, and its softmax passes were single-threaded (the 8x8x256x64 benchmark forward: 28 ms
against PyTorch's 16).
A broadcast mask whose leading dimensions cannot be merged into one view is
copied once at its broadcast (batch, L, S) size (bool: one byte per score).
Causal blocks skip the key columns that are masked for all their queries;
the forward normalises the (lb, Ev) result instead of the (lb, S) block.

Measured (float32, min of 30 interleaved runs on a shared, loaded machine;
ms, ours / reference / torch; "bwd" torch column is its forward+backward):
  one thread  B2 H4 L=S=512 E64   fwd 9.1 / 15.1 / 7.5    bwd 18.5 / 27.4 / 26.2
              same, causal        fwd 17.1 / 40.4 / 15.6  bwd 28.8 / 66.2 / 27.0
              B8 H4 L=S=128 E32   fwd 1.81 / 1.91 / 1.29  bwd 2.95 / 3.47 / 4.49
  two threads B2 H4 L=S=512 E64   fwd 18.9 / 29.9 / 8.1   bwd 35.6 / 58.7 / 65.4
  (two-thread numbers are dominated by the other tenants' load; BLAS
  threading is OpenBLAS's own, not fastconv.set_num_threads)
"""
import numpy as np

from .. import _checks as C
from ..reference.attention import _check
from ._threads import blas_threads

__all__ = ["scaled_dot_product_attention_forward", "scaled_dot_product_attention_backward"]

try:  # the compiled forward without a mask (OpenMP over blocks, BLAS single-threaded, C softmax)
    from . import _attn
except ImportError:  # pragma: no cover - extension not built
    _attn = None

BLOCK = 1 << 17  # score elements per block: 512 KB in float32, fits L2 with its gradient block


def _prepare(op, q, k, v, mask, scale, is_causal):
    for name, a in (("q", q), ("k", k), ("v", v), ("mask", mask)):
        if a is not None and C._is_array(a) and type(a) is not np.ndarray:
            raise TypeError(f"{op}: argument '{name}' is a {type(a).__name__}; this CPU kernel needs a NumPy array")
    q, k, v, mask, scale = _check(op, q, k, v, mask, scale, is_causal)
    lead = q.shape[:-2]
    L, E = q.shape[-2:]
    S, Ev = v.shape[-2:]
    B = int(np.prod(lead)) if lead else 1
    q3, k3, v3 = q.reshape(B, L, E), k.reshape(B, S, E), v.reshape(B, S, Ev)
    if mask is not None:
        mask = np.broadcast_to(mask, lead + (L, S)).reshape(B, L, S)
    return q3, k3, v3, mask, scale, (lead, B, L, S, E, Ev)


def _blocks(B, L, S):
    lb = max(1, min(L, BLOCK // max(S, 1)))
    bb = max(1, min(B, BLOCK // max(lb * S, 1)))
    for b0 in range(0, B, bb):
        for l0 in range(0, L, lb):
            yield slice(b0, min(B, b0 + bb)), slice(l0, min(L, l0 + lb))


def _block_scores(q3, k3, mask, scale, is_causal, bs, ls):
    """(scores, kend): masked, scaled scores of one block (bb, lb, kend), freshly allocated.

    Causal blocks stop at key kend = ls.stop: every later key is masked for every
    query of the block, so those columns are never computed (about half the work).
    """
    kend = min(k3.shape[1], ls.stop) if is_causal else k3.shape[1]
    s = np.matmul(q3[bs, ls], k3[bs, :kend].transpose(0, 2, 1))
    s *= s.dtype.type(scale)
    ninf = s.dtype.type(-np.inf)
    if is_causal:
        if ls.start + 1 < kend:  # the diagonal lies inside the block
            np.copyto(s, ninf, where=np.arange(kend)[None, :] > np.arange(ls.start, ls.stop)[:, None])
    elif mask is not None:
        m = mask[bs, ls]
        if m.dtype.kind == "b":
            np.copyto(s, ninf, where=~m)
        else:
            s += m
    return s, kend


def scaled_dot_product_attention_forward(q, k, v, mask, scale, is_causal):
    """-> (out (..., L, Ev), lse (..., L))."""
    op = "scaled_dot_product_attention_forward"
    q3, k3, v3, mask, scale, (lead, B, L, S, E, Ev) = _prepare(op, q, k, v, mask, scale, is_causal)
    dt = q3.dtype
    if S == 0:  # no keys at all: every row is fully masked
        return np.zeros(lead + (L, Ev), dt), np.full(lead + (L,), -np.inf, dt)
    if mask is None and _attn is not None and dt in (np.float32, np.float64):  # compiled path
        out, lse = _attn.forward(np.ascontiguousarray(q3), np.ascontiguousarray(k3), np.ascontiguousarray(v3),
                                 float(scale), bool(is_causal))
        return out.reshape(lead + (L, Ev)), lse.reshape(lead + (L,))
    out = np.empty((B, L, Ev), dt)
    lse = np.empty((B, L), dt)
    for bs, ls in _blocks(B, L, S):
        s, kend = _block_scores(q3, k3, mask, scale, is_causal, bs, ls)
        m = s.max(axis=-1, keepdims=True)
        dead_m = np.isneginf(m)
        m[dead_m] = 0  # fully masked rows: shift by 0
        s -= m
        np.exp(s, out=s)
        den = s.sum(axis=-1, keepdims=True)
        dead = den == 0
        den[dead] = 1
        blk_lse = np.log(den)
        blk_lse += m
        blk_lse[dead] = -np.inf
        lse[bs, ls] = blk_lse[..., 0]
        o = np.matmul(s, v3[bs, :kend])  # normalise the (lb, Ev) result, not the (lb, S) probabilities
        o /= den
        out[bs, ls] = o
    return out.reshape(lead + (L, Ev)), lse.reshape(lead + (L,))


BWD_BLAS_THREADS = 1  # NumPy's BLAS threads in the backward (None: leave NumPy's setting alone)


def scaled_dot_product_attention_backward(dout, q, k, v, out, lse, mask, scale, is_causal):
    """-> (dq, dk, dv).  The probabilities are rebuilt from ``lse``; the mask gets no gradient."""
    if BWD_BLAS_THREADS is None:
        return _backward(dout, q, k, v, out, lse, mask, scale, is_causal)
    with blas_threads("numpy", BWD_BLAS_THREADS):
        return _backward(dout, q, k, v, out, lse, mask, scale, is_causal)


def _backward(dout, q, k, v, out, lse, mask, scale, is_causal):
    op = "scaled_dot_product_attention_backward"
    q3, k3, v3, mask, scale, (lead, B, L, S, E, Ev) = _prepare(op, q, k, v, mask, scale, is_causal)
    for name, a in (("dout", dout), ("out", out), ("lse", lse)):
        if C._is_array(a) and type(a) is not np.ndarray:
            raise TypeError(f"{op}: argument '{name}' is a {type(a).__name__}; this CPU kernel needs a NumPy array")
    dout = C.array(op, "dout", dout)
    out = C.array(op, "out", out)
    lse = C.array(op, "lse", lse)
    C.same_dtype(op, q=q3, dout=dout, out=out, lse=lse)
    out_shape = lead + (L, Ev)
    C.same_shape(op, "dout", dout, "out", out)
    if tuple(out.shape) != out_shape:
        raise ValueError(f"{op}: 'out' shape {tuple(out.shape)} must be {out_shape}")
    if tuple(lse.shape) != lead + (L,):
        raise ValueError(f"{op}: 'lse' shape {tuple(lse.shape)} must be {lead + (L,)}")
    dt = q3.dtype
    do3 = dout.reshape(B, L, Ev)
    if mask is None and S and _attn is not None and dt in (np.float32, np.float64):  # compiled path
        delta2 = np.einsum("blv,blv->bl", do3, out.reshape(B, L, Ev))
        dq, dk, dv = _attn.backward(np.ascontiguousarray(do3), np.ascontiguousarray(q3), np.ascontiguousarray(k3),
                                    np.ascontiguousarray(v3), np.ascontiguousarray(lse.reshape(B, L)),
                                    np.ascontiguousarray(delta2), float(scale), bool(is_causal))
        return dq.reshape(lead + (L, E)), dk.reshape(lead + (S, E)), dv.reshape(lead + (S, Ev))
    # rows with lse = -inf (fully masked) must give p = 0: exp(s - (+inf)) = 0
    lse_eff = np.where(np.isneginf(lse), dt.type(np.inf), lse).reshape(B, L, 1)
    delta = np.einsum("blv,blv->bl", do3, out.reshape(B, L, Ev))[..., None]  # rowsum(P * dP) = rowsum(dO * O)
    dq = np.empty((B, L, E), dt)
    dk = np.zeros((B, S, E), dt)
    dv = np.zeros((B, S, Ev), dt)
    if S and L:
        for bs, ls in _blocks(B, L, S):
            p, kend = _block_scores(q3, k3, mask, scale, is_causal, bs, ls)
            p -= lse_eff[bs, ls]
            np.exp(p, out=p)
            dob = do3[bs, ls]
            dv[bs, :kend] += np.matmul(p.transpose(0, 2, 1), dob)
            ds = np.matmul(dob, v3[bs, :kend].transpose(0, 2, 1))
            ds -= delta[bs, ls]
            ds *= p
            ds *= dt.type(scale)
            dq[bs, ls] = np.matmul(ds, k3[bs, :kend])
            dk[bs, :kend] += np.matmul(ds.transpose(0, 2, 1), q3[bs, ls])
    else:
        dq[...] = 0
    return dq.reshape(lead + (L, E)), dk.reshape(lead + (S, E)), dv.reshape(lead + (S, Ev))
