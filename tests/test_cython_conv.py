"""Cython conv2d kernels against PyTorch (float64 truth) and the NumPy reference.

Every algorithm ('gemm', '1x1', 'direct', 'winograd' where it applies) is
forced on seeded random configurations; forward and both backward kernels.
"""
import zlib

import numpy as np
import pytest
import torch

import fastconv
from fastconv import config
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
HAS_WINO = "winograd" in getattr(CV, "ALGOS", ())

F = torch.nn.functional
TOL = {np.float32: 1e-5, np.float64: 1e-12}
WINO_TOL = {np.float32: 1e-3, np.float64: 1e-10}

# (x shape, K, (R, S), stride, padding, dilation, groups)
FIXED = [
    ((2, 3, 9, 11), 4, (3, 3), 1, 1, 1, 1),
    ((1, 1, 7, 6), 1, (3, 2), 1, 0, 1, 1),            # N = 1, C = 1, K = 1
    ((2, 4, 9, 11), 6, (3, 2), 2, (1, 2), (2, 1), 2),  # groups, asymmetric everything
    ((2, 6, 8, 7), 6, (3, 3), 1, 1, 1, 6),             # depthwise
    ((1, 4, 10, 9), 8, (3, 3), (2, 1), 1, 2, 4),       # depthwise, channel multiplier 2
    ((3, 8, 6, 5), 5, (1, 1), 1, 0, 1, 1),             # pointwise
    ((2, 6, 7, 7), 4, (1, 1), 1, 0, 1, 2),             # grouped pointwise
    ((2, 4, 8, 8), 8, (1, 1), 2, 0, 1, 1),             # strided 1x1 (not the GEMM-only path)
    ((2, 3, 12, 12), 4, (7, 7), 2, 3, 1, 1),           # resnet stem-like
    ((1, 16, 5, 5), 64, (3, 3), 1, 1, 1, 1),           # large K, tiny image
    ((2, 6, 10, 10), 16, (5, 5), 1, 0, 1, 1),          # lenet c3
    ((1, 5, 4, 13), 3, (4, 4), 3, 2, 1, 1),            # kernel 4, stride 3, padding > output row
    ((2, 16, 7, 9), 8, (3, 3), 1, 0, 1, 1),            # Winograd, no padding (odd output)
    ((1, 4, 5, 6), 3, (3, 3), 1, (2, 1), 1, 1),        # Winograd, padding 2 / 1
    ((1, 4, 14, 75), 5, (3, 3), 1, 1, 1, 1),           # Winograd runs of interior tiles (wide rows)
]


def _random_configs(n, seed=7):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        groups = int(rng.choice([1, 1, 2, 3]))
        C = groups * int(rng.integers(1, 4))
        K = groups * int(rng.integers(1, 4))
        R, S = (int(v) for v in rng.integers(1, 5, size=2))
        st = tuple(int(v) for v in rng.integers(1, 4, size=2))
        dil = tuple(int(v) for v in rng.integers(1, 3, size=2))
        pad = (int(rng.integers(0, R + 1)), int(rng.integers(0, S + 1)))
        H = dil[0] * (R - 1) + 1 + int(rng.integers(0, 9)) - pad[0]
        W = dil[1] * (S - 1) + 1 + int(rng.integers(0, 9)) - pad[1]
        H, W = max(H, 1), max(W, 1)
        out.append(((int(rng.integers(1, 4)), C, H, W), K, (R, S), st, pad, dil, groups))
    return out


CONFIGS = FIXED + _random_configs(14)


def _algos(cfg):
    xs, K, (R, S), st, pad, dil, g = cfg
    st2 = (st, st) if isinstance(st, int) else st
    pad2 = (pad, pad) if isinstance(pad, int) else pad
    dil2 = (dil, dil) if isinstance(dil, int) else dil
    algos = ["auto", "gemm", "direct"]
    if (R, S) == (1, 1) and st2 == (1, 1) and pad2 == (0, 0):
        algos.append("1x1")
    if HAS_WINO and (R, S) == (3, 3) and st2 == (1, 1) and dil2 == (1, 1) and g == 1:
        algos += ["winograd", "winograd4"]
    return algos


