"""Polyphase Winograd F(3x3, 4x4) forward for stride-2 convolutions with 5x5 .. 8x8 filters
(kernels/cython/_conv_wino_s2x.pyx, the ResNet stem's algorithm): against PyTorch in float64 on
the same float32 data and against the NumPy reference; filters 5x5 .. 8x8 and non-square, odd
and even sizes, paddings 0 .. 4, N = 1, C = 1, K not a multiple of 16 or 64, bias or none, one
and two threads (bitwise equal), NaN propagation; and that ineligible calls are refused."""
import numpy as np
import pytest
import torch

import fastconv
from fastconv.kernels.reference import conv as REF
from fastconv.testing import rel_error

X = pytest.importorskip("fastconv.kernels.cython._conv_wino_s2x", reason="Cython conv extension not built")
if not X.AVAILABLE:
    pytest.skip("needs a CPU with AVX-512F", allow_module_level=True)

F = torch.nn.functional
TOL = 3e-6  # measured 3e-7 .. 8e-7 on these shapes (module docstring)

# (N, C, H, W), K, (R, S), padding
CASES = [
    ((2, 3, 30, 30), 64, (7, 7), 3),     # stem-like
    ((1, 3, 17, 19), 20, (7, 7), 3),     # N = 1, odd sizes, K = 20
    ((2, 5, 21, 16), 33, (5, 5), 2),     # 5x5, K = 33
    ((1, 2, 12, 12), 7, (8, 8), 1),      # 8x8 (every phase row live)
    ((2, 4, 15, 13), 16, (6, 6), 0),     # 6x6, no padding
    ((3, 1, 23, 20), 80, (7, 5), (3, 2)),  # C = 1, non-square filter, K = 80 (64 + 16 tail)
    ((1, 6, 9, 40), 48, (5, 7), 4),      # wide row: several tile groups, padding 4
]


def _run(x, w, b, padding, nt):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    P, Q = (H + 2 * ph - R) // 2 + 1, (W + 2 * pw - S) // 2 + 1
    y = np.empty((N, K, P, Q), np.float32)
    return X.forward(x, w, b, (ph, pw), y, nt)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x{}k{}r{}p{}".format(*c))
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_and_reference(case, bias):
    xs, K, RS, padding = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((K, xs[1]) + RS).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    y = _run(x, w, b, padding, 2)
    tb = None if b is None else torch.from_numpy(b.astype(np.float64))
    want = F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), tb, stride=2,
                    padding=padding).numpy()
    assert y.shape == want.shape
    assert rel_error(y, want) < TOL
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                             2, padding, 1, 1)
    assert rel_error(y, ref) < TOL
    assert np.array_equal(y, _run(x, w, b, padding, 1))  # bands are independent: same bits on any thread count


def test_nan_propagates_to_its_outputs_only():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 24, 24)).astype(np.float32)
    w = rng.standard_normal((16, 3, 7, 7)).astype(np.float32)
    x[0, 1, 11, 11] = np.nan
    y = _run(x, w, None, 3, 2)
    bad = np.isnan(y[0, 0])
    assert bad[5, 5] and bad.sum() < bad.size  # a Winograd tile spreads it within its 3x3 outputs only
    assert np.isfinite(y[0, 0, :2, :2]).all()


def test_eligibility():
    ok = dict(x_dtype=np.float32, w_shape=(64, 3, 7, 7), stride=(2, 2), dilation=(1, 1), groups=1)
    assert X.eligible(**ok) == ""
    assert "float32" in X.eligible(**{**ok, "x_dtype": np.float64})
    assert "stride 2" in X.eligible(**{**ok, "stride": (1, 1)})
    assert "stride 2" in X.eligible(**{**ok, "groups": 3})
    assert "5 x 5" in X.eligible(**{**ok, "w_shape": (64, 3, 3, 3)})
    assert "8 x 8" in X.eligible(**{**ok, "w_shape": (64, 3, 9, 9)})


def test_conv_routes_7x7_stride2_here():
    """conv2d_forward's 'winograd_s2' runs 7x7 / 8x8 filters on this engine (5x5 and smaller on
    _conv_wino_s2's), and 'auto' takes it for the ResNet stem's shape."""
    from fastconv.kernels.cython import conv as CV
    assert CV._s2_engine(np.float32, (64, 3, 7, 7), (2, 2), (1, 1), 1) is X
    assert CV._s2_engine(np.float32, (64, 3, 8, 8), (2, 2), (1, 1), 1) is X
    assert CV._s2_engine(np.float32, (64, 32, 5, 5), (2, 2), (1, 1), 1) is not X
    assert CV._setup("conv2d_forward", (8, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1, 1, "auto", np.float32)[1] == "winograd_s2"
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 40, 36)).astype(np.float32)
    w = rng.standard_normal((24, 3, 7, 7)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    y = CV.conv2d_forward(x, w, b, 2, 3, 1, 1, algo="winograd_s2")
    want = F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                    torch.from_numpy(b.astype(np.float64)), stride=2, padding=3).numpy()
    assert rel_error(y, want) < TOL
    assert np.array_equal(y, _run(x, w, b, 3, 2))
