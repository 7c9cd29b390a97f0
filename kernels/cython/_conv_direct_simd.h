/* Depthwise conv2d per-plane kernels for ONE element type and ONE instruction set.
 *
 * Included by _conv_direct_impl.h once per (type, ISA) with FC_T (element type), FC_VB
 * (vector bytes), FC_SFX (name suffix) and FC_ATTR (target attribute) defined.
 * Vectors (GCC vector extensions) run along the output row, and the whole filter of an
 * output vector is summed in a register before one store (two output rows per pass
 * share their input rows).  Stride-1 3x3 / 5x5 layers with 'same' or no column padding
 * read the input plane in place (zero row above / below; at the row ends the forward
 * loads across the border and masks, the backward-weight kernel shifts lanes);
 * any other plane is first copied into a zero-padded, column-phase-split buffer (see
 * fc_dwg), so that each tap is one contiguous unaligned load for any stride / dilation.
 * Memory: streaming (non-temporal) stores of y (planes staged in L1, lines streamed,
 * one sfence per thread) measured 0.80-0.88x of plain stores on depthwise_3x3 on the
 * 2-core EPYC VM, cold or warm caches and in the torch-interleaved bench; software
 * prefetches of y (prefetchw) 0.85-0.95x: y is stored plainly, unprefetched.
 * This file: forward correlations (forward, stride-1 backward-input); the backward
 * kernels are in _conv_direct_simd_bwd.h, included at the end.
 *
 * Without FC_T defined it is empty: _conv_direct.pyx names it (cdef extern) only so that
 * the build tracks it as a dependency.
 */
#ifdef FC_T
#define FN(name) FC_CAT3(fc_dw_, name, FC_SFX)
typedef FC_T FN(v) __attribute__((vector_size(FC_VB)));
/* the same vector at element alignment: unaligned loads/stores that alias only FC_T
 * (memcpy would alias the geometry too and force reloads after every store) */
typedef FC_T FN(vu) __attribute__((vector_size(FC_VB), aligned(sizeof(FC_T))));
typedef FC_TI FN(vi) __attribute__((vector_size(FC_VB)));
#define V FN(v)
#define FC_IT FN(vi)
#define T FC_T
#define VW ((int)(FC_VB / sizeof(FC_T)))
#define FC_AI static inline __attribute__((always_inline)) FC_ATTR

FC_AI V FN(ld)(const T *p) { return *(const FN(vu) *)p; }

/* v kept in a register: GCC otherwise folds a load that feeds two FMAs into both (two
 * loads of the same vector, and the two-row kernels are load-bound). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#if FC_VB == 64
#define FC_REG(v) __asm__("" : "+v"(v))
#else
#define FC_REG(v) __asm__("" : "+x"(v))
#endif
#else
#define FC_REG(v) ((void)0)
#endif
FC_AI void FN(st)(T *p, V v) { *(FN(vu) *)p = v; }

/* dst[0, n) = src[0, n) with vector moves (the last one overlapping when n % VW != 0). */
FC_AI void FN(copy)(T *restrict dst, const T *restrict src, int n) {
    if (n < VW) {
        for (int k = 0; k < n; k++) dst[k] = src[k];
        return;
    }
    int k = 0;
    for (; k + VW <= n; k += VW) FN(st)(dst + k, FN(ld)(src + k));
    if (k < n) FN(st)(dst + n - VW, FN(ld)(src + n - VW));
}

/* dst[0, n) = 0, n a multiple of FC_DW_QB (>= VW). */
FC_AI void FN(zero)(T *dst, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k += VW) FN(st)(dst + k, (V){0});
}

/* Copy plane x (g->H x g->W) into buf: buffer row i = input row i - ph, column j = input
 * column j - pw stored at (j % sw) * Lb + j / sw + base.  Only elements that hold input are
 * written: the caller zeroes the buffer once, and padding stays zero across planes. */
