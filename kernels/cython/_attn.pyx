# cython: language_level=3
# distutils: libraries = m
"""Compiled forward of scaled dot-product attention without a mask (plain or causal), for
``attention.py``: OpenMP over (batch*heads, block of query rows); per block two GEMMs through
SciPy's BLAS, single-threaded inside the OpenMP threads (one thread pool in the process), and
the row softmax in C (_attn_impl.h).  float32 without a causal mask on AVX-512 CPUs: both GEMMs in
fa_mm_f32 (the RNN cells' unpacked register-tile GEMM) instead, with no packing of the probabilities
(8x8x256x64, one thread, CPU time: torch/ours 1.07 -> 1.20); the float32 backward's four GEMMs too
(1.07 -> 1.24, causal 1.69 -> 1.89).  The scores of a block (LB query rows x the keys) are a
per-thread workspace, so no (L, S) tensor is materialised.

Why not NumPy: the NumPy version ran its matmuls on NumPy's OpenBLAS pool, which fights
spinning OpenMP threads for the cores, and its exp/max/sum passes single-threaded; on the
8x8x256x64 benchmark case it took 28 ms against PyTorch's 16."""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid
from libc.math cimport INFINITY
from scipy.linalg.cython_blas cimport sgemm, dgemm

from ._threads import blas_threads, num_threads

cnp.import_array()

ctypedef fused real:
    float
    double

cdef extern from "_attn_impl.h" nogil:
    float fa_row_f32(float* s, int n, float* mx)
    double fa_row_f64(double* s, int n, double* mx)
    void fa_expsub_f32(float* s, int n, float c)
    void fa_expsub_f64(double* s, int n, double c)
    void fa_ds_f32(float* ds, const float* p, int n, float delta, float scale)
    void fa_ds_f64(double* ds, const double* p, int n, double delta, double scale)
    void fa_finish_f32(const float* den, const float* mx, float* lse, float* o, int lb, int ev)
    void fa_finish_f64(const double* den, const double* mx, double* lse, double* o, int lb, int ev)
    void fa_kt_f32(const float* k, float* kt, int n, int e, float scale)
    void fa_mm_f32(const float* a, int sr, int sk, const float* b, int ldb, int kdim, float* c, int ldc,
                   int ncols, int rows, int acc)
    int fa_has_avx512()

LB = 256  # query rows per block (non-causal), capped so a block's scores stay <= LB_ELEMS
LB_CAUSAL = 32  # causal: small blocks skip more of the masked keys
LB_ELEMS = 1 << 18
MM = True  # float32, no causal mask, AVX-512: the forward's GEMMs in fa_mm_f32 instead of OpenBLAS
# 8x8x256x64 float32, 2 threads, PyTorch / ours: non-causal 0.87 / 0.94 / 0.90 / 0.96 at 32 / 64 /
# 128 / 256 rows, causal 1.35 / 1.25 / 0.98 / 0.70.  With the inlined polynomial exp (_fast_exp.h), one
# thread, CPU time: non-causal 0.94 / 0.89 / 0.95 / 1.00 at 32 / 64 / 128 / 256 rows (256 still best).


