"""fastconv.optim against torch.optim: optimizers, flat-buffer path, checkpoints, schedulers, clipping."""
import math

import numpy as np
import pytest
import torch

import fastconv as fc
from fastconv import dispatch
from fastconv import optim
from fastconv.kernels.reference import optim as ref_optim
from fastconv.optim import lr_scheduler as S

SHAPES = [(3, 4), (5,), (2, 1, 3)]
# the optimizers reach the kernels through dispatch: test every CPU backend that has them
BACKENDS = ["reference"] + (["cython"] if dispatch.available("cython")[0]
                            and hasattr(dispatch.load("cython"), "adam_step") else [])
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.05)),
]


def _params(rng, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grads(rng, steps, dtype=np.float64):
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def _fc_groups(arrays, kw):
    ps = [fc.Tensor(a.copy(), requires_grad=True) for a in arrays]
    # two groups, the second with its own lr, as in fine-tuning
    return ps, [{"params": ps[:2]}, {"params": ps[2:], "lr": kw["lr"] * 0.5}]


def _run_fc(name, kw, arrays, grads, flat, skip=None, backend=None):
    ps, groups = _fc_groups(arrays, kw)
    opt = getattr(optim, name)(groups, flat=flat, backend=backend, **kw)
    for i, gs in enumerate(grads):
        for j, (p, g) in enumerate(zip(ps, gs)):
            p.grad = None if (skip is not None and skip(i, j)) else g.copy()
        opt.step()
    return ps, opt


def _run_torch(name, kw, arrays, grads, skip=None):
    ps = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": kw["lr"] * 0.5}]
    opt = getattr(torch.optim, name)(groups, **kw)
    for i, gs in enumerate(grads):
        for j, (p, g) in enumerate(zip(ps, gs)):
            p.grad = None if (skip is not None and skip(i, j)) else torch.tensor(g)
        opt.step()
    return ps


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("flat", [False, True])
def test_matches_torch_step_for_step(name, kw, flat, backend, rng):
    arrays, grads = _params(rng), _grads(rng, 4)
    skip = lambda i, j: i == 1 and j == 1  # noqa: E731  one parameter without a gradient on step 2
    ps, _ = _run_fc(name, kw, arrays, grads, flat, skip, backend)
    tps = _run_torch(name, kw, arrays, grads, skip)
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,kw", CASES)
def test_flat_equals_per_tensor(name, kw, backend, rng):
    """Bit-identical for the element-wise NumPy reference; compiled backends may round the
    vectorised body and the tail of a loop differently (FMA), so they get 1 ulp."""
    same = np.testing.assert_array_equal if backend == "reference" else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-7, atol=1e-7))
    arrays, grads = _params(rng, np.float32), _grads(rng, 3, np.float32)
    ps_a, opt_a = _run_fc(name, kw, arrays, grads, flat=False, backend=backend)
    ps_b, opt_b = _run_fc(name, kw, arrays, grads, flat=True, backend=backend)
    for a, b in zip(ps_a, ps_b):
        same(a.data, b.data)
        assert b.data.dtype == np.float32
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        for name_, v in sa["state"][k].items():
            same(v, sb["state"][k][name_])


def test_flat_packs_params_and_makes_one_call_per_group(rng):
    calls = []

    def counting_sgd(param, *args):
        calls.append(param.shape)
        return ref_optim.sgd_step(param, *args)

    dispatch.register("sgd_step", "cpu", "counting", counting_sgd)
    try:
        ps, groups = _fc_groups(_params(rng), dict(lr=0.1))
        opt = optim.SGD(groups, lr=0.1, momentum=0.9, flat=True, backend="counting")
        base = ps[0].data.base
        assert base is not None and ps[1].data.base is base  # views into one buffer
        assert ps[1]._flat[0] is base and ps[1]._flat[1] == 12
        for p in ps:
            p.grad = np.ones(p.shape)
        opt.step()
        assert calls == [(12 + 5,), (6,)]  # one kernel call per group, over the flat buffer
        # the per-parameter state are views of the flat momentum buffer
        assert opt.state[ps[0]]["momentum_buffer"].base is opt.state[ps[1]]["momentum_buffer"].base
        calls.clear()
        ps[1].grad = None  # a missing gradient: per-tensor fallback for that group
        opt.step()
        assert calls == [(3, 4), (6,)]
        # rebinding .data (e.g. loading weights) is picked up: the value is copied into the buffer
        ps[0].data = np.zeros((3, 4))
        ps[1].grad = np.ones(5)
        calls.clear()
        opt.step()
        assert calls == [(17,), (6,)] and ps[0].data.base is base
        ps[0].grad = np.ones((3, 4), np.float32)
        with pytest.raises(TypeError, match="gradient of parameter 0 has dtype float32"):
            opt.step()
    finally:
        dispatch.unregister_backend("counting")


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("flat", [False, True])
def test_state_dict_resume_is_exact(name, kw, flat, rng):
    arrays, grads = _params(rng), _grads(rng, 5)
    ref_ps, _ = _run_fc(name, kw, arrays, grads, flat=False, backend="reference")
    ps, opt = _run_fc(name, kw, arrays, grads[:2], flat, backend="reference")
    sd = opt.state_dict()
    # a fresh optimizer on fresh parameters carrying the same values
    ps2, groups = _fc_groups([p.data for p in ps], kw)
    opt2 = getattr(optim, name)(groups, flat=flat, backend="reference", **kw)
    opt2.load_state_dict(sd)
    for gs in grads[2:]:
        for p, g in zip(ps2, gs):
            p.grad = g.copy()
        opt2.step()
    for a, b in zip(ps2, ref_ps):
        np.testing.assert_array_equal(a.data, b.data)
    # the state dict holds copies, not the live buffers (plain SGD has no state at all)
    saved = [v for s in sd["state"].values() for v in s.values() if hasattr(v, "shape")]
    live = [v for s in opt.state.values() for v in s.values() if hasattr(v, "shape")]
    assert len(saved) == len(live) == (0 if kw == dict(lr=0.1) else len(ps) * (2 if "Adam" in name else 1))
    assert not any(np.shares_memory(a, b) for a in saved for b in live)