FC_ATTR static void FN(pad)(const T *restrict x, T *restrict buf, const fc_dwg *g) {
    const int H = g->H, W = g->W, sw = g->sw, Lb = g->Lb, pw = g->pw;
    /* sw == 1: input columns land on elements [e0, e1) of the row (e0 % 16 == 0 if >= 0) */
    const int e0 = pw + g->base, e1 = W + e0 < Lb ? W + e0 : Lb, c0 = e0 > 0 ? e0 : 0;
    const int i0 = g->ph > 0 ? g->ph : 0, i1 = H + g->ph < g->Hb ? H + g->ph : g->Hb;
    for (int i = i0; i < i1; i++) {
        T *row = buf + (ptrdiff_t)i * g->RS;
        const T *src = x + (ptrdiff_t)(i - g->ph) * W;
        if (sw == 1) {
            if (c0 < e1) FN(copy)(row + c0, src + (c0 - e0), e1 - c0);
        } else {
            int m = 0;
            if (sw == 2) {  /* both phases of pairs (2m - pw, 2m + 1 - pw) inside the row */
                FC_IT ev, od;
                for (int l = 0; l < VW; l++) {
                    ev[l] = 2 * l;
                    od[l] = 2 * l + 1;
                }
                m = (pw + 1) / 2;
                for (; m < Lb - VW && 2 * (m + VW) - pw <= W; m += VW) {
                    const V a = FN(ld)(src + 2 * m - pw), b = FN(ld)(src + 2 * m - pw + VW);
                    FN(st)(row + m, __builtin_shuffle(a, b, ev));
                    FN(st)(row + Lb + m, __builtin_shuffle(a, b, od));
                }
                for (int k = 0; k < (pw + 1) / 2; k++)  /* the pairs before */
                    for (int f = 0; f < 2; f++) {
                        int iw = 2 * k + f - pw;
                        if (iw >= 0 && iw < W) row[f * Lb + k] = src[iw];
                    }
            }
            for (int f = 0; f < sw; f++) {  /* the rest: k up to the last inside the row */
                int kend = (W - 1 + pw - f) / sw + 1;
                for (int k = m; k < (kend < Lb ? kend : Lb); k++) {
                    int iw = k * sw + f - pw;
                    if (iw >= 0 && iw < W) row[f * Lb + k] = src[iw];
                }
            }
        }
    }
}

/* One output vector: sum over taps of w[r, s] * buf[row r][off[s] + lane] (b0 = row 0 + q0;
 * rstep = dh * RS); off == NULL: off[s] = s (b0 includes base), constant displacements. */
FC_AI V FN(gvec)(const T *b0, const T *w, V a, const int *off, ptrdiff_t rstep, const int R, const int S) {
    for (int r = 0; r < R; r++) {
        const T *rr = b0 + r * rstep;
        for (int s = 0; s < S; s++) a += w[r * S + s] * FN(ld)(rr + (off ? off[s] : s));
    }
    return a;
}

/* Output rows p and p + 1 when sh == dh == 1: the R - 1 input rows they share are loaded
 * once (R + 1 rows of loads for 2 * R rows of taps); b0 = row p + q0, rstep = RS. */
FC_AI void FN(gvec2)(const T *b0, const T *w, V *a0, V *a1, const int *off, ptrdiff_t rstep,
                     const int R, const int S) {
    V u = *a0, v = *a1;
    for (int r = 0; r <= R; r++) {
        const T *rr = b0 + r * rstep;
        for (int s = 0; s < S; s++) {
            V x = FN(ld)(rr + (off ? off[s] : s));
            if (r > 0 && r < R) FC_REG(x);
            if (r < R) u += w[r * S + s] * x;
            if (r > 0) v += w[(r - 1) * S + s] * x;
        }
    }
    *a0 = u;
    *a1 = v;
}

