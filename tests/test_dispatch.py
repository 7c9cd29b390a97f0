import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fastconv import dispatch
from fastconv.kernels import reference as R


def test_default_cpu_order_prefers_cython_when_built():
    name, _ = dispatch.resolve("relu_forward", "cpu")
    ok, reason = dispatch.available("cython")
    assert name == ("cython" if ok else "reference"), reason


def test_explicit_backend_and_context():
    assert dispatch.resolve("relu_forward", "cpu", "reference")[0] == "reference"
    with fc.use_backend("reference"):
        assert dispatch.resolve("relu_forward", "cpu")[0] == "reference"
    with pytest.raises(ValueError, match="unknown backend"):
        dispatch.resolve("relu_forward", "cpu", "nope")
    with pytest.raises(dispatch.BackendUnavailable, match="does not run on device"):
        dispatch.resolve("relu_forward", "cpu", "cupy")


def test_missing_op_falls_through_on_same_device():
    dispatch.register("only_here", "cpu", "toy", lambda x: x + 1)
    try:
        # toy lacks relu_forward: with it preferred, relu still resolves (to a CPU backend)
        name, _ = dispatch.resolve("relu_forward", "cpu")
        assert name in ("cython", "reference")
        assert dispatch.resolve("only_here", "cpu", "toy")[1](1) == 2
    finally:
        dispatch.unregister_backend("toy")


def test_registered_kernel_is_used_by_functional():
    calls = []

    def fake_relu(x):
        calls.append(x.shape)
        return R.relu_forward(x)

    dispatch.register("relu_forward", "cpu", "spy", fake_relu)
    dispatch.register("relu_backward", "cpu", "spy", R.relu_backward)
    try:
        x = fc.Tensor(np.array([-1.0, 2.0], dtype=np.float32), requires_grad=True)
        y = F.relu(x, backend="spy")
        y.sum().backward()
        assert calls == [(2,)]
        np.testing.assert_array_equal(x.grad, [0.0, 1.0])
    finally:
        dispatch.unregister_backend("spy")


def test_info_lists_every_backend_with_reason():
    rows = {r["backend"]: r for r in dispatch.info()}
    assert set(rows) >= {"reference", "cython", "numba_cuda", "cupy"}
    assert rows["reference"]["available"]
    for r in rows.values():
        if not r["available"]:
            assert r["reason"], r