def test_load_state_dict_from_torch(rng):
    arrays, grads = _params(rng), _grads(rng, 4)
    tps = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    topt = torch.optim.Adam(tps, lr=0.01)
    ps = [fc.Tensor(a.copy(), requires_grad=True) for a in arrays]
    for gs in grads[:2]:
        for tp, g in zip(tps, gs):
            tp.grad = torch.tensor(g)
        topt.step()
    for p, tp in zip(ps, tps):
        p.data = tp.detach().numpy().copy()
    opt = optim.Adam(ps, lr=0.01)
    opt.load_state_dict(topt.state_dict())
    for gs in grads[2:]:
        for p, tp, g in zip(ps, tps, gs):
            tp.grad, p.grad = torch.tensor(g), g.copy()
        topt.step()
        opt.step()
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_zero_grad_and_add_param_group_and_closure():
    a = fc.Tensor(np.ones(3), requires_grad=True)
    b = fc.Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([a], lr=0.5)
    opt.add_param_group({"params": b, "lr": 0.25})
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25] and opt.param_groups[1]["momentum"] == 0.0

    def closure():
        opt.zero_grad()
        loss = (a * a).sum() + (b * 2.0).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.item()) == 7.0
    np.testing.assert_allclose(a.data, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(b.data, [0.5, 0.5])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, 0.0)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_training_a_model_through_autograd_matches_torch(rng):
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    w0, b0 = rng.standard_normal((4, 2)), rng.standard_normal(2)
    w, b = fc.Tensor(w0.copy(), requires_grad=True), fc.Tensor(b0.copy(), requires_grad=True)
    tw, tb = torch.tensor(w0.copy(), requires_grad=True), torch.tensor(b0.copy(), requires_grad=True)
    opt = optim.AdamW([w, b], lr=0.05, flat=True)
    topt = torch.optim.AdamW([tw, tb], lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        loss = ((fc.Tensor(x) @ w + b - fc.Tensor(y)) ** 2).mean()
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = ((torch.tensor(x) @ tw + tb - torch.tensor(y)) ** 2).mean()
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) < 1e-12
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-12)


def test_bad_hyperparameters_and_params():
    p = fc.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="SGD: invalid lr"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta1"):
        optim.Adam([p], betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="beta2"):
        optim.AdamW([p], betas=(0.9, -0.5))
    with pytest.raises(ValueError, match="Adagrad: invalid eps"):
        optim.Adagrad([p], eps=-1.0)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="only optimize fastconv Tensors"):
        optim.SGD([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    q = fc.Tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="one dtype and device"):
        optim.SGD([p, q], lr=0.1, flat=True)
    opt = optim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = -1.0  # set behind the optimizer's back: the kernel still refuses
    p.grad = np.ones(3)
    with pytest.raises(ValueError, match="sgd_step.*'lr'"):
        opt.step()


def test_non_contiguous_param_is_rejected():
    p = fc.Tensor(np.ones((3, 2)).T, requires_grad=True)  # a transposed (F-ordered) view
    p.grad = np.ones((2, 3))
    for opt in (optim.SGD([p], lr=0.1), optim.Adam([p])):
        with pytest.raises(ValueError, match="'param'.*C-contiguous"):
            opt.step()
    opt = optim.SGD([p], lr=0.1, flat=True)  # flat mode packs it into a contiguous buffer
    opt.step()
    np.testing.assert_allclose(p.data, 0.9)


def test_load_state_dict_mismatch():
    p = fc.Tensor(np.ones(3), requires_grad=True)
    opt = optim.Adam([p])
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": [p]}, {"params": [fc.Tensor(np.ones(1), requires_grad=True)]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        optim.Adam([fc.Tensor(np.ones(4), requires_grad=True)]).load_state_dict(sd)


# ---- schedulers --------------------------------------------------------------------

def _pair(lrs=(0.1, 0.02)):
    fp = [fc.Tensor(np.ones(1), requires_grad=True) for _ in lrs]
    tp = [torch.ones(1, requires_grad=True) for _ in lrs]
    f = optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(fp, lrs)], lr=lrs[0])
    t = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(tp, lrs)], lr=lrs[0])
    return f, t