def _torch_truth(x, w, b, dy, st, pad, dil, g):
    tx, tw, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, w, b))
    ty = F.conv2d(tx, tw, tb, st, pad, dil, g)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    return ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


def _data(cfg, rng):
    xs, K, (R, S), st, pad, dil, g = cfg
    x = rng.standard_normal(xs)
    w = rng.standard_normal((K, xs[1] // g, R, S))
    b = rng.standard_normal(K)
    y = F.conv2d(torch.tensor(x), torch.tensor(w), None, st, pad, dil, g)
    dy = rng.standard_normal(tuple(y.shape))
    return x, w, b, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"c{i}" for i in range(len(CONFIGS))])
def test_conv_matches_torch_every_algo(cfg, dtype):
    rng = np.random.default_rng(zlib.crc32(repr(cfg).encode()))
    xs, K, ks, st, pad, dil, g = cfg
    x, w, b, dy = _data(cfg, rng)
    truth = _torch_truth(x, w, b, dy, st, pad, dil, g)
    xd, wd, bd, dyd = (v.astype(dtype) for v in (x, w, b, dy))
    for algo in _algos(cfg):
        tol = (WINO_TOL if algo.startswith("winograd") else TOL)[dtype]
        y = CV.conv2d_forward(xd, wd, bd, st, pad, dil, g, algo=algo)
        assert y.dtype == dtype and y.shape == truth[0].shape
        assert rel_error(y, truth[0]) <= tol, (algo, "forward")
        dx = CV.conv2d_backward_input(dyd, wd, xs, st, pad, dil, g, algo=algo)
        assert dx.dtype == dtype and rel_error(dx, truth[1]) <= tol, (algo, "backward_input")
        if algo == "winograd4":
            continue  # no F(4x4, 3x3) backward-weight
        dw = CV.conv2d_backward_weight(dyd, xd, wd.shape, st, pad, dil, g, algo=algo)
        assert dw.dtype == dtype and rel_error(dw, truth[2]) <= tol, (algo, "backward_weight")
    db = CV.conv2d_backward_bias(dyd)
    assert db.dtype == dtype and rel_error(db, truth[3]) <= TOL[dtype]