/* One output row yr (from buffer row b0): (accum ? yr : bias) + taps. */
FC_AI void FN(grow)(const T *b0, const T *w, V vb, T *yr, int accum, int Q, const int *off, ptrdiff_t rstep,
                    const int R, const int S) {
    if (Q >= VW) {  /* full vectors, the last one overlapping the one before */
        const int ql = Q - VW;
        /* computed before the row is stored: in accumulate mode it reads the old y */
        const V last = FN(gvec)(b0 + ql, w, accum ? FN(ld)(yr + ql) : vb, off, rstep, R, S);
        for (int q0 = 0; q0 < ql; q0 += VW)
            FN(st)(yr + q0, FN(gvec)(b0 + q0, w, accum ? FN(ld)(yr + q0) : vb, off, rstep, R, S));
        FN(st)(yr + ql, last);
    } else {  /* narrow rows: lanes through a temporary */
        T tmp[VW];
        for (int l = 0; l < VW; l++) tmp[l] = 0;
        if (accum) FN(copy)(tmp, yr, Q);
        FN(st)(tmp, FN(gvec)(b0, w, accum ? FN(ld)(tmp) : vb, off, rstep, R, S));
        FN(copy)(yr, tmp, Q);
    }
}

/* While output rows p, p + 1 are computed: prefetch the share of the plane the next task
 * pads (nxt, nlen elements; NULL: none), so that its misses overlap the arithmetic
 * (padded path only: measured +11 % on a stride-2 layer; on the unpadded path, which
 * reads the plane as it goes, the hardware prefetchers do better alone).  Prefetches
 * never fault. */
FC_AI void FN(prefetch)(const T *nxt, ptrdiff_t nlen, int p, int P) {
    if (!nxt) return;
    const int L = 64 / (int)sizeof(T);
    ptrdiff_t a = (ptrdiff_t)p * nlen / P / L * L, b = (ptrdiff_t)(p + 2) * nlen / P;
    if (b > nlen) b = nlen;
    for (; a < b; a += L) __builtin_prefetch(nxt + a, 0, 3);
}

/* y (P x Q) = (accum ? y : bias) + correlation of the padded buffer with w (R x S);
 * unit: sw == dw == 1 (tap offsets s + base, known at compile time). */
FC_AI void FN(gather_body)(const T *restrict buf, const T *restrict w, T bias, T *restrict y,
                           int accum, const fc_dwg *g, const T *nxt, ptrdiff_t nlen,
                           const int R, const int S, const int unit) {
    const int P = g->P, Q = g->Q;
    const ptrdiff_t pstep = (ptrdiff_t)g->sh * g->RS, rstep = (ptrdiff_t)g->dh * g->RS;
    int offa[FC_DW_MAXS];
    for (int s = 0; s < S; s++) offa[s] = g->off[s];
    const int *off = unit ? NULL : offa;
    if (unit) buf += g->base;
    const V vb = (V){0} + bias;
    int p = 0;
    if (g->sh == 1 && g->dh == 1 && Q >= VW) {
        const int ql = Q - VW;
        for (; p + 2 <= P; p += 2) {
            const T *b0 = buf + p * pstep;
            T *y0 = y + (ptrdiff_t)p * Q, *y1 = y0 + Q;
            FN(prefetch)(nxt, nlen, p, P);
            V l0 = accum ? FN(ld)(y0 + ql) : vb, l1 = accum ? FN(ld)(y1 + ql) : vb;
            FN(gvec2)(b0 + ql, w, &l0, &l1, off, rstep, R, S);
            for (int q0 = 0; q0 < ql; q0 += VW) {
                V a0 = accum ? FN(ld)(y0 + q0) : vb, a1 = accum ? FN(ld)(y1 + q0) : vb;
                FN(gvec2)(b0 + q0, w, &a0, &a1, off, rstep, R, S);
                FN(st)(y0 + q0, a0);
                FN(st)(y1 + q0, a1);
            }
            FN(st)(y0 + ql, l0);
            FN(st)(y1 + ql, l1);
        }
    }
    for (; p < P; p++) {
        FN(prefetch)(nxt, nlen, p, P);
        FN(grow)(buf + p * pstep, w, vb, y + (ptrdiff_t)p * Q, accum, Q, off, rstep, R, S);
    }
}

