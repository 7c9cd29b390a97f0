"""Code paths of the Cython LSTM / GRU cells against the NumPy reference: the float32 forward's
AVX-512 GEMM (fc_wx_f32: row tails of its 8-row tiles, column tails of its 32-column tiles) and
the BLAS path, one and several hidden-unit blocks (threads), odd sizes, N = 1, N = 0, float64."""
import numpy as np
import pytest

import fastconv
from fastconv import dispatch
from fastconv.kernels.reference import rnn as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")

TOL = {np.float32: 3e-5, np.float64: 1e-12}
# (N, I, H): N across the 32-column tiles (1, 16, 31, 33, 70), 4H / 3H rows not a multiple of 8, N = 0, I = 0,
# more hidden-unit blocks than threads (H = 130: five blocks of 32 units, the last of 2)
SIZES = [(1, 3, 5), (3, 1, 37), (16, 19, 8), (31, 7, 33), (33, 40, 20), (70, 6, 40), (0, 4, 6), (5, 0, 9), (9, 5, 130)]


@pytest.fixture
def rnn_mod():
    return pytest.importorskip("fastconv.kernels.cython.rnn")


@pytest.fixture(params=["wx-1block", "wx-split", "blas-split"])
def path(request, rnn_mod, monkeypatch):
    wx, split = request.param.startswith("wx"), request.param.endswith("split")
    prev_wx, prev_nt = rnn_mod._use_wx(wx), fastconv.get_num_threads()
    monkeypatch.setattr(rnn_mod, "CELL_SPLIT_FLOPS", 1 if split else 1 << 40)
    fastconv.set_num_threads(3 if split else 1)
    yield request.param
    rnn_mod._use_wx(prev_wx)
    fastconv.set_num_threads(prev_nt)


def _close(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def _data(N, I, H, G, dtype, seed):
    rng = np.random.default_rng(seed)
    r = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
    return r(N, I), r(N, H), r(N, H), r(G * H, I), r(G * H, H), r(G * H), r(G * H), r(N, H), r(N, H)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,H", SIZES)
def test_lstm_paths(path, dtype, N, I, H):
    K = dispatch.load("cython")
    x, h, c, wi, wh, bi, bh, dh, dc = _data(N, I, H, 4, dtype, N * 7 + H)
    for b_ih, b_hh in ((bi, bh), (None, bh), (None, None)):
        out = K.lstm_cell_forward(x, h, c, wi, wh, b_ih, b_hh)
        ref = R.lstm_cell_forward(x, h, c, wi, wh, b_ih, b_hh)
        for a, b in zip(out, ref):
            _close(a, b, dtype)
    got = K.lstm_cell_backward(dh, dc, x, h, c, wi, wh, out[2], out[1])
    want = R.lstm_cell_backward(dh, dc, x, h, c, wi, wh, ref[2], ref[1])
    for a, b in zip(got, want):
        _close(a, b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,H", SIZES)
def test_gru_paths(path, dtype, N, I, H):
    K = dispatch.load("cython")
    x, h, _, wi, wh, bi, bh, dh, _ = _data(N, I, H, 3, dtype, N * 5 + H)
    for b_ih, b_hh in ((bi, bh), (bi, None), (None, None)):
        out = K.gru_cell_forward(x, h, wi, wh, b_ih, b_hh)
        ref = R.gru_cell_forward(x, h, wi, wh, b_ih, b_hh)
        for a, b in zip(out, ref):
            _close(a, b, dtype)
    got = K.gru_cell_backward(dh, x, h, wi, wh, out[1])
    want = R.gru_cell_backward(dh, x, h, wi, wh, ref[1])
    for a, b in zip(got, want):
        _close(a, b, dtype)


def test_fast_check_falls_back(rnn_mod):
    """Arguments the fast check rejects (non-contiguous, a list) still get the reference's
    conversion or its error."""
    K = dispatch.load("cython")
    x, h, c, wi, wh, bi, bh, dh, dc = _data(4, 6, 5, 4, np.float32, 1)
    xs = np.asfortranarray(x)
    for a, b in zip(K.lstm_cell_forward(xs, h, c, wi, wh, bi, bh), R.lstm_cell_forward(x, h, c, wi, wh, bi, bh)):
        _close(a, b, np.float32)
    with pytest.raises(TypeError, match="lstm_cell_forward"):
        K.lstm_cell_forward(x.tolist(), h, c, wi, wh, bi, bh)
    with pytest.raises(TypeError, match="gru_cell_forward"):
        K.gru_cell_forward(x, h, wi[:15], wh[:15], bi[:15].astype(np.float64), None)
