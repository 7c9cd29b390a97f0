# F(4x4, 3x3) transforms, textually included by _conv_winograd.pyx (shares its real, WG, SKEW, NJ).
cdef inline void _bt6(const real* d, int sd, real* r, int sr) noexcept nogil:
    """r = B^T d for one 6-vector (strides sd, sr)."""
    cdef real d0 = d[0], d1 = d[sd], d2 = d[2 * sd], d3 = d[3 * sd], d4 = d[4 * sd], d5 = d[5 * sd]
    r[0] = 4 * d0 - 5 * d2 + d4
    r[sr] = -4 * (d1 + d2) + d3 + d4
    r[2 * sr] = 4 * (d1 - d2) - d3 + d4
    r[3 * sr] = 2 * (d3 - d1) - d2 + d4
    r[4 * sr] = 2 * (d1 - d3) - d2 + d4
    r[5 * sr] = 4 * d1 - 5 * d3 + d5


cdef inline void _g6(real g0, real g1, real g2, real* u, int su) noexcept nogil:
    """u = G g for one 3-vector."""
    u[0] = g0 * <real>0.25
    u[su] = -(g0 + g1 + g2) / <real>6
    u[2 * su] = -(g0 - g1 + g2) / <real>6
    u[3 * su] = g0 / <real>24 + g1 / <real>12 + g2 / <real>6
    u[4 * su] = g0 / <real>24 - g1 / <real>12 + g2 / <real>6
    u[5 * su] = g2


cdef inline void _at6(const real* m, int sm, real* o, int so) noexcept nogil:
    """o = A^T m for one 6-vector (4 outputs)."""
    cdef real m1 = m[sm], m2 = m[2 * sm], m3 = m[3 * sm], m4 = m[4 * sm]
    o[0] = m[0] + m1 + m2 + m3 + m4
    o[so] = m1 - m2 + 2 * (m3 - m4)
    o[2 * so] = m1 + m2 + 4 * (m3 + m4)
    o[3 * so] = m1 - m2 + 8 * (m3 - m4) + m[5 * sm]


cdef void _filters4(const real* w, real* U, Py_ssize_t kc_total) noexcept nogil:
    cdef Py_ssize_t kc, KC = kc_total + SKEW
    cdef int i, j
    cdef const real* g
    cdef real t[18]
    cdef real u[36]
    for kc in range(kc_total):
        g = w + kc * 9
        for j in range(3):  # t = G g (6 x 3)
            _g6(g[j], g[3 + j], g[6 + j], t + j, 3)
        for i in range(6):  # u = t G^T (6 x 6)
            _g6(t[3 * i], t[3 * i + 1], t[3 * i + 2], u + 6 * i, 1)
        for i in range(36):
            U[i * KC + kc] = u[i]


cdef void _in_run4(const real* r0, Py_ssize_t W, real* v, Py_ssize_t cs, int nj) noexcept nogil:
    """F(4x4, 3x3) input transform of nj side-by-side interior 6x6 tiles (origins r0 + 4j), in
    two vectorisable passes through local buffers: E = B^T D (rows), then V = E B (columns)."""
    cdef real E[36 * NJ]
    cdef real buf[36 * NJ]
    cdef const real* r1 = r0 + W
    cdef const real* r2 = r1 + W
    cdef const real* r3 = r2 + W
    cdef const real* r4 = r3 + W
    cdef const real* r5 = r4 + W
    cdef Py_ssize_t j, b, a, idx, xi
    cdef real d0, d1, d2, d3, d4, d5
    for b in range(6):  # E[a][b][j] = sum_r BT[a][r] x[r][4j + b]
        for j in range(nj):
            idx = 4 * j + b
            d0 = r0[idx]
            d1 = r1[idx]
            d2 = r2[idx]
            d3 = r3[idx]
            d4 = r4[idx]
            d5 = r5[idx]
            E[(0 * 6 + b) * NJ + j] = 4 * d0 - 5 * d2 + d4
            E[(1 * 6 + b) * NJ + j] = -4 * (d1 + d2) + d3 + d4
            E[(2 * 6 + b) * NJ + j] = 4 * (d1 - d2) - d3 + d4
            E[(3 * 6 + b) * NJ + j] = 2 * (d3 - d1) - d2 + d4
            E[(4 * 6 + b) * NJ + j] = 2 * (d1 - d3) - d2 + d4
            E[(5 * 6 + b) * NJ + j] = 4 * d1 - 5 * d3 + d5
    for a in range(6):  # V[a][c][j] = sum_b E[a][b][j] BT[c][b]
        for j in range(nj):
            d0 = E[(6 * a + 0) * NJ + j]
            d1 = E[(6 * a + 1) * NJ + j]
            d2 = E[(6 * a + 2) * NJ + j]
            d3 = E[(6 * a + 3) * NJ + j]
            d4 = E[(6 * a + 4) * NJ + j]
            d5 = E[(6 * a + 5) * NJ + j]
            buf[(6 * a + 0) * NJ + j] = 4 * d0 - 5 * d2 + d4
            buf[(6 * a + 1) * NJ + j] = -4 * (d1 + d2) + d3 + d4
            buf[(6 * a + 2) * NJ + j] = 4 * (d1 - d2) - d3 + d4
            buf[(6 * a + 3) * NJ + j] = 2 * (d3 - d1) - d2 + d4
            buf[(6 * a + 4) * NJ + j] = 2 * (d1 - d3) - d2 + d4
            buf[(6 * a + 5) * NJ + j] = 4 * d1 - 5 * d3 + d5
    for xi in range(36):
        for j in range(nj):
            v[xi * cs + j] = buf[xi * NJ + j]