FC_ATTR static void FN(gather)(const T *buf, const T *w, T bias, T *y, int accum, const fc_dwg *g,
                               const T *nxt, ptrdiff_t nlen) {
    const int unit = g->sw == 1 && g->dw == 1;
    if (g->R == 3 && g->S == 3 && unit)
        FN(gather_body)(buf, w, bias, y, accum, g, nxt, nlen, 3, 3, 1);
    else if (g->R == 3 && g->S == 3)
        FN(gather_body)(buf, w, bias, y, accum, g, nxt, nlen, 3, 3, 0);
    else if (g->R == 5 && g->S == 5 && unit)
        FN(gather_body)(buf, w, bias, y, accum, g, nxt, nlen, 5, 5, 1);
    else if (g->R == 5 && g->S == 5)
        FN(gather_body)(buf, w, bias, y, accum, g, nxt, nlen, 5, 5, 0);
    else
        FN(gather_body)(buf, w, bias, y, accum, g, nxt, nlen, g->R, g->S, 0);
}

/* ---- unpadded rows: stride 1, dilation 1, S in {3, 5}, pw = 0 or (S - 1) / 2 ----------
 * The input plane is read in place: rows outside it point at a zero row, and the border
 * columns of the first / last vector of a row are zeroed: by lane shifts (xload, the
 * backward-weight kernel) or by masks (xloadm, forward). */

/* lanes moved up by k (zeros enter at lane 0) / down by k (zeros enter at the top) */
FC_AI V FN(shr)(V v, const int k) {
    FC_IT m;
    for (int l = 0; l < VW; l++) m[l] = l < k ? VW : l - k;
    return __builtin_shuffle(v, (V){0}, m);
}
FC_AI V FN(shl)(V v, const int k) {
    FC_IT m;
    for (int l = 0; l < VW; l++) m[l] = l + k < VW ? l + k : VW;
    return __builtin_shuffle(v, (V){0}, m);
}

/* Input columns q0 - PW + s .. + VW - 1 of row (zeros outside [0, W)): kind 0 is the first
 * vector of a row (q0 = 0), 2 the last (q0 = W - VW), 1 any vector inside. */
FC_AI V FN(xload)(const T *row, int q0, int W, const int s, const int PW, const int kind) {
    if (kind == 0 && s < PW) return FN(shr)(FN(ld)(row), PW - s);
    if (kind == 2 && s > PW) return FN(shl)(FN(ld)(row + W - VW), s - PW);
    return FN(ld)(row + q0 - PW + s);
}

/* The same columns, read in place: the first / last vector of a row loads across the row
 * border (the neighbouring row's elements, or a copied row's zero guard; see dgather_body)
 * and zeroes those lanes with a mask: one load and one AND instead of two shuffles. */
FC_AI V FN(xloadm)(const T *row, int q0, const int s, const int PW, const int kind) {
    const V v = FN(ld)(row + q0 - PW + s);
    FC_IT m;
    if (kind == 0 && s < PW) {
        for (int l = 0; l < VW; l++) m[l] = l < PW - s ? 0 : -1;
        return (V)((FC_IT)v & m);
    }
    if (kind == 2 && s > PW) {
        for (int l = 0; l < VW; l++) m[l] = l >= VW - (s - PW) ? 0 : -1;
        return (V)((FC_IT)v & m);
    }
    return v;
}

/* Output rows p, p + 1 (two = 1) or p at column q0: rows[0 .. R] are input rows p - ph + i. */
FC_AI void FN(dvec)(const T *const *rows, const T *w, V *a0, V *a1, int q0, const int two,
                    const int R, const int S, const int PW, const int kind) {
    V u = *a0, v = *a1;
    for (int r = 0; r < R + two; r++)
        for (int s = 0; s < S; s++) {
            V x = FN(xloadm)(rows[r], q0, s, PW, kind);
            if (two && r > 0 && r < R) FC_REG(x);
            if (r < R) u += w[r * S + s] * x;
            if (two && r > 0) v += w[(r - 1) * S + s] * x;
        }
    *a0 = u;
    *a1 = v;
}