@pytest.mark.parametrize("cfg", [FIXED[0], FIXED[2], FIXED[3], FIXED[5], FIXED[8]])
def test_conv_matches_reference(cfg, rng):
    from fastconv.kernels import reference as R

    if not hasattr(R, "conv2d_forward"):  # the reference conv is written concurrently
        pytest.fail("reference conv2d_forward missing")
    xs, K, ks, st, pad, dil, g = cfg
    x, w, b, dy = _data(cfg, rng)
    np.testing.assert_allclose(CV.conv2d_forward(x, w, b, st, pad, dil, g),
                               R.conv2d_forward(x, w, b, st, pad, dil, g), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(CV.conv2d_backward_input(dy, w, xs, st, pad, dil, g),
                               R.conv2d_backward_input(dy, w, xs, st, pad, dil, g), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(CV.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g),
                               R.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(CV.conv2d_backward_bias(dy), R.conv2d_backward_bias(dy), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("N", [1, 5])
def test_conv_chunking_and_threads(threads, N, monkeypatch):
    """Tiny workspaces force many im2col blocks; N=1 splits one image across threads."""
    monkeypatch.setattr(config, "workspace_bytes", 4096)
    monkeypatch.setattr(CV, "COL_TARGET_BYTES", 2048)
    old = fastconv.config.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        rng = np.random.default_rng(threads * 10 + N)
        for cfg in [((N, 6, 13, 11), 5, (3, 3), 1, 1, 1, 1), ((N, 4, 12, 12), 6, (1, 1), 1, 0, 1, 2),
                    ((N, 6, 15, 9), 4, (5, 3), 2, 2, (1, 2), 2)]:
            xs, K, ks, st, pad, dil, g = cfg
            x, w, b, dy = _data(cfg, rng)
            truth = _torch_truth(x, w, b, dy, st, pad, dil, g)
            for algo in _algos(cfg):
                got = [CV.conv2d_forward(x, w, b, st, pad, dil, g, algo=algo),
                       CV.conv2d_backward_input(dy, w, xs, st, pad, dil, g, algo=algo)]
                if algo != "winograd4":
                    got.append(CV.conv2d_backward_weight(dy, x, w.shape, st, pad, dil, g, algo=algo))
                for a, t in zip(got, truth):
                    assert rel_error(a, t) <= 1e-12, algo
    finally:
        fastconv.set_num_threads(old)


@pytest.mark.parametrize("algo", ["gemm", "direct", "1x1"] + (["winograd", "winograd4"] if HAS_WINO else []))
def test_conv_empty_batch_and_nan(algo, rng):
    k = 1 if algo == "1x1" else 3
    pad = 0 if algo == "1x1" else 1
    x = np.zeros((0, 4, 6, 6), np.float32)
    w = rng.standard_normal((5, 4, k, k)).astype(np.float32)
    y = CV.conv2d_forward(x, w, None, 1, pad, 1, 1, algo=algo)
    assert y.shape == (0, 5, 6, 6) and y.dtype == np.float32
    dy = np.zeros(y.shape, np.float32)
    assert CV.conv2d_backward_input(dy, w, x.shape, 1, pad, 1, 1, algo=algo).shape == x.shape
    if algo != "winograd4":
        dw = CV.conv2d_backward_weight(dy, x, w.shape, 1, pad, 1, 1, algo=algo)
        assert dw.shape == w.shape and not dw.any()
    assert CV.conv2d_backward_bias(dy).shape == (5,)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    x[1, 2, 3, 3] = np.nan
    y = CV.conv2d_forward(x, w, None, 1, pad, 1, 1, algo=algo)
    assert np.isnan(y[1, :, 3, 3]).all() and np.isfinite(y[0]).all()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[0, 1, 2, 2] = np.nan
    assert np.isnan(CV.conv2d_backward_input(dy, w, x.shape, 1, pad, 1, 1, algo=algo)[0, :, 2, 2]).all()
    if algo != "winograd4":
        assert np.isnan(CV.conv2d_backward_weight(dy, x, w.shape, 1, pad, 1, 1, algo=algo)[1]).any()


def test_conv_non_contiguous_inputs_are_copied(rng):
    x = rng.standard_normal((2, 3, 10, 18))[:, :, :, ::2]
    w = rng.standard_normal((3, 4, 3, 3)).transpose(1, 0, 2, 3)
    b = rng.standard_normal(8)[::2]
    y = CV.conv2d_forward(x, w, b, 1, 1, 1, 1)
    t = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), 1, 1)
    np.testing.assert_allclose(y, t.numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal((2, 4, 10, 18))[:, :, ::1, ::2]
    dx = CV.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1)
    dw = CV.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1)
    db = CV.conv2d_backward_bias(dy)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    F.conv2d(tx, tw, None, 1, 1).backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-10)


