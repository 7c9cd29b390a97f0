"""Reference optimizer kernels against torch.optim, step for step, plus bad inputs."""
import numpy as np
import pytest
import torch

from fastconv.kernels.reference import optim as O

STEPS = 5
TOL = {np.float32: 2e-6, np.float64: 1e-13}


def _run(dtype, rng, torch_opt, kernel_step, shape=(4, 3)):
    """Apply the same gradients to a torch optimizer and to our kernel; return max |diff| / scale."""
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch_opt([tp])
    p, state = p0.copy(), {}
    for i, g in enumerate(grads, start=1):
        tp.grad = torch.tensor(g)
        opt.step()
        kernel_step(p, g, state, i)
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    assert p.dtype == dtype
    return state, opt.state[tp]


def _sgd(momentum, dampening, wd, nesterov, lr=0.1):
    def step(p, g, state, i):
        if momentum and "buf" not in state:
            state["buf"] = np.zeros_like(p)
        O.sgd_step(p, g, state.get("buf"), lr, momentum, dampening, wd, nesterov, i == 1)
    return step


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,dampening,wd,nesterov", [
    (0.0, 0.0, 0.0, False), (0.0, 0.0, 0.1, False), (0.9, 0.0, 0.0, False),
    (0.9, 0.3, 0.05, False), (0.8, 0.0, 0.05, True)])
def test_sgd_matches_torch(dtype, momentum, dampening, wd, nesterov, rng):
    state, tstate = _run(dtype, rng, lambda ps: torch.optim.SGD(
        ps, lr=0.1, momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov),
        _sgd(momentum, dampening, wd, nesterov))
    if momentum:
        np.testing.assert_allclose(state["buf"], tstate["momentum_buffer"].numpy(), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lr_decay,wd,init", [(0.0, 0.0, 0.0), (0.05, 0.1, 0.2)])
def test_adagrad_matches_torch(dtype, lr_decay, wd, init, rng):
    def step(p, g, state, i):
        state.setdefault("sum", np.full_like(p, init))
        O.adagrad_step(p, g, state["sum"], i, 0.1, lr_decay, wd, 1e-10)
    state, tstate = _run(dtype, rng, lambda ps: torch.optim.Adagrad(
        ps, lr=0.1, lr_decay=lr_decay, weight_decay=wd, initial_accumulator_value=init), step)
    np.testing.assert_allclose(state["sum"], tstate["sum"].numpy(), rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled,wd,betas", [(False, 0.0, (0.9, 0.999)), (False, 0.1, (0.8, 0.99)),
                                                 (True, 0.1, (0.9, 0.999)), (True, 0.0, (0.3, 0.9))])
def test_adam_matches_torch(dtype, decoupled, wd, betas, rng):
    def step(p, g, state, i):
        state.setdefault("m", np.zeros_like(p))
        state.setdefault("v", np.zeros_like(p))
        O.adam_step(p, g, state["m"], state["v"], i, 0.01, betas[0], betas[1], 1e-8, wd, decoupled)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    state, tstate = _run(dtype, rng, lambda ps: cls(ps, lr=0.01, betas=betas, weight_decay=wd), step)
    np.testing.assert_allclose(state["m"], tstate["exp_avg"].numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(state["v"], tstate["exp_avg_sq"].numpy(), rtol=TOL[dtype], atol=TOL[dtype])


def test_empty_and_nan():
    p, g = np.zeros(0, np.float32), np.zeros(0, np.float32)
    O.sgd_step(p, g, np.zeros(0, np.float32), 0.1, 0.9, 0.0, 0.0, False, True)
    O.adam_step(p, g, p.copy(), p.copy(), 1, 0.1, 0.9, 0.99, 1e-8, 0.0, False)
    p = np.array([1.0, 2.0])
    m, v = np.zeros(2), np.zeros(2)
    O.adam_step(p, np.array([np.nan, 1.0]), m, v, 1, 0.1, 0.9, 0.99, 1e-8, 0.0, False)
    assert np.isnan(p[0]) and np.isfinite(p[1]) and np.isnan(m[0])


def test_bad_inputs():
    p, g = np.ones(6), np.ones(6)
    with pytest.raises(ValueError, match="sgd_step.*'lr'.*>= 0"):
        O.sgd_step(p, g, None, -0.1, 0.0, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match="momentum_buf.*required"):
        O.sgd_step(p, g, None, 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match="Nesterov"):
        O.sgd_step(p, g, np.zeros(6), 0.1, 0.9, 0.5, 0.0, True, True)
    with pytest.raises(ValueError, match="'momentum_buf'.*C-contiguous"):
        O.sgd_step(p, g, np.zeros(12)[::2], 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="'param'.*C-contiguous"):
        O.sgd_step(np.ones((3, 2)).T, np.ones((2, 3)), None, 0.1, 0.0, 0.0, 0.0, False, True)
    ro = np.ones(6)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        O.adagrad_step(ro, g, np.zeros(6), 1, 0.1, 0.0, 0.0, 1e-10)
    with pytest.raises(ValueError, match="'grad' shape"):
        O.adagrad_step(p, np.ones(5), np.zeros(6), 1, 0.1, 0.0, 0.0, 1e-10)
    with pytest.raises(ValueError, match="'state_sum' shape"):
        O.adagrad_step(p, g, np.zeros(5), 1, 0.1, 0.0, 0.0, 1e-10)
    with pytest.raises(TypeError, match="mixed dtypes"):
        O.adagrad_step(p, g, np.zeros(6, np.float32), 1, 0.1, 0.0, 0.0, 1e-10)
    with pytest.raises(TypeError, match="'param'.*int64"):
        O.sgd_step(np.arange(6), g, None, 0.1, 0.0, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match="'step' must be >= 1"):
        O.adam_step(p, g, np.zeros(6), np.zeros(6), 0, 0.1, 0.9, 0.99, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="'beta1'"):
        O.adam_step(p, g, np.zeros(6), np.zeros(6), 1, 0.1, 1.0, 0.99, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="'beta2'"):
        O.adam_step(p, g, np.zeros(6), np.zeros(6), 1, 0.1, 0.9, -0.1, 1e-8, 0.0, False)
    with pytest.raises(TypeError, match="'decoupled' must be a bool"):
        O.adam_step(p, g, np.zeros(6), np.zeros(6), 1, 0.1, 0.9, 0.99, 1e-8, 0.0, 1)


def test_non_contiguous_grad_is_read():
    p = np.ones(3)
    O.sgd_step(p, np.arange(6.0)[::2], None, 0.5, 0.0, 0.0, 0.0, False, True)
    np.testing.assert_array_equal(p, [1.0, 0.0, -1.0])