/* One (two = 0) or two output rows y0, y1 = y0 + Q. */
FC_AI void FN(drows)(const T *const *rows, const T *w, V vb, T *y0, int accum, int Q, const int two,
                     const int R, const int S, const int PW) {
    T *y1 = y0 + Q;
    const int ql = Q - VW;
    /* the last vector first: in accumulate mode it must read y before the row is stored */
    V l0 = accum ? FN(ld)(y0 + ql) : vb, l1 = two ? (accum ? FN(ld)(y1 + ql) : vb) : vb;
    FN(dvec)(rows, w, &l0, &l1, ql, two, R, S, PW, PW ? 2 : 1);
    V f0 = accum ? FN(ld)(y0) : vb, f1 = two ? (accum ? FN(ld)(y1) : vb) : vb;
    FN(dvec)(rows, w, &f0, &f1, 0, two, R, S, PW, PW ? 0 : 1);
    FN(st)(y0, f0);
    if (two) FN(st)(y1, f1);
    for (int q0 = VW; q0 < ql; q0 += VW) {
        V a0 = accum ? FN(ld)(y0 + q0) : vb, a1 = two ? (accum ? FN(ld)(y1 + q0) : vb) : vb;
        FN(dvec)(rows, w, &a0, &a1, q0, two, R, S, PW, 1);
        FN(st)(y0 + q0, a0);
        if (two) FN(st)(y1 + q0, a1);
    }
    FN(st)(y0 + ql, l0);
    if (two) FN(st)(y1 + ql, l1);
}

/* Rows outside the plane read the zero row zrow; rows 0 / H - 1 read top / bot instead
 * when those are not NULL (copies with zero guards, for planes whose neighbouring memory
 * may not exist: the array's first and last rows). */
FC_AI void FN(dgather_body)(const T *restrict x, const T *restrict zrow, const T *top, const T *bot,
                            const T *restrict w, T bias, T *restrict y, int accum, const fc_dwg *g,
                            const int R, const int S, const int PW) {
    const int P = g->P, Q = g->Q, H = g->H, W = g->W, ph = g->ph;
    const V vb = (V){0} + bias;
    const T *rows[6];
    int p = 0;
#define FC_ROW(ih) ((ih) < 0 || (ih) >= H ? zrow : (ih) == 0 && top ? top : (ih) == H - 1 && bot ? bot \
                    : x + (ptrdiff_t)(ih) * W)
    for (; p + 2 <= P; p += 2) {
        for (int i = 0; i <= R; i++) rows[i] = FC_ROW(p - ph + i);
        FN(drows)(rows, w, vb, y + (ptrdiff_t)p * Q, accum, Q, 1, R, S, PW);
    }
    if (p < P) {
        for (int i = 0; i < R; i++) rows[i] = FC_ROW(p - ph + i);
        FN(drows)(rows, w, vb, y + (ptrdiff_t)p * Q, accum, Q, 0, R, S, PW);
    }
#undef FC_ROW
}

/* Whether g takes the unpadded path (the caller's zeroed buffer holds >= W zeros). */
static inline int FN(direct_ok)(const fc_dwg *g) {
    /* (Q - 1) % VW < pw - 1 would put the last inner vector's taps past the row end */
    return g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && (g->S == 3 || g->S == 5) &&
           (g->pw == 0 || 2 * g->pw == g->S - 1) && g->W >= VW + g->S && g->R <= 5 &&
           (g->pw < 2 || (g->Q - 1) % VW >= g->pw - 1);
}

/* The unpadded path on plane x; buf: the task buffer (zeroed by the caller), edges: bit 0
 * set when memory before x may be read, bit 1 when memory after it may (other planes of
 * the same array).  Else row 0 / H - 1 is copied between zero guards in buf. */
