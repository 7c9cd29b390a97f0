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