cdef void _run(const real* q, const real* k, const real* v, real* out, real* lse, real* work,
               Py_ssize_t wstride, int B, int L, int S, int E, int Ev, real scale, bint causal, int lb_max,
               int nt, bint mm) noexcept nogil:
    cdef int nblk = (L + lb_max - 1) // lb_max, item, b, l0, lb, kend, i, j, tid = 0
    cdef real* s
    cdef real* den
    cdef real* mxs
    cdef real* kt
    cdef real* o
    cdef real one = 1, zero = 0
    cdef char tt = b'T', nn = b'N'
    with parallel(num_threads=nt):
        tid = threadid()
        for item in prange(B * nblk, schedule="dynamic"):
            b = item // nblk
            l0 = (item % nblk) * lb_max
            lb = min(lb_max, L - l0)
            kend = min(S, l0 + lb) if causal else S
            s = work + tid * wstride
            den = s + <Py_ssize_t>lb_max * S
            mxs = den + lb_max
            kt = mxs + lb_max
            # s (lb x kend, row-major) = scale * q_blk . k^T
            if real is float and mm:
                fa_kt_f32(<float*>k + <Py_ssize_t>b * S * E, kt, kend, E, scale)
                fa_mm_f32(<float*>q + (<Py_ssize_t>b * L + l0) * E, E, 1, kt, kend, E, s, kend, kend, lb, 0)
            elif real is float:
                sgemm(&tt, &nn, &kend, &lb, &E, &scale, <float*>k + <Py_ssize_t>b * S * E, &E,
                      <float*>q + (<Py_ssize_t>b * L + l0) * E, &E, &zero, s, &kend)
            else:
                dgemm(&tt, &nn, &kend, &lb, &E, &scale, <double*>k + <Py_ssize_t>b * S * E, &E,
                      <double*>q + (<Py_ssize_t>b * L + l0) * E, &E, &zero, s, &kend)
            for i in range(lb):
                if causal:
                    for j in range(l0 + i + 1, kend):
                        s[<Py_ssize_t>i * kend + j] = -INFINITY
                if real is float:
                    den[i] = fa_row_f32(s + <Py_ssize_t>i * kend, kend, &mxs[i])
                else:
                    den[i] = fa_row_f64(s + <Py_ssize_t>i * kend, kend, &mxs[i])
            # o (lb x Ev) = p . v[:kend]
            o = out + (<Py_ssize_t>b * L + l0) * Ev
            if real is float and mm:
                fa_mm_f32(s, kend, 1, <float*>v + <Py_ssize_t>b * S * Ev, Ev, kend, o, Ev, Ev, lb, 0)
            elif real is float:
                sgemm(&nn, &nn, &Ev, &lb, &kend, &one, <float*>v + <Py_ssize_t>b * S * Ev, &Ev, s, &kend,
                      &zero, o, &Ev)
            else:
                dgemm(&nn, &nn, &Ev, &lb, &kend, &one, <double*>v + <Py_ssize_t>b * S * Ev, &Ev, s, &kend,
                      &zero, o, &Ev)
            # lse of the rows and o /= den (vectorised in _attn_impl.h)
            if real is float:
                fa_finish_f32(den, mxs, lse + <Py_ssize_t>b * L + l0, o, lb, Ev)
            else:
                fa_finish_f64(den, mxs, lse + <Py_ssize_t>b * L + l0, o, lb, Ev)


