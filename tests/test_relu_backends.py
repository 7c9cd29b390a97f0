"""The compiled path from day one: Cython ReLU against the reference and PyTorch."""
import numpy as np
import pytest
import torch

from fastconv import dispatch
from fastconv.kernels import reference as R

BACKENDS = ["reference"] + (["cython"] if dispatch.available("cython")[0] else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3), (1,), (7, 5), (4, 3, 33, 17), (1 << 17,)])
def test_relu_matches_torch(backend, dtype, shape, rng):
    K = dispatch.load(backend)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[: min(3, x.size)] = [np.nan, 0.0, -0.0][: min(3, x.size)]
    y = K.relu_forward(x)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.relu(t)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx = K.relu_backward(dy, y)
    np.testing.assert_array_equal(dx, t.grad.numpy())
    assert y.dtype == dtype and dx.dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_bad_input(backend):
    K = dispatch.load(backend)
    with pytest.raises(TypeError, match="relu_forward.*'x'.*int64"):
        K.relu_forward(np.arange(4))
    with pytest.raises(TypeError, match="'x' must be a NumPy or CuPy array"):
        K.relu_forward([1.0, 2.0])
    with pytest.raises(ValueError, match="relu_backward.*shape"):
        K.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        K.relu_backward(np.ones(3, np.float32), np.ones(3, np.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_non_contiguous_is_copied(backend):
    K = dispatch.load(backend)
    x = np.arange(-10, 10, dtype=np.float32).reshape(4, 5)[:, ::2]
    np.testing.assert_array_equal(K.relu_forward(x), np.maximum(x, 0))
