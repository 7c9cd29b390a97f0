"""``fastconv.config.autotune`` on the Cython conv: the first 'auto' call of a configuration times
every candidate algorithm on the call's arrays and caches the fastest; later calls run it; the
result matches the reference whatever wins; configurations (shapes, stride, dtype, threads) get
their own entries; forced algorithms and the switch off bypass it."""
import numpy as np
import pytest

import fastconv
from fastconv.kernels.reference import conv as REF
from fastconv.testing import rel_error

CV = pytest.importorskip("fastconv.kernels.cython.conv", reason="Cython conv extension not built")
TUNE = pytest.importorskip("fastconv.kernels.cython._conv_tune")


@pytest.fixture
def autotune(monkeypatch):
    monkeypatch.setattr(fastconv.config, "autotune", True)
    TUNE.clear()
    yield
    TUNE.clear()


def _data(xs, ws, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)


def test_first_call_times_candidates_then_caches(autotune, monkeypatch):
    x, w = _data((4, 16, 12, 12), (16, 16, 3, 3))
    b = np.ones(16, np.float32)
    calls = []
    real = CV.conv2d_forward

    y = CV.conv2d_forward(x, w, b, 1, 1, 1, 1)
    entries = TUNE.cache()
    assert len(entries) == 1
    (key, algo), = entries.items()
    assert key[0] == "conv2d_forward" and key[1] == (4, 16, 12, 12) and key[-1] == fastconv.get_num_threads()
    # every eligible 3x3 stride-1 algorithm was a candidate; the winner is one of them
    cands = TUNE._candidates(CV._setup, CV.ALGOS, "conv2d_forward", x.shape, w.shape, (1, 1, 1, 1), x.dtype)
    assert algo in cands and "gemm" in cands and "winograd" in cands and "direct" not in cands
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1, 1, 1)
    assert rel_error(y, ref) < 1e-5

    # a cached configuration is not timed again: no candidate runs, only the winner
    monkeypatch.setattr(TUNE, "_clock", lambda: calls.append(1) or 0.0)
    y2 = real(x, w, b, 1, 1, 1, 1)
    assert calls == []
    assert rel_error(y2, ref) < 1e-5
    assert TUNE.cache() == entries


def test_winner_is_the_fastest_and_used(autotune, monkeypatch):
    """With a fake clock that makes 'gemm' fastest, the cache holds 'gemm' and later calls use it."""
    x, w = _data((2, 16, 10, 10), (16, 16, 3, 3))
    clock = {"t": 0.0, "algo": None}
    real_choose = TUNE.choose

    def run_wrapper(setup, algos, op, xs, ws, conf, dtype, run):
        def timed(a):
            clock["algo"] = a
            return run(a)
        return real_choose(setup, algos, op, xs, ws, conf, dtype, timed)

    def fake_clock():
        clock["t"] += 0.001 if clock["algo"] == "gemm" else 1.0
        return clock["t"]

    monkeypatch.setattr(TUNE, "choose", run_wrapper)
    monkeypatch.setattr(TUNE, "_clock", fake_clock)
    CV.conv2d_forward(x, w, None, 1, 1, 1, 1)
    assert list(TUNE.cache().values()) == ["gemm"]


@pytest.mark.parametrize("op", ["conv2d_backward_input", "conv2d_backward_weight"])
def test_backward_ops_tuned_and_correct(autotune, op):
    x, w = _data((3, 8, 9, 9), (8, 8, 3, 3), np.float64, seed=2)
    dy = np.random.default_rng(3).standard_normal((3, 8, 9, 9))
    if op == "conv2d_backward_input":
        got = CV.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1)
        want = REF.conv2d_backward_input(dy, w, x.shape, 1, 1, 1, 1)
    else:
        got = CV.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1)
        want = REF.conv2d_backward_weight(dy, x, w.shape, 1, 1, 1, 1)
    assert rel_error(got, want) < 1e-12
    (key, algo), = TUNE.cache().items()
    assert key[0] == op and key[-2] == "float64"


def test_configurations_are_separate_and_forced_algo_bypasses(autotune):
    x, w = _data((2, 4, 11, 11), (6, 4, 3, 3))
    CV.conv2d_forward(x, w, None, 1, 1, 1, 1)
    CV.conv2d_forward(x, w, None, 2, 1, 1, 1)             # other stride
    CV.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, 1, 1, 1, 1)  # other dtype
    assert len(TUNE.cache()) == 3
    CV.conv2d_forward(x, w, None, 1, 0, 1, 1, algo="gemm")  # forced: not tuned
    assert len(TUNE.cache()) == 3


def test_off_by_default_and_errors_still_raised(monkeypatch):
    TUNE.clear()
    assert fastconv.config.autotune is False
    x, w = _data((2, 4, 8, 8), (6, 4, 3, 3))
    CV.conv2d_forward(x, w, None, 1, 1, 1, 1)
    assert TUNE.cache() == {}
    monkeypatch.setattr(fastconv.config, "autotune", True)
    with pytest.raises(ValueError, match="channel"):
        CV.conv2d_forward(x, w[:, :3], None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="bias"):
        CV.conv2d_forward(x, w, np.ones(5, np.float32), 1, 1, 1, 1)
    TUNE.clear()


def test_layer_api_is_tuned(autotune):
    """fastconv.nn / functional convs reach the kernels with 'auto', so the switch applies there:
    a forward and backward through the layer fill one cache entry per direction."""
    from fastconv import Tensor
    from fastconv.functional import conv2d
    x, w = _data((2, 8, 10, 10), (8, 8, 3, 3))
    tx, tw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    y = conv2d(tx, tw, None, 1, 1)
    y.sum().backward()
    ops = sorted(k[0] for k in TUNE.cache())
    assert ops == ["conv2d_backward_input", "conv2d_backward_weight", "conv2d_forward"]
    ref = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, 1, 1, 1, 1)
    assert rel_error(y.data, ref) < 1e-5