def forward(q3, k3, v3, scale, bint causal):
    """(out (B, L, Ev), lse (B, L)) for C-contiguous float32/float64 q3 (B, L, E), k3 (B, S, E),
    v3 (B, S, Ev) of one dtype, S > 0, no mask (validated by the caller)."""
    cdef int B = q3.shape[0], L = q3.shape[1], E = q3.shape[2], S = k3.shape[1], Ev = v3.shape[2]
    dt = q3.dtype
    out = np.empty((B, L, Ev), dt)
    lse = np.empty((B, L), dt)
    if B == 0 or L == 0:
        return out, lse
    cdef int lb_max = max(1, min(LB_CAUSAL if causal else LB, L, max(16, LB_ELEMS // S)))
    cdef int nt = max(1, min(num_threads(B * ((L + lb_max - 1) // lb_max)), B * ((L + lb_max - 1) // lb_max)))
    cdef bint mm = MM and dt == np.float32 and not causal and fa_has_avx512()
    cdef Py_ssize_t wstride = <Py_ssize_t>lb_max * S + 2 * lb_max + (<Py_ssize_t>E * S if mm else 0) + 16
    work = np.empty(nt * wstride, dt)
    cdef void* pq = cnp.PyArray_DATA(q3)
    cdef void* pk = cnp.PyArray_DATA(k3)
    cdef void* pv = cnp.PyArray_DATA(v3)
    cdef void* po = cnp.PyArray_DATA(out)
    cdef void* pl = cnp.PyArray_DATA(lse)
    cdef void* pw = cnp.PyArray_DATA(work)
    cdef float sc32 = scale
    cdef double sc64 = scale
    with blas_threads("scipy", 1):
        if dt == np.float32:
            with nogil:
                _run(<float*>pq, <float*>pk, <float*>pv, <float*>po, <float*>pl, <float*>pw, wstride, B, L, S, E,
                     Ev, sc32, causal, lb_max, nt, mm)
        else:
            with nogil:
                _run(<double*>pq, <double*>pk, <double*>pv, <double*>po, <double*>pl, <double*>pw, wstride, B, L,
                     S, E, Ev, sc64, causal, lb_max, nt, False)
    return out, lse


cdef void _run_bwd(const real* q, const real* k, const real* v, const real* do, const real* lse, const real* delta,
                   real* dq, real* dk, real* dv, real* work, Py_ssize_t wstride, int B, int L, int S, int E, int Ev,
                   real scale, bint causal, int lb_max, int nt, bint mm) noexcept nogil:
    """One item per batch element (its query blocks in turn: dk, dv accumulate over them).  mm (float32,
    AVX-512): the GEMMs in fa_mm_f32, with scale k^T and v^T transposed once per batch element."""
    cdef int b, l0, lb, kend, i, j, tid = 0
    cdef real* p
    cdef real* ds
    cdef real* kt
    cdef real* vt
    cdef real* qb
    cdef real* dob
    cdef real c
    cdef real one = 1, zero = 0
    cdef char tt = b'T', nn = b'N'
    with parallel(num_threads=nt):
        tid = threadid()
        for b in prange(B, schedule="dynamic"):
            p = work + tid * wstride
            ds = p + <Py_ssize_t>lb_max * S
            kt = ds + <Py_ssize_t>lb_max * S
            vt = kt + <Py_ssize_t>E * S
            if real is float and mm:
                fa_kt_f32(<float*>k + <Py_ssize_t>b * S * E, kt, S, E, scale)
                fa_kt_f32(<float*>v + <Py_ssize_t>b * S * Ev, vt, S, Ev, 1)
            l0 = 0
            while l0 < L:
                lb = min(lb_max, L - l0)
                kend = min(S, l0 + lb) if causal else S
                qb = <real*>q + (<Py_ssize_t>b * L + l0) * E
                dob = <real*>do + (<Py_ssize_t>b * L + l0) * Ev
                # p = exp(scale q_blk k^T - lse)
                if real is float and mm:
                    fa_mm_f32(qb, E, 1, kt, S, E, p, kend, kend, lb, 0)
                elif real is float:
                    sgemm(&tt, &nn, &kend, &lb, &E, &scale, <float*>k + <Py_ssize_t>b * S * E, &E,
                          <float*>q + (<Py_ssize_t>b * L + l0) * E, &E, &zero, p, &kend)
                else:
                    dgemm(&tt, &nn, &kend, &lb, &E, &scale, <double*>k + <Py_ssize_t>b * S * E, &E,
                          <double*>q + (<Py_ssize_t>b * L + l0) * E, &E, &zero, p, &kend)
                for i in range(lb):
                    if causal:
                        for j in range(l0 + i + 1, kend):
                            p[<Py_ssize_t>i * kend + j] = -INFINITY
                    c = lse[<Py_ssize_t>b * L + l0 + i]
                    if c == -INFINITY:  # a row with no key: p = 0
                        c = INFINITY
                    if real is float:
                        fa_expsub_f32(p + <Py_ssize_t>i * kend, kend, c)
                    else:
                        fa_expsub_f64(p + <Py_ssize_t>i * kend, kend, c)
                # dv[:kend] += p^T do_blk ; ds = do_blk v^T
                if real is float and mm:
                    fa_mm_f32(p, 1, kend, dob, Ev, lb, <float*>dv + <Py_ssize_t>b * S * Ev, Ev, Ev, kend, 1)
                    fa_mm_f32(dob, Ev, 1, vt, S, Ev, ds, kend, kend, lb, 0)
                elif real is float:
                    sgemm(&nn, &tt, &Ev, &kend, &lb, &one, <float*>do + (<Py_ssize_t>b * L + l0) * Ev, &Ev, p, &kend,
                          &one, <float*>dv + <Py_ssize_t>b * S * Ev, &Ev)
                    sgemm(&tt, &nn, &kend, &lb, &Ev, &one, <float*>v + <Py_ssize_t>b * S * Ev, &Ev,
                          <float*>do + (<Py_ssize_t>b * L + l0) * Ev, &Ev, &zero, ds, &kend)
                else:
                    dgemm(&nn, &tt, &Ev, &kend, &lb, &one, <double*>do + (<Py_ssize_t>b * L + l0) * Ev, &Ev, p,
                          &kend, &one, <double*>dv + <Py_ssize_t>b * S * Ev, &Ev)
                    dgemm(&tt, &nn, &kend, &lb, &Ev, &one, <double*>v + <Py_ssize_t>b * S * Ev, &Ev,
                          <double*>do + (<Py_ssize_t>b * L + l0) * Ev, &Ev, &zero, ds, &kend)
                for i in range(lb):  # ds = p (dp - delta) scale
                    if real is float:
                        fa_ds_f32(ds + <Py_ssize_t>i * kend, p + <Py_ssize_t>i * kend, kend,
                                  delta[<Py_ssize_t>b * L + l0 + i], scale)
                    else:
                        fa_ds_f64(ds + <Py_ssize_t>i * kend, p + <Py_ssize_t>i * kend, kend,
                                  delta[<Py_ssize_t>b * L + l0 + i], scale)
                # dq_blk = ds k[:kend] ; dk[:kend] += ds^T q_blk
                if real is float and mm:
                    fa_mm_f32(ds, kend, 1, <float*>k + <Py_ssize_t>b * S * E, E, kend,
                              <float*>dq + (<Py_ssize_t>b * L + l0) * E, E, E, lb, 0)
                    fa_mm_f32(ds, 1, kend, qb, E, lb, <float*>dk + <Py_ssize_t>b * S * E, E, E, kend, 1)
                elif real is float:
                    sgemm(&nn, &nn, &E, &lb, &kend, &one, <float*>k + <Py_ssize_t>b * S * E, &E, ds, &kend, &zero,
                          <float*>dq + (<Py_ssize_t>b * L + l0) * E, &E)
                    sgemm(&nn, &tt, &E, &kend, &lb, &one, <float*>q + (<Py_ssize_t>b * L + l0) * E, &E, ds, &kend,
                          &one, <float*>dk + <Py_ssize_t>b * S * E, &E)
                else:
                    dgemm(&nn, &nn, &E, &lb, &kend, &one, <double*>k + <Py_ssize_t>b * S * E, &E, ds, &kend, &zero,
                          <double*>dq + (<Py_ssize_t>b * L + l0) * E, &E)
                    dgemm(&nn, &tt, &E, &kend, &lb, &one, <double*>q + (<Py_ssize_t>b * L + l0) * E, &E, ds, &kend,
                          &one, <double*>dk + <Py_ssize_t>b * S * E, &E)
                l0 = l0 + lb


def backward(do3, q3, k3, v3, lse2, delta2, scale, bint causal):
    """(dq, dk, dv) of the no-mask attention for C-contiguous float arrays of one dtype: do3 (B, L, Ev),
    q3 (B, L, E), k3 (B, S, E), v3 (B, S, Ev), lse2 / delta2 (B, L) (delta = rowsum(dO * O)),
    S > 0 (validated by the caller)."""
    cdef int B = q3.shape[0], L = q3.shape[1], E = q3.shape[2], S = k3.shape[1], Ev = v3.shape[2]
    dt = q3.dtype
    dq = np.empty((B, L, E), dt)
    dk = np.zeros((B, S, E), dt)
    dv = np.zeros((B, S, Ev), dt)
    if B == 0 or L == 0:
        return dq, dk, dv
    cdef int lb_max = max(1, min(LB_CAUSAL if causal else LB, L, max(16, LB_ELEMS // S)))
    cdef int nt = max(1, min(num_threads(B), B))
    cdef bint mm = MM and dt == np.float32 and fa_has_avx512()
    cdef Py_ssize_t wstride = 2 * <Py_ssize_t>lb_max * S + (<Py_ssize_t>(E + Ev) * S if mm else 0) + 16
    work = np.empty(nt * wstride, dt)
    P = [q3, k3, v3, do3, lse2, delta2, dq, dk, dv, work]
    cdef void* ptr[10]
    cdef int t
    for t in range(10):
        ptr[t] = cnp.PyArray_DATA(<cnp.ndarray>P[t])
    cdef float sc32 = scale
    cdef double sc64 = scale
    with blas_threads("scipy", 1):
        if dt == np.float32:
            with nogil:
                _run_bwd(<float*>ptr[0], <float*>ptr[1], <float*>ptr[2], <float*>ptr[3], <float*>ptr[4], <float*>ptr[5],
                         <float*>ptr[6], <float*>ptr[7], <float*>ptr[8], <float*>ptr[9], wstride, B, L, S, E, Ev, sc32,
                         causal, lb_max, nt, mm)
        else:
            with nogil:
                _run_bwd(<double*>ptr[0], <double*>ptr[1], <double*>ptr[2], <double*>ptr[3], <double*>ptr[4],
                         <double*>ptr[5], <double*>ptr[6], <double*>ptr[7], <double*>ptr[8], <double*>ptr[9], wstride,
                         B, L, S, E, Ev, sc64, causal, lb_max, nt, False)
    return dq, dk, dv