def test_conv_invalid_arguments():
    f32 = np.float32
    x = np.ones((2, 4, 8, 8), f32)
    w = np.ones((6, 4, 3, 3), f32)
    b = np.ones(6, f32)
    dy = np.ones((2, 6, 8, 8), f32)
    fwd, bi, bw = CV.conv2d_forward, CV.conv2d_backward_input, CV.conv2d_backward_weight
    good = dict(stride=1, padding=1, dilation=1, groups=1)
    bad_geometry = [  # (kwargs override, exception)
        (dict(stride=0), ValueError), (dict(stride=-1), ValueError), (dict(stride=(1, 1, 1)), ValueError),
        (dict(stride=1.5), TypeError), (dict(padding=-1), ValueError), (dict(padding=None), TypeError), (dict(padding="1"), ValueError),
        (dict(dilation=0), ValueError), (dict(groups=0), ValueError), (dict(groups=3), ValueError),
        (dict(groups=2.0), TypeError), (dict(padding=0, dilation=5), ValueError),
    ]
    for over, exc in bad_geometry:
        kw = {**good, **over}
        args = (kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
        with pytest.raises(exc):
            fwd(x, w, b, *args)
        with pytest.raises(exc):
            bi(dy, w, x.shape, *args)
        with pytest.raises(exc):
            bw(dy, x, w.shape, *args)
    args = (1, 1, 1, 1)
    bad_calls = [
        (TypeError, "conv2d_forward.*'x'.*int64", lambda: fwd(x.astype(np.int64), w, b, *args)),
        (TypeError, "float16", lambda: fwd(x.astype(np.float16), w.astype(np.float16), None, *args)),
        (TypeError, "mixed dtypes", lambda: fwd(x, w.astype(np.float64), b, *args)),
        (TypeError, "mixed dtypes", lambda: fwd(x, w, b.astype(np.float64), *args)),
        (TypeError, "NumPy or CuPy array", lambda: fwd(x.tolist(), w, b, *args)),
        (TypeError, "NumPy or CuPy array", lambda: fwd(x, "w", b, *args)),
        (TypeError, "required", lambda: fwd(None, w, b, *args)),
        (ValueError, "4-D", lambda: fwd(x[0], w, b, *args)),
        (ValueError, "4-D", lambda: fwd(x, w[0], b, *args)),
        (ValueError, "1-D", lambda: fwd(x, w, b[None], *args)),
        (ValueError, "bias shape", lambda: fwd(x, w, b[:5], *args)),
        (ValueError, "channel mismatch", lambda: fwd(x, np.ones((6, 3, 3, 3), f32), b, *args)),
        (ValueError, "larger than the padded input", lambda: fwd(x[:, :, :2, :2], w, b, 1, 0, 1, 1)),
        (ValueError, "algo", lambda: fwd(x, w, b, *args, algo="fft")),
        (ValueError, "1x1", lambda: fwd(x, w, b, *args, algo="1x1")),
        (ValueError, "winograd", lambda: fwd(x, w, b, 2, 1, 1, 1, algo="winograd")),
        (ValueError, "winograd", lambda: fwd(x, np.ones((6, 4, 5, 5), f32), b, 1, 2, 1, 1, algo="winograd")),
        (ValueError, "winograd", lambda: bw(dy, x, w.shape, 1, 1, 1, 1, algo="winograd4")),
        (ValueError, "winograd", lambda: bw(dy[:, :, ::2, ::2].copy(), x, w.shape, 2, 1, 1, 1, algo="winograd")),
        (ValueError, "winograd", lambda: fwd(x, np.ones((6, 2, 3, 3), f32), b, 1, 1, 1, 2, algo="winograd4")),
        (ValueError, "winograd", lambda: bi(np.ones((2, 6, 12, 12), f32), w, x.shape, 1, 3, 1, 1, algo="winograd")),
        (TypeError, "backward_input.*'dy'", lambda: bi(dy.astype(np.int32), w, x.shape, *args)),
        (TypeError, "mixed dtypes", lambda: bi(dy, w.astype(np.float64), x.shape, *args)),
        (ValueError, "'dy' shape", lambda: bi(dy[:, :5], w, x.shape, *args)),
        (ValueError, "'dy' shape", lambda: bi(dy[:, :, 1:], w, x.shape, *args)),
        (ValueError, "x_shape", lambda: bi(dy, w, (2, 4, 8), *args)),
        (TypeError, "x_shape", lambda: bi(dy, w, (2, 4, 8, 8.0), *args)),
        (TypeError, "x_shape", lambda: bi(dy, w, None, *args)),
        (ValueError, "channel mismatch", lambda: bi(dy, w, (2, 5, 8, 8), *args)),
        (TypeError, "backward_weight.*'x'", lambda: bw(dy, x.astype(bool), w.shape, *args)),
        (TypeError, "mixed dtypes", lambda: bw(dy.astype(np.float64), x, w.shape, *args)),
        (ValueError, "w_shape", lambda: bw(dy, x, (6, 4, 3), *args)),
        (ValueError, "w_shape", lambda: bw(dy, x, (6, 4, 0, 3), *args)),
        (ValueError, "'dy' shape", lambda: bw(dy, x, (6, 4, 5, 5), *args)),
        (ValueError, "4-D", lambda: CV.conv2d_backward_bias(dy[0])),
        (TypeError, "NumPy or CuPy array", lambda: CV.conv2d_backward_bias(3.0)),
        (TypeError, "int64", lambda: CV.conv2d_backward_bias(np.ones((1, 2, 3, 4), np.int64))),
    ]
    for exc, msg, call in bad_calls:
        with pytest.raises(exc, match=msg):
            call()


def test_conv_exported_through_backend():
    from fastconv import dispatch

    K = dispatch.load("cython")
    for name in CV.__all__:
        assert getattr(K, name) is getattr(CV, name)