@pytest.mark.parametrize("name,kw", [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("CosineAnnealingLR", dict(T_max=6, eta_min=0.001)),
    ("LinearLR", dict(start_factor=0.25, total_iters=4)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.1, total_iters=7)),
])
def test_schedulers_match_torch(name, kw):
    f, t = _pair()
    fs, ts = getattr(S, name)(f, **kw), getattr(torch.optim.lr_scheduler, name)(t, **kw)
    assert fs.get_last_lr() == ts.get_last_lr()
    for _ in range(20):
        f.step()
        t.step()
        fs.step()
        ts.step()
        assert fs.get_last_lr() == ts.get_last_lr()
        assert [g["lr"] for g in f.param_groups] == [g["lr"] for g in t.param_groups]
    # resume: build the scheduler first, then load optimizer and scheduler state (torch's order)
    f2, _ = _pair()
    fs2 = getattr(S, name)(f2, **kw)
    f2.load_state_dict(f.state_dict())
    fs2.load_state_dict(fs.state_dict())
    fs.step()
    fs2.step()
    assert fs2.get_last_lr() == fs.get_last_lr()


@pytest.mark.parametrize("kw", [dict(patience=2, factor=0.5, cooldown=1, min_lr=0.004),
                                dict(mode="max", threshold_mode="abs", threshold=0.1, patience=1)])
def test_reduce_on_plateau_matches_torch(kw):
    f, t = _pair()
    fs = S.ReduceLROnPlateau(f, **kw)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(t, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.8, 0.8, 0.8]
    for m in metrics:
        fs.step(m)
        ts.step(m)
        assert fs.get_last_lr() == ts.get_last_lr()
    assert fs.num_bad_epochs == ts.num_bad_epochs and fs.best == ts.best


def test_scheduler_bad_arguments():
    f, _ = _pair()
    with pytest.raises(TypeError, match="not a fastconv Optimizer"):
        S.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="start_factor"):
        S.LinearLR(f, start_factor=0.0)
    with pytest.raises(ValueError, match="factor must be < 1"):
        S.ReduceLROnPlateau(f, factor=1.5)
    with pytest.raises(ValueError, match="T_max"):
        S.CosineAnnealingLR(f, T_max=0)


# ---- clipping ----------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, rng):
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ps = [fc.Tensor(np.zeros(s, np.float32), requires_grad=True) for s in SHAPES]
    tps = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for p, tp, g in zip(ps, tps, grads):
        p.grad, tp.grad = g.copy(), torch.tensor(g)
    ps.append(fc.Tensor(np.zeros(2, np.float32), requires_grad=True))  # no grad: ignored
    total = optim.clip_grad_norm_(ps, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
    assert abs(total.item() - ttotal.item()) <= 1e-6 * ttotal.item()
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-6)


def test_clip_grad_norm_nonfinite_and_value():
    p = fc.Tensor(np.zeros(3), requires_grad=True)
    p.grad = np.array([1.0, np.inf, -2.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    p.grad = np.array([0.5, -3.0, np.nan, 2.0])
    optim.clip_grad_value_(p, 1.0)
    np.testing.assert_array_equal(p.grad, [0.5, -1.0, np.nan, 1.0])
    assert optim.clip_grad_norm_([fc.Tensor(np.ones(2))], 1.0).item() == 0.0
    with pytest.raises(TypeError, match="max_norm"):
        optim.clip_grad_norm_([p], "big")


def test_rejected_step_leaves_state_untouched(rng):
    """A step the kernel refuses (bad lr set on the group) must not count: the next good
    step is still the first, exactly as torch would take it."""
    arrays, grads = _params(rng), _grads(rng, 2)
    for name, kw in (("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01))):
        ps = [fc.Tensor(a.copy(), requires_grad=True) for a in arrays]
        opt = getattr(optim, name)(ps, **kw)
        for p, g in zip(ps, grads[0]):
            p.grad = g.copy()
        opt.param_groups[0]["lr"] = -1.0
        with pytest.raises(ValueError, match="'lr'"):
            opt.step()
        opt.param_groups[0]["lr"] = kw["lr"]
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = g.copy()
            opt.step()
        tps = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
        topt = getattr(torch.optim, name)(tps, **kw)
        for gs in grads:
            for tp, g in zip(tps, gs):
                tp.grad = torch.tensor(g)
            topt.step()
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-13)
