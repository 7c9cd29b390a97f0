"""Every Cython entry point against malformed input: a wrong dtype, an extra axis or a shrunk
shape on each array argument, and non-contiguous views.  Each call must either return or raise
ValueError / TypeError (never crash, never another exception); non-contiguous inputs must give the
contiguous result (or, for arrays a kernel updates in place, a ValueError).  The table of valid
calls covers every function the backend exports: a new entry point without a row fails here."""
import numpy as np
import pytest

from fastconv import dispatch
from fastconv.kernels import reference as REF

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")

rng = np.random.default_rng(0)


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _bn(training=True):
    x, g, b = r(4, 3, 5, 5), r(3), r(3)
    y, m, s = REF.batch_norm_forward(x, g, b, None, None, training, 0.1, 1e-5)
    return x, g, b, y, m, s


def _lstm():
    x, h, c, wi, wh, bi, bh = r(3, 5), r(3, 4), r(3, 4), r(16, 5), r(16, 4), r(16), r(16)
    return (x, h, c, wi, wh, bi, bh), REF.lstm_cell_forward(x, h, c, wi, wh, bi, bh)


def _gru():
    x, h, wi, wh, bi, bh = r(3, 5), r(3, 4), r(12, 5), r(12, 4), r(12), r(12)
    return (x, h, wi, wh, bi, bh), REF.gru_cell_forward(x, h, wi, wh, bi, bh)


def _sdpa():
    q, k, v = r(2, 6, 4), r(2, 7, 4), r(2, 7, 3)
    out, lse = REF.scaled_dot_product_attention_forward(q, k, v, None, None, False)
    return q, k, v, out, lse


def _pool():
    x = r(2, 3, 7, 7)
    y, am = REF.max_pool2d_forward(x, 2, 2, 0, 1, False)
    return x, y, am


def _ln():
    x, g, b = r(4, 6), r(6), r(6)
    y, m, s = REF.layer_norm_forward(x, (6,), g, b, 1e-5)
    return x, g, b, y, m, s


def _ce():
    logits, t = r(5, 7), rng.integers(0, 7, 5)
    loss, lp = REF.softmax_cross_entropy_forward(logits, t, None, 0.0, "mean", -100)
    return logits, t, loss, lp