cdef void _out_run4(const real* mp, Py_ssize_t ks, real* y0, Py_ssize_t Q, int nj, real bv) noexcept nogil:
    """F(4x4, 3x3) output transform of nj side-by-side whole 4x4 tiles: S = A^T M, O = S A."""
    cdef real S[24 * NJ]
    cdef real O[16 * NJ]
    cdef Py_ssize_t j, b, a
    cdef real m0, m1, m2, m3, m4, m5
    cdef real* yr
    for b in range(6):  # S[a][b][j] = sum_r AT[a][r] M[r][b][j]
        for j in range(nj):
            m0 = mp[(0 * 6 + b) * ks + j]
            m1 = mp[(1 * 6 + b) * ks + j]
            m2 = mp[(2 * 6 + b) * ks + j]
            m3 = mp[(3 * 6 + b) * ks + j]
            m4 = mp[(4 * 6 + b) * ks + j]
            m5 = mp[(5 * 6 + b) * ks + j]
            S[(0 * 6 + b) * NJ + j] = m0 + m1 + m2 + m3 + m4
            S[(1 * 6 + b) * NJ + j] = m1 - m2 + 2 * (m3 - m4)
            S[(2 * 6 + b) * NJ + j] = m1 + m2 + 4 * (m3 + m4)
            S[(3 * 6 + b) * NJ + j] = m1 - m2 + 8 * (m3 - m4) + m5
    for a in range(4):  # O[a][c][j] = sum_b S[a][b][j] AT[c][b]
        for j in range(nj):
            m0 = S[(6 * a + 0) * NJ + j]
            m1 = S[(6 * a + 1) * NJ + j]
            m2 = S[(6 * a + 2) * NJ + j]
            m3 = S[(6 * a + 3) * NJ + j]
            m4 = S[(6 * a + 4) * NJ + j]
            m5 = S[(6 * a + 5) * NJ + j]
            O[(4 * a + 0) * NJ + j] = m0 + m1 + m2 + m3 + m4
            O[(4 * a + 1) * NJ + j] = m1 - m2 + 2 * (m3 - m4)
            O[(4 * a + 2) * NJ + j] = m1 + m2 + 4 * (m3 + m4)
            O[(4 * a + 3) * NJ + j] = m1 - m2 + 8 * (m3 - m4) + m5
    for a in range(4):
        yr = y0 + a * Q
        for j in range(nj):
            yr[4 * j] = O[(4 * a + 0) * NJ + j] + bv
            yr[4 * j + 1] = O[(4 * a + 1) * NJ + j] + bv
            yr[4 * j + 2] = O[(4 * a + 2) * NJ + j] + bv
            yr[4 * j + 3] = O[(4 * a + 3) * NJ + j] + bv


