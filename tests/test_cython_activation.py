"""Cython activations against PyTorch and the reference, forward and backward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from fastconv import dispatch
from fastconv.kernels import reference as R

pytestmark = pytest.mark.skipif(not dispatch.available("cython")[0], reason="Cython extension not built")

# name -> (fastconv forward args builder, backward uses 'x' or 'y', torch function)
OPS = {
    "leaky_relu": ((0.07,), "x", lambda t: TF.leaky_relu(t, 0.07)),
    "sigmoid": ((), "y", torch.sigmoid),
    "tanh": ((), "y", torch.tanh),
    "gelu_none": (("none",), "x", lambda t: TF.gelu(t)),
    "gelu_tanh": (("tanh",), "x", lambda t: TF.gelu(t, approximate="tanh")),
}


def _kernels(backend, name):
    base = name.rsplit("_", 1)[0] if name.startswith(("gelu", "softmax", "log_softmax")) else name
    mod = dispatch.load(backend)
    return getattr(mod, base + "_forward"), getattr(mod, base + "_backward")


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5, 4), (1, 70000), (0, 4)])
def test_matches_torch_and_reference(name, dtype, shape):
    args, saved, tfn = OPS[name]
    fwd, bwd = _kernels("cython", name)
    rfwd, rbwd = _kernels("reference", name)
    rng = np.random.default_rng(len(name))
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    if x.size:
        x.reshape(-1)[:2] = [60.0, -60.0]  # saturating values
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = tfn(tx)
    y = fwd(x, *args)
    tol = dict(rtol=2e-5, atol=5e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(y, rfwd(x, *args), **tol)
    dy = rng.standard_normal(shape).astype(dtype)
    if x.size:
        ty.backward(torch.from_numpy(dy))
    dx = bwd(dy, x if saved == "x" else y, *args)
    if x.size:
        np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(dx, rbwd(dy, x if saved == "x" else y, *args), **tol)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape


@pytest.mark.parametrize("name", list(OPS))
def test_nan_propagates(name):
    args, saved, _ = OPS[name]
    fwd, _ = _kernels("cython", name)
    x = np.array([[1.0, np.nan, -2.0], [0.5, 0.25, 3.0]], np.float32)
    y = fwd(x, *args)
    assert np.isnan(y[0, 1])


def test_bad_input():
    k = dispatch.load("cython")
    with pytest.raises(TypeError, match="sigmoid_forward.*int64"):
        k.sigmoid_forward(np.arange(3))
    with pytest.raises(ValueError, match="tanh_backward.*shape"):
        k.tanh_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        k.gelu_backward(np.ones(3, np.float32), np.ones(3), "none")
    with pytest.raises(ValueError, match="approximate"):
        k.gelu_forward(np.ones(3, np.float32), "erf")
    with pytest.raises(TypeError, match="negative_slope"):
        k.leaky_relu_forward(np.ones(3, np.float32), "a")
    x = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)[:, ::2]  # non-contiguous: copied
    np.testing.assert_allclose(k.sigmoid_forward(x), R.sigmoid_forward(np.ascontiguousarray(x)), rtol=1e-6)


def _relu_bwd_want(dy, y):
    return np.where((y > 0) | np.isnan(y), dy, 0).astype(dy.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_aligned_thread_shares(dtype):
    """The element-wise loops cut each thread's share where the output is 64-byte aligned (the
    head before it goes to thread 0): every length 1..80 and a few past a 64-byte multiple, 1-3
    threads, against the reference (NumPy's small arrays start at varied offsets in a line)."""
    import fastconv

    k = dispatch.load("cython")
    rng = np.random.default_rng(3)
    prev = fastconv.get_num_threads()
    try:
        for nt in (1, 2, 3):
            fastconv.set_num_threads(nt)
            for n in list(range(1, 81)) + [70001, 98317]:
                x = rng.standard_normal(n).astype(dtype)
                x[n // 2] = np.nan
                dy = rng.standard_normal(n).astype(dtype)
                y = k.relu_forward(x)
                np.testing.assert_array_equal(y, R.relu_forward(x))
                np.testing.assert_array_equal(k.relu_backward(dy, y), _relu_bwd_want(dy, y))
                np.testing.assert_allclose(k.tanh_backward(dy, x), R.tanh_backward(dy, x), rtol=1e-5, atol=1e-6)
    finally:
        fastconv.set_num_threads(prev)


def test_relu_streaming_stores():
    """float32 relu forward and backward touching >= 16 MB stream the output with non-temporal stores
    (AVX-512 or AVX2 path chosen at run time): odd length, NaN, 0 and -0.0, 1 and 2 threads."""
    import fastconv

    k = dispatch.load("cython")
    rng = np.random.default_rng(4)
    n = (4 << 20) + 13
    y = rng.standard_normal(n).astype(np.float32)
    y[[0, 5, n - 1, n // 2]] = [np.nan, 0.0, np.nan, -0.0]
    dy = rng.standard_normal(n).astype(np.float32)
    want = _relu_bwd_want(dy, y)
    prev = fastconv.get_num_threads()
    try:
        for nt in (1, 2):
            fastconv.set_num_threads(nt)
            np.testing.assert_array_equal(k.relu_backward(dy, y), want)
            np.testing.assert_array_equal(k.relu_backward(dy[1:], y[1:]), want[1:])  # another alignment of dy/y
            for x in (y, y[3:]):
                got = k.relu_forward(x)
                np.testing.assert_array_equal(got, R.relu_forward(x))
                assert np.signbit(got[x == 0]).tolist() == np.signbit(x[x == 0]).tolist()  # -0.0 stays -0.0
    finally:
        fastconv.set_num_threads(prev)