FC_ATTR static void FN(dgather)(const T *x, T *buf, int edges, const T *w, T bias, T *y, int accum,
                                const fc_dwg *g) {
    const ptrdiff_t A = FC_DW_GUARD(g->W);
    const T *zrow = buf + FC_DW_QB, *top = NULL, *bot = NULL;
    if (g->pw > 0 && !(edges & 1)) {
        FN(copy)(buf + A + FC_DW_QB, x, g->W);
        top = buf + A + FC_DW_QB;
    }
    if (g->pw > 0 && !(edges & 2)) {
        FN(copy)(buf + 2 * A + FC_DW_QB, x + (ptrdiff_t)(g->H - 1) * g->W, g->W);
        bot = buf + 2 * A + FC_DW_QB;
    }
    if (g->R == 3 && g->S == 3 && g->pw == 1)
        FN(dgather_body)(x, zrow, top, bot, w, bias, y, accum, g, 3, 3, 1);
    else if (g->R == 3 && g->S == 3)
        FN(dgather_body)(x, zrow, top, bot, w, bias, y, accum, g, 3, 3, 0);
    else if (g->R == 5 && g->S == 5 && g->pw == 2)
        FN(dgather_body)(x, zrow, top, bot, w, bias, y, accum, g, 5, 5, 2);
    else if (g->R == 5 && g->S == 5)
        FN(dgather_body)(x, zrow, top, bot, w, bias, y, accum, g, 5, 5, 0);
    else if (g->S == 3)
        FN(dgather_body)(x, zrow, top, bot, w, bias, y, accum, g, g->R, 3, g->pw);
    else
        FN(dgather_body)(x, zrow, top, bot, w, bias, y, accum, g, g->R, 5, g->pw);
}

/* ---- tasks: one input channel (n, c) and its Kg output channels ---------------------- */

/* Task buffers (buf: g->nbuf elements, dyb: g->ndyb) are zeroed once by the caller; pad
 * and pad_dy write only where input goes, so padding stays zero (bwd_in_task re-zeroes
 * the ring rows it reuses).
 * y[kk] = bias[kk] + x (*) w[kk], kk < Kg.  edges: see dgather.  (The unpadded path has
 * no software prefetch of the next plane or of y rows ahead: measured 15-20 % slower than
 * leaving these sequential streams to the hardware prefetchers.) */
FC_ATTR static void FN(fwd_task)(const T *x, const T *w, const T *b, T *y, int Kg, const fc_dwg *g, T *buf,
                                 int edges) {
    const int direct = FN(direct_ok)(g);
    const ptrdiff_t hw = (ptrdiff_t)g->H * g->W;
    if (!direct) FN(pad)(x, buf, g);
    for (int kk = 0; kk < Kg; kk++) {
        const T *wk = w + (ptrdiff_t)kk * g->R * g->S;
        T *yk = y + (ptrdiff_t)kk * g->P * g->Q;
        if (direct)
            FN(dgather)(x, buf, edges, wk, b ? b[kk] : 0, yk, 0, g);
        else  /* the next task's plane follows this one (if there is one: edges bit 1) */
            FN(gather)(buf, wk, b ? b[kk] : 0, yk, 0, g, kk == Kg - 1 && (edges & 2) ? x + hw : NULL, hw);
    }
}

/* Stride 1: dx = sum over kk of dy[kk] (*) flipped w[kk]; g describes that forward
 * correlation (input P x Q of dy, output H x W of dx, padding (R-1)*dh - ph).  edges:
 * of the task's first / last dy plane (see dgather). */
FC_ATTR static void FN(bwd_in1_task)(const T *dy, const T *wf, T *dx, int Kg, const fc_dwg *g, T *buf,
                                     int edges) {
    const ptrdiff_t hw = (ptrdiff_t)g->H * g->W;
    const int direct = FN(direct_ok)(g);
    for (int kk = 0; kk < Kg; kk++) {
        const T *wk = wf + (ptrdiff_t)kk * g->R * g->S;
        if (direct) {
            const int e = (kk > 0 ? 1 : edges & 1) | (kk < Kg - 1 ? 2 : edges & 2);
            FN(dgather)(dy + kk * hw, buf, e, wk, 0, dx, kk > 0, g);
        } else {
            FN(pad)(dy + kk * hw, buf, g);
            FN(gather)(buf, wk, 0, dx, kk > 0, g, kk < Kg - 1 || (edges & 2) ? dy + (kk + 1) * hw : NULL, hw);
        }
    }
}

/* the backward-input (strided) and backward-weight kernels, same type and ISA */
#include "_conv_direct_simd_bwd.h"

#undef FN
#undef V
#undef FC_IT
#undef T
#undef VW
#undef FC_AI
#undef FC_REG
#endif /* FC_T */
