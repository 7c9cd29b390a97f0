"""Algorithm choice of the Cython conv (``conv.py``'s ``algo='auto'``, see its docstring), and
the optional algorithm modules, each built as its own extension (missing ones are left out of
``ALGOS``)."""
import numpy as np

from .. import _checks as CK
from . import _conv_direct as _direct

ALGOS = ("auto", "1x1", "gemm", "direct")
try:  # built as their own extension modules
    from . import _conv_winograd as _wino
    ALGOS += ("winograd", "winograd4")
except ImportError:  # pragma: no cover - only when that module was not compiled
    _wino = None
try:
    from . import _conv_winograd5 as _wino5
    ALGOS += ("winograd5",)
except ImportError:  # pragma: no cover
    _wino5 = None
try:  # stride-2 polyphase Winograd (float32, AVX-512F CPUs)
    from . import _conv_wino_s2 as _ws2
    ALGOS += ("winograd_s2",)
except ImportError:  # pragma: no cover
    _ws2 = None
try:  # its F(3x3, 4x4) engine for 7x7 / 8x8 filters (the stem)
    from . import _conv_wino_s2x as _ws2x
except ImportError:  # pragma: no cover
    _ws2x = None


def _s2_engine(x_dtype, w_shape, stride, dilation, groups):
    """winograd_s2's module for this filter: F(3x3, 4x4) on 4x4 phase filters (7x7, 8x8: stem
    1 thread torch / it 1.59 against 1.17 for F(4x4, 2x2) on 2x2 sub-phases), else F(4x4, 2x2)."""
    if (_ws2x is not None and min(w_shape[2], w_shape[3]) >= 7
            and not _ws2x.eligible(x_dtype, w_shape, stride, dilation, groups)):
        return _ws2x
    return _ws2


WINO_MIN_C = 16  # auto picks Winograd for 3x3/stride 1 when C and K are at least this


def _setup(op, x_shape, w_shape, stride, padding, dilation, groups, algo, dtype=np.float64):
    """Validate geometry and pick an algorithm; returns (Geo as dict, algo, rows per chunk)."""
    stride, padding, dilation, groups, out = CK.conv2d_geometry(op, x_shape, w_shape, stride, padding, dilation, groups)
    CK.choice(op, "algo", algo, ALGOS)
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    if Cg < 1:
        raise ValueError(f"{op}: argument 'w' has an empty dimension: shape {tuple(w_shape)}")
    P, Q = out[2], out[3]
    crs = Cg * R * S
    for v in (C * H * W, K * P * Q, crs * Q, crs * K):
        if v >= 2 ** 31:
            raise ValueError(f"{op}: problem too large for 32-bit BLAS indexing (x {tuple(x_shape)}, w {tuple(w_shape)})")
    pointwise_ok = R == 1 and S == 1 and stride == (1, 1) and padding == (0, 0)
    # backward-input of a 3x3 / stride-1 conv is the forward conv of dy with the flipped,
    # transposed filters and padding 2 - p, so it may use Winograd too (p <= 2)
    # (backward-weight has an F(2x2, 3x3) path only)
    wino_ok = (_wino is not None and (R, S) == (3, 3) and stride == (1, 1) and dilation == (1, 1) and groups == 1
               and (op != "conv2d_backward_input" or max(padding) <= 2)
               and (op != "conv2d_backward_weight" or algo != "winograd4"))
    wino5_ok = (_wino5 is not None and (R, S) == (5, 5) and stride == (1, 1) and dilation == (1, 1) and groups == 1
                and (op == "conv2d_forward" or max(padding) <= 4))
    if algo == "auto":
        Kg = K // groups
        if (_ws2 is not None and op == "conv2d_forward" and dtype == np.float32
                and not _ws2.eligible(dtype, w_shape, stride, dilation, groups)
                and _ws2.pick(tuple(x_shape), tuple(w_shape), padding) == "winograd_s2"):
            algo = "winograd_s2"
        elif pointwise_ok:
            algo = "1x1"
        elif wino_ok and C >= WINO_MIN_C and K >= WINO_MIN_C:
            algo = _wino.pick(op, tuple(x_shape), tuple(w_shape), padding)  # 'winograd', 'winograd4' or 'gemm'
        elif (wino5_ok and C >= WINO_MIN_C and K >= WINO_MIN_C
              and _wino5.pick(op, tuple(x_shape), tuple(w_shape), padding) == "winograd5"):
            algo = "winograd5"  # (else small-channel direct loops or GEMM, below)
        elif Cg == 1 and groups > 1:  # depthwise: GEMMs of width 1 lose to direct loops
            algo = "direct"
        else:  # small-channel layers may go to direct loops too
            algo = _direct.pick(op, tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups)
    elif algo == "winograd_s2":
        why = "is forward only" if op != "conv2d_forward" else _ws2.eligible(dtype, w_shape, stride, dilation, groups)
        if why:
            raise ValueError(f"{op}: algo 'winograd_s2' (polyphase Winograd) {why} (x {tuple(x_shape)}, dtype "
                             f"{np.dtype(dtype).name}, w {tuple(w_shape)}, stride {stride}, dilation {dilation}, groups {groups})")
    elif algo == "1x1" and not pointwise_ok:
        raise ValueError(f"{op}: algo '1x1' needs a 1x1 kernel, stride 1 and no padding (w {tuple(w_shape)}, stride {stride}, padding {padding})")
    elif algo in ("winograd", "winograd4") and not wino_ok:
        raise ValueError(f"{op}: algo '{algo}' (winograd) needs a 3x3 convolution with stride 1, dilation 1 and groups 1, "
                         f"forward or backward-input with padding <= 2 (w {tuple(w_shape)}, stride {stride}, "
                         f"padding {padding}, dilation {dilation}, groups {groups})")
    elif algo == "winograd5" and not wino5_ok:
        raise ValueError(f"{op}: algo 'winograd5' needs a 5x5 convolution with stride 1, dilation 1 and groups 1, "
                         f"forward, or backward with padding <= 4 (w {tuple(w_shape)}, stride {stride}, "
                         f"padding {padding}, dilation {dilation}, groups {groups})")
    return (stride, padding, dilation, groups, out), algo