# op -> () -> (args, kwargs) of a valid call (float32, small shapes)
VALID = {
    "conv2d_forward": lambda: ((r(2, 3, 6, 6), r(4, 3, 3, 3), r(4), 1, 1, 1, 1), {}),
    "conv2d_backward_input": lambda: ((r(2, 4, 6, 6), r(4, 3, 3, 3), (2, 3, 6, 6), 1, 1, 1, 1), {}),
    "conv2d_backward_weight": lambda: ((r(2, 4, 6, 6), r(2, 3, 6, 6), (4, 3, 3, 3), 1, 1, 1, 1), {}),
    "conv2d_backward_bias": lambda: ((r(2, 4, 6, 6),), {}),
    "max_pool2d_forward": lambda: ((r(2, 3, 7, 7), 2, 2, 0, 1, False), {}),
    "max_pool2d_backward": lambda: (lambda x, y, am: ((r(*y.shape), am, x.shape), {}))(*_pool()),
    "avg_pool2d_forward": lambda: ((r(2, 3, 7, 7), 3, 2, 1, False, True), {}),
    "avg_pool2d_backward": lambda: ((r(2, 3, 4, 4), (2, 3, 7, 7), 3, 2, 1, False, True), {}),
    "adaptive_avg_pool2d_forward": lambda: ((r(2, 3, 7, 7), (2, 3)), {}),
    "adaptive_avg_pool2d_backward": lambda: ((r(2, 3, 2, 3), (2, 3, 7, 7)), {}),
    "relu_forward": lambda: ((r(3, 5),), {}),
    "relu_backward": lambda: ((r(3, 5), np.abs(r(3, 5))), {}),
    "leaky_relu_forward": lambda: ((r(3, 5), 0.1), {}),
    "leaky_relu_backward": lambda: ((r(3, 5), r(3, 5), 0.1), {}),
    "sigmoid_forward": lambda: ((r(3, 5),), {}),
    "sigmoid_backward": lambda: ((r(3, 5), np.abs(r(3, 5)) % 1), {}),
    "tanh_forward": lambda: ((r(3, 5),), {}),
    "tanh_backward": lambda: ((r(3, 5), np.tanh(r(3, 5))), {}),
    "gelu_forward": lambda: ((r(3, 5), "none"), {}),
    "gelu_backward": lambda: ((r(3, 5), r(3, 5), "tanh"), {}),
    "prelu_forward": lambda: ((r(2, 3, 4), r(3)), {}),
    "prelu_backward": lambda: ((r(2, 3, 4), r(2, 3, 4), r(3)), {}),
    "softmax_forward": lambda: ((r(3, 5), -1), {}),
    "softmax_backward": lambda: ((r(3, 5), REF.softmax_forward(r(3, 5), 1), 1), {}),
    "log_softmax_forward": lambda: ((r(3, 5, 2), 1), {}),
    "log_softmax_backward": lambda: ((r(3, 5), REF.log_softmax_forward(r(3, 5), -1), -1), {}),
    "softmax_cross_entropy_forward": lambda: ((r(5, 7), rng.integers(0, 7, 5), None, 0.0, "mean", -100), {}),
    "softmax_cross_entropy_backward": lambda: (lambda lg, t, loss, lp: (
        (np.ones_like(loss), lp, t, None, 0.0, "mean", -100), {}))(*_ce()),
    "mse_forward": lambda: ((r(4, 3), r(4, 3), "mean"), {}),
    "mse_backward": lambda: ((np.float32(1.0) * np.ones((), np.float32), r(4, 3), r(4, 3), "mean"), {}),
    "huber_forward": lambda: ((r(4, 3), r(4, 3), 1.0, "sum"), {}),
    "huber_backward": lambda: ((np.ones((4, 3), np.float32), r(4, 3), r(4, 3), 1.0, "none"), {}),
    "bce_with_logits_forward": lambda: ((r(4, 3), np.abs(r(4, 3)) % 1, None, None, "mean"), {}),
    "bce_with_logits_backward": lambda: ((np.ones((), np.float32), r(4, 3), np.abs(r(4, 3)) % 1, r(3), r(3),
                                          "mean"), {}),
    "batch_norm_forward": lambda: ((r(4, 3, 5, 5), r(3), r(3), np.zeros(3, np.float32), np.ones(3, np.float32),
                                    True, 0.1, 1e-5), {}),
    "batch_norm_backward": lambda: (lambda x, g, b, y, m, s: ((r(*x.shape), x, g, m, s, True), {}))(*_bn()),
    "batch_norm_act_forward": lambda: ((r(4, 3, 5, 5), r(3), r(3), None, None, True, 0.1, 1e-5, r(4, 3, 5, 5),
                                        True), {}),
    "batch_norm_act_backward": lambda: (lambda x, g, b, y, m, s: (
        (r(*x.shape), x, np.maximum(y, 0), g, m, s, True, True, True), {}))(*_bn()),
    "layer_norm_forward": lambda: ((r(4, 6), (6,), r(6), r(6), 1e-5), {}),
    "layer_norm_backward": lambda: (lambda x, g, b, y, m, s: ((r(*x.shape), x, (6,), g, m, s), {}))(*_ln()),
    "dropout_forward": lambda: ((r(4, 6), 0.3, 7), {}),
    "lstm_cell_forward": lambda: (_lstm()[0], {}),
    "lstm_cell_backward": lambda: (lambda a, o: ((r(3, 4), r(3, 4), a[0], a[1], a[2], a[3], a[4], o[2], o[1], True),
                                                 {}))(*_lstm()),
    "gru_cell_forward": lambda: (_gru()[0], {}),
    "gru_cell_backward": lambda: (lambda a, o: ((r(3, 4), a[0], a[1], a[2], a[3], o[1], True), {}))(*_gru()),
    "scaled_dot_product_attention_forward": lambda: ((r(2, 6, 4), r(2, 7, 4), r(2, 7, 3), None, None, False), {}),
    "scaled_dot_product_attention_backward": lambda: (lambda q, k, v, out, lse: (
        (r(*out.shape), q, k, v, out, lse, None, None, False), {}))(*_sdpa()),
    "sgd_step": lambda: ((r(10), r(10), np.zeros(10, np.float32), 0.1, 0.9, 0.0, 1e-4, False, True), {}),
    "adam_step": lambda: ((r(10), r(10), np.zeros(10, np.float32), np.zeros(10, np.float32), 1, 1e-3, 0.9, 0.999,
                           1e-8, 0.0, False), {}),
    "adagrad_step": lambda: ((r(10), r(10), np.zeros(10, np.float32), 1, 0.01, 0.0, 0.0, 1e-10), {}),
}
IN_PLACE = {"sgd_step", "adam_step", "adagrad_step", "batch_norm_forward", "batch_norm_act_forward"}
OK_ERRORS = (ValueError, TypeError)


def _names():
    K = dispatch.load("cython")
    return sorted(n for n in dir(K) if not n.startswith("_") and callable(getattr(K, n)) and n.endswith(
        ("_forward", "_backward", "_step", "_bias", "_input", "_weight")))


def test_every_entry_point_has_a_row():
    missing = sorted(set(_names()) - set(VALID))
    assert not missing, f"add a valid call for: {missing}"


def _outcome(fn, args, kwargs):
    try:
        return fn(*args, **kwargs), None
    except OK_ERRORS as exc:
        return None, exc


def _arrays(args):
    return [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.ndim > 0]


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    if a is None or np.isscalar(a):
        return a == b or (a != a and b != b)
    return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("name", sorted(VALID))
def test_malformed_arrays_raise_or_return(name):
    fn = getattr(dispatch.load("cython"), name)
    args, kwargs = VALID[name]()
    for i in _arrays(args):
        a = args[i]
        for bad in (a.astype(np.int64), a[None], a[..., :-1] if a.shape[-1] > 1 else a[:0]):
            mutated = list(args)
            mutated[i] = bad
            _outcome(fn, mutated, kwargs)  # any exception other than ValueError / TypeError fails
    with pytest.raises(TypeError):  # a non-array where an array belongs
        fn(*["x" if j == _arrays(args)[0] else a for j, a in enumerate(args)], **kwargs)


@pytest.mark.parametrize("name", sorted(VALID))
def test_non_contiguous_inputs(name):
    fn = getattr(dispatch.load("cython"), name)
    args, kwargs = VALID[name]()
    fresh = lambda: [a.copy() if isinstance(a, np.ndarray) else a for a in args]  # noqa: E731
    want, err = _outcome(fn, fresh(), kwargs)
    assert err is None, f"the valid call failed: {err}"
    for i in _arrays(args):
        mutated = fresh()
        a = mutated[i]
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        mutated[i] = big[..., ::2]  # same values, strided
        got, err = _outcome(fn, mutated, kwargs)
        if err is not None:
            assert name in IN_PLACE and isinstance(err, ValueError), f"arg {i}: {err}"
        else:
            assert _same(got, want), f"arg {i}: non-contiguous input changed the result"