cdef void _inputs4(const real* x, real* V, const WG* g, Py_ssize_t t0, int nb) noexcept nogil:
    cdef int i, c, n, ti, tj, h0, w0, a, b, r, run
    cdef int jhi = (g.W - 6 + g.pw) // 4 + 1 if g.W - 6 + g.pw >= 0 else 0  # tiles tj < jhi end inside x
    cdef Py_ssize_t hw = <Py_ssize_t>g.H * g.W, cs = <Py_ssize_t>g.C * nb + SKEW
    cdef const real* xp
    cdef real* v
    cdef real d[36]
    cdef real e[36]
    cdef real f[6]
    for c in range(g.C):
        n = t0 // (g.th * g.tw)
        r = t0 % (g.th * g.tw)
        ti = r // g.tw
        tj = r % g.tw
        v = V + c * nb
        i = 0
        while i < nb:
            xp = x + (<Py_ssize_t>n * g.C + c) * hw
            h0 = 4 * ti - g.ph
            w0 = 4 * tj - g.pw
            run = min(NJ, min(jhi - tj, min(g.tw - tj, nb - i)))
            if h0 >= 0 and h0 + 6 <= g.H and w0 >= 0 and run >= 2:  # a run of interior tiles
                _in_run4(xp + h0 * g.W + w0, g.W, v + i, cs, run)
                i = i + run
                tj = tj + run
                if tj == g.tw:
                    tj = 0
                    ti = ti + 1
                    if ti == g.th:
                        ti = 0
                        n = n + 1
                continue
            if h0 >= 0 and w0 >= 0 and h0 + 6 <= g.H and w0 + 6 <= g.W:
                xp = xp + h0 * g.W + w0
                for a in range(6):
                    for b in range(6):
                        d[6 * a + b] = xp[a * g.W + b]
            else:
                for a in range(6):
                    for b in range(6):
                        if 0 <= h0 + a < g.H and 0 <= w0 + b < g.W:
                            d[6 * a + b] = xp[(h0 + a) * g.W + w0 + b]
                        else:
                            d[6 * a + b] = 0
            for b in range(6):  # e = B^T d
                _bt6(d + b, 6, e + b, 6)
            for a in range(6):  # V = e B
                _bt6(e + 6 * a, 1, f, 1)
                for b in range(6):
                    v[(6 * a + b) * cs + i] = f[b]
            i = i + 1
            tj = tj + 1
            if tj == g.tw:
                tj = 0
                ti = ti + 1
                if ti == g.th:
                    ti = 0
                    n = n + 1


cdef void _outputs4(const real* M, const real* bias, real* y, const WG* g, Py_ssize_t t0, int nb) noexcept nogil:
    cdef int i, k, n, ti, tj, p0, q0, a, b, r, xi, run
    cdef Py_ssize_t ks = <Py_ssize_t>g.K * nb + SKEW, pq = <Py_ssize_t>g.P * g.Q
    cdef const real* mp
    cdef real m[36]
    cdef real s[24]
    cdef real o[16]
    cdef real bv
    cdef real* yp
    for k in range(g.K):
        bv = bias[k] if bias != NULL else 0
        n = t0 // (g.th * g.tw)
        r = t0 % (g.th * g.tw)
        ti = r // g.tw
        tj = r % g.tw
        mp = M + k * nb
        i = 0
        while i < nb:
            run = min(NJ, min(g.Q // 4 - tj, min(g.tw - tj, nb - i)))
            if 4 * ti + 4 <= g.P and run >= 2:  # a run of whole 4x4 output tiles
                _out_run4(mp + i, ks, y + (<Py_ssize_t>n * g.K + k) * pq + 4 * ti * g.Q + 4 * tj, g.Q, run, bv)
                i = i + run
                tj = tj + run
                if tj == g.tw:
                    tj = 0
                    ti = ti + 1
                    if ti == g.th:
                        ti = 0
                        n = n + 1
                continue
            for xi in range(36):
                m[xi] = mp[xi * ks + i]
            for b in range(6):  # s = A^T m (4 x 6)
                _at6(m + b, 6, s + b, 6)
            for a in range(4):  # o = s A (4 x 4)
                _at6(s + 6 * a, 1, o + 4 * a, 1)
            p0 = 4 * ti
            q0 = 4 * tj
            yp = y + (<Py_ssize_t>n * g.K + k) * pq + p0 * g.Q + q0
            if p0 + 4 <= g.P and q0 + 4 <= g.Q:
                for a in range(4):
                    for b in range(4):
                        yp[a * g.Q + b] = o[4 * a + b] + bv
            else:
                for a in range(min(4, g.P - p0)):
                    for b in range(min(4, g.Q - q0)):
                        yp[a * g.Q + b] = o[4 * a + b] + bv
            i = i + 1
            tj = tj + 1
            if tj == g.tw:
                tj = 0
                ti = ti + 1
                if ti == g.th:
                    ti = 0
                    n = n + 1


