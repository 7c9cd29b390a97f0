# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Polyphase Winograd F(3x3, 4x4) forward for stride-2 convolutions with 5x5 .. 8x8 filters
(the ResNet stem's 7x7), float32 on AVX-512F CPUs: the large-filter half of
``algo='winograd_s2'`` (``_conv_wino_s2`` takes filters up to 4x4).

Called by the ``conv`` module's ``conv2d_forward`` after it validated the arguments.

Math.  Pad x by the conv padding and split it into its four phases
Z_pq = xpad[:, :, p::2, q::2]: a stride-1 problem with 4C channels c' = (2p + q) C + c.  Zero-pad
the R x S filter to 8 x 8 and split it the same way into 4 x 4 phase filters
w_pq = w8[:, :, p::2, q::2]; then y = conv_stride1(Z, w_s2d) cropped to P x Q (see
``_conv_wino_s2``).  That conv runs as Winograd F(3x3, 4x4) (alpha 6, points 0, 1, -1, 2, -2,
inf; matrices in ``_wino_s2x_impl.h``, checked exactly): 36 products per 9 outputs per phase
channel, 4C * 4 = 16 C multiplications per output against R S C direct (stem: 48 against 147,
3.1x fewer).

Work: OpenMP over (image, band of 3 output rows); per band the phase rows are packed
channel-last (16 phase channels per vector), then per group of 12 tiles: input transform,
products (register block of 6 tiles x 64 output channels, the transformed filters U as vectors
over output channels, V broadcast), output transform (16 output channels per vector) into the
band's staging, and 16 x 16 transposes into y.  The filter transform runs once per call.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel, threadid

cnp.import_array()

cdef extern from "_wino_s2x_impl.h" nogil:
    ctypedef struct fs2x_geo:
        int N, C, H, W, K, R, S, P, Q, ph, pw, th, tw, C4, Cp, Kp, Wz, Qs
        int lr[36][4]
    void fs2x_setup(fs2x_geo* g, int N, int C, int H, int W, int K, int R, int S, int P, int Q, int ph, int pw)
    Py_ssize_t fs2x_work(const fs2x_geo* g)
    void fs2x_filters(const float* w, float* U, const fs2x_geo* g, int k0, int k1)
    int fs2x_available()
    void fs2x_band(const float* x, const float* U, const float* bias, float* y, float* work, const fs2x_geo* g,
                   int n, int ti)

from ._conv_winograd import _scratch
from . import _conv_wino_s2 as _ws2

AVAILABLE = bool(fs2x_available())


def eligible(x_dtype, w_shape, stride, dilation, groups):
    """'' if this module can run the forward conv, else the reason (for the ValueError): the
    stride-2 module's conditions, and a filter of 5x5 .. 8x8."""
    why = _ws2.eligible(x_dtype, w_shape, stride, dilation, groups) if AVAILABLE else "needs a CPU with AVX-512F"
    if not why and not (4 < max(w_shape[2], w_shape[3]) <= 8):
        why = "needs a filter of 5 x 5 .. 8 x 8"
    return why


def forward(x, w, b, padding, y, int nt):
    """y[:] = conv2d(x, w, b) with stride 2 (arguments validated by the caller, ``eligible``)."""
    cdef fs2x_geo g
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    fs2x_setup(&g, N, C, H, W, K, R, S, P, Q, padding[0], padding[1])
    if N == 0 or K == 0 or P == 0 or Q == 0:
        return y
    U = _scratch(20, 36 * <Py_ssize_t>g.Cp * g.Kp, np.float32)
    cdef Py_ssize_t ws = (fs2x_work(&g) + 15) // 16 * 16
    cdef int nitems = g.N * g.th
    nt = max(1, min(nt, nitems))
    work = _scratch(21, nt * ws, np.float32)
    cdef const float* px = <const float*>cnp.PyArray_DATA(x)
    cdef const float* pw = <const float*>cnp.PyArray_DATA(w)
    cdef float* pu = <float*>cnp.PyArray_DATA(U)
    cdef const float* pb = NULL if b is None else <const float*>cnp.PyArray_DATA(b)
    cdef float* py = <float*>cnp.PyArray_DATA(y)
    cdef float* pk = <float*>cnp.PyArray_DATA(work)
    cdef int it, k, kstep = (g.Kp + nt - 1) // nt
    with nogil, parallel(num_threads=nt):
        for k in prange(0, g.Kp, kstep, schedule="static"):
            fs2x_filters(pw, pu, &g, k, min(k + kstep, g.Kp))
    with nogil, parallel(num_threads=nt):
        for it in prange(nitems, schedule="dynamic"):
            fs2x_band(px, pu, pb, py, pk + threadid() * ws, &g, it // g.th, it % g.th)
    return y
