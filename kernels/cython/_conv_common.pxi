# Declarations shared by the conv modules (textually included by conv.pyx and _conv_direct.pyx).

ctypedef fused real:
    float
    double

ctypedef struct Geo:
    int N, C, H, W, K, R, S, P, Q
    int sh, sw, ph, pw, dh, dw, groups, Cg, Kg


cdef inline void _qrange(const Geo* g, int s, int* qa, int* qb, int* off) noexcept nogil:
    """Output columns q whose input column q*sw + off (off = s*dw - pw) lies in [0, W)."""
    cdef int o = s * g.dw - g.pw
    off[0] = o
    qa[0] = 0 if o >= 0 else (-o + g.sw - 1) // g.sw
    if g.W - 1 - o < 0:
        qb[0] = 0
    else:
        qb[0] = min(g.Q, (g.W - 1 - o) // g.sw + 1)
    if qa[0] > qb[0]:
        qa[0] = qb[0]
