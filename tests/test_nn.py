"""fastconv.nn: Module bookkeeping, state dicts, the flat parameter buffer, and every layer
against torch.nn with copied weights (forward and backward)."""
import math

import numpy as np
import pytest
import torch

import fastconv as fc
from fastconv import nn
from fastconv.testing import rel_error

torch.manual_seed(0)


def T(a, grad=False):
    return fc.Tensor(np.ascontiguousarray(a), requires_grad=grad)


def copy_from_torch(fm, tm, strict=True):
    return fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()}, strict=strict)


def check_layer(fm, tm, x, tol=1e-5, train=None, seed_dy=12345):
    """Copy tm's weights into fm, run both on x, compare outputs, input grads and parameter grads."""
    copy_from_torch(fm, tm)
    if train is not None:
        fm.train(train)
        tm.train(train)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = tm(xt)
    xf = T(x, True)
    yf = fm(xf)
    assert yf.shape == tuple(yt.shape)
    assert rel_error(yf, yt.detach().numpy()) < tol
    dy = np.random.default_rng(seed_dy).standard_normal(yf.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(dy))
    (yf * T(dy)).sum().backward()
    assert rel_error(xf.grad, xt.grad.numpy()) < tol
    tp = dict(tm.named_parameters())
    for name, p in fm.named_parameters():
        assert p.grad is not None, name
        assert rel_error(p.grad, tp[name].grad.numpy()) < tol, name
    return yf, yt


# ---- Module bookkeeping -------------------------------------------------------------------------

def small_pair():
    f = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    t = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                            torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3))
    return f, t


def test_state_dict_keys_shapes_and_counts_match_torch():
    f, t = small_pair()
    fs, ts = f.state_dict(), t.state_dict()
    assert list(fs) == list(ts)
    for k in fs:
        assert tuple(fs[k].shape) == tuple(ts[k].shape), k
    assert fs["1.num_batches_tracked"].dtype == np.int64
    assert f.num_parameters() == sum(p.numel() for p in t.parameters())
    assert [n for n, _ in f.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in f.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in f.named_modules()] == [n for n, _ in t.named_modules()]
    assert len(list(f.children())) == 5


def test_registration_rules():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones(3, np.float32))
            self.sub = nn.Linear(2, 2)
            self.register_buffer("stat", np.zeros(2, np.float32))
            self.register_buffer("tmp", np.zeros(1, np.float32), persistent=False)
            self.plain = 5

    m = M()
    assert set(m.state_dict()) == {"w", "sub.weight", "sub.bias", "stat"}
    assert m.plain == 5 and isinstance(m.w, nn.Parameter) and m.w.requires_grad
    with pytest.raises(TypeError, match="cannot assign ndarray as parameter 'w'"):
        m.w = np.zeros(3)
    m.w = None
    assert "w" not in m.state_dict()
    del m.sub
    assert not any(k.startswith("sub.") for k in m.state_dict())

    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1, np.float32))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()
    # shared parameters are counted once
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, lin)
    assert seq.num_parameters() == 12 and len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_train_eval_apply_zero_grad_to():
    f, _ = small_pair()
    f.eval()
    assert all(not m.training for m in f.modules())
    f.train()
    assert all(m.training for m in f.modules())
    seen = []
    f.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Sequential" and seen.count("Conv2d") == 1
    for p in f.parameters():
        p.grad = np.ones_like(p.data)
    f.zero_grad()
    assert all(p.grad is None for p in f.parameters())
    f.to(dtype=np.float64)
    assert all(p.dtype == np.float64 for p in f.parameters())
    assert f.state_dict()["1.num_batches_tracked"].dtype == np.int64  # integer buffers keep their dtype
    assert f.state_dict()["1.running_mean"].dtype == np.float64
    with pytest.raises(ValueError, match="unknown device"):
        f.to("tpu")
    assert "Conv2d(3, 4, kernel_size=(3, 3)" in repr(f)


def test_containers():
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    ml.append(nn.Sigmoid())
    assert len(ml) == 3 and isinstance(ml[-1], nn.Sigmoid)
    with pytest.raises(IndexError):
        ml[3]
    md = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(3, 1)})
    assert list(md.keys()) == ["a", "b"] and "a" in md
    assert list(md.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(s[1:], nn.Sequential) and len(s[1:]) == 2
    assert s.get_submodule("2") is s[2]


# ---- load_state_dict ------------------------------------------------------------------------------

def test_load_state_dict_strict_reports_every_key():
    f, t = small_pair()
    sd = {k: v.detach().numpy() for k, v in t.state_dict().items()}
    del sd["0.bias"], sd["1.running_var"]
    sd["extra.weight"] = np.zeros(2, np.float32)
    sd["4.weight"] = np.zeros((3, 7), np.float32)
    with pytest.raises(nn.StateDictError) as ei:
        f.load_state_dict(sd)
    err = ei.value
    assert err.missing == ["0.bias", "1.running_var"]
    assert err.unexpected == ["extra.weight"]
    assert err.mismatched == [("4.weight", (3, 7), (3, 100))]
    msg = str(err)
    assert "Missing key(s) (2): '0.bias', '1.running_var'" in msg
    assert "Unexpected key(s) (1): 'extra.weight'" in msg
    assert "Size mismatch for '4.weight': checkpoint has shape (3, 7), model expects (3, 100)" in msg
    # nothing was loaded after a failure
    assert not np.array_equal(f.state_dict()["0.weight"], sd["0.weight"])
    # non-strict: missing/unexpected reported, but a shape mismatch still raises
    with pytest.raises(nn.StateDictError, match="Size mismatch"):
        f.load_state_dict(sd, strict=False)
    sd["4.weight"] = t.state_dict()["4.weight"].numpy()
    res = f.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["0.bias", "1.running_var"] and res.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(f.state_dict()["0.weight"], sd["0.weight"])
    with pytest.raises(TypeError, match="expected a mapping"):
        f.load_state_dict([1, 2])


def test_old_checkpoints_without_num_batches_tracked_load():
    f, t = small_pair()
    sd = {k: v for k, v in t.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert f.load_state_dict(sd).missing_keys == []


def test_load_state_dict_is_in_place_casts_and_accepts_torch_tensors():
    f, t = small_pair()
    w = f.state_dict()["0.weight"]
    res = f.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in t.state_dict().items()})
    assert repr(res) == "<All keys matched successfully>"
    assert f.state_dict()["0.weight"] is w and w.dtype == np.float32
    np.testing.assert_allclose(w, t.state_dict()["0.weight"].numpy(), rtol=1e-7)


def test_state_dict_round_trip_gives_same_outputs(rng):
    f, _ = small_pair()
    g, _ = small_pair()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    f.train()(T(x))  # move running stats off their defaults
    g.load_state_dict({k: v.copy() for k, v in f.state_dict().items()})
    f.eval(), g.eval()
    np.testing.assert_array_equal(f(T(x)).numpy(), g(T(x)).numpy())


# ---- flat parameter buffer -----------------------------------------------------------------------

def test_flatten_parameters_views_and_grads(rng):
    f, _ = small_pair()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    f.eval()
    ref = f(T(x)).numpy()
    flat = f.flatten_parameters()
    assert flat.data.size == f.num_parameters() and flat.is_intact()
    for p in f.parameters():
        assert np.shares_memory(p.data, flat.data) and np.shares_memory(p.grad, flat.grad)
    np.testing.assert_array_equal(f(T(x)).numpy(), ref)
    # gradients land in the flat buffer and accumulate there
    f(T(x)).sum().backward()
    g1 = flat.grad.copy()
    assert np.abs(g1).sum() > 0
    f(T(x)).sum().backward()
    np.testing.assert_allclose(flat.grad, 2 * g1, rtol=1e-6)
    w = f[0].weight
    assert w.grad is w._grad_buffer
    f.zero_grad()
    assert not flat.grad.any() and all(p.grad is not None for p in f.parameters())
    # a flat step is a single array update and every parameter sees it
    f(T(x)).sum().backward()
    before = w.data.copy()
    buf = flat.data
    buf -= 0.1 * flat.grad
    np.testing.assert_allclose(w.data, before - 0.1 * w.grad, rtol=1e-6)
    # load_state_dict writes in place, keeping the views
    f.load_state_dict({k: np.zeros_like(v) for k, v in f.state_dict().items()})
    assert flat.is_intact() and not flat.data.any()
    # dtype changes re-flatten
    f.to(dtype=np.float64)
    assert f._flat.data.dtype == np.float64 and f._flat.is_intact()


@pytest.mark.parametrize("optim_flat", [False, True])
def test_flat_parameters_with_fastconv_optim(optim_flat, rng):
    optim = pytest.importorskip("fastconv.optim")
    x = rng.standard_normal((4, 3)).astype(np.float32)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    b.flatten_parameters()
    oa = optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ob = optim.SGD(b.parameters(), lr=0.1, momentum=0.9, flat=optim_flat)
    for _ in range(3):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (m(T(x)) ** 2).sum().backward()
            o.step()
    for k in a.state_dict():
        np.testing.assert_allclose(a.state_dict()[k], b.state_dict()[k], rtol=1e-6)


def test_clip_grad_norm_matches_torch(rng):
    g = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,))]
    fp = [nn.Parameter(np.zeros_like(a)) for a in g]
    tp = [torch.zeros(a.shape, requires_grad=True) for a in g]
    for p, q, a in zip(fp, tp, g):
        p.grad = a.copy()
        q.grad = torch.from_numpy(a.copy())
    n1 = nn.utils.clip_grad_norm_(fp, 1.0)
    n2 = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    assert abs(n1 - float(n2)) < 1e-5 * float(n2)
    for p, q in zip(fp, tp):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-5)


# ---- init --------------------------------------------------------------------------------------

def test_init_reproducible_and_torch_bounds():
    nn.init.manual_seed(3)
    a = nn.Conv2d(16, 32, 3).weight.numpy().copy()
    nn.init.manual_seed(3)
    b = nn.Conv2d(16, 32, 3).weight.numpy().copy()
    np.testing.assert_array_equal(a, b)
    bound = 1 / math.sqrt(16 * 9)  # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    w = nn.Parameter(np.zeros((400, 300), np.float32))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.numpy()).max() <= 0.5
    nn.init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / 700)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2))


# ---- layers vs torch ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(stride=1, padding=1), dict(stride=2, padding=2, dilation=2),
                                dict(groups=2, padding="same", bias=False), dict(groups=4, stride=(2, 1))])
def test_conv2d(kw, rng):
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    check_layer(nn.Conv2d(4, 8, 3, **kw), torch.nn.Conv2d(4, 8, 3, **kw), x)


def test_conv1d(rng):
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    check_layer(nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2),
                torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), x)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv1d(4, 6, 3, groups=4)


def test_linear_and_flatten(rng):
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    check_layer(nn.Sequential(nn.Flatten(), nn.Linear(10, 4)),
                torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 4)), x)
    check_layer(nn.Linear(5, 2, bias=False), torch.nn.Linear(5, 2, bias=False), x)


@pytest.mark.parametrize("pair", [
    (nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
    (nn.MaxPool2d(3, 2, ceil_mode=True), torch.nn.MaxPool2d(3, 2, ceil_mode=True)),
    (nn.AvgPool2d(3, 2, 1, count_include_pad=False), torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
    (nn.AdaptiveAvgPool2d((3, 2)), torch.nn.AdaptiveAvgPool2d((3, 2))),
], ids=["max", "max_ceil", "avg", "adaptive"])
def test_pool2d(pair, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    check_layer(pair[0], pair[1], x)


def test_pool1d(rng):
    x = rng.standard_normal((2, 3, 11)).astype(np.float32)
    check_layer(nn.MaxPool1d(3, 2, 1), torch.nn.MaxPool1d(3, 2, 1), x)
    check_layer(nn.AvgPool1d(2), torch.nn.AvgPool1d(2), x)
    check_layer(nn.AdaptiveAvgPool1d(4), torch.nn.AdaptiveAvgPool1d(4), x)


@pytest.mark.parametrize("name", ["ReLU", "Sigmoid", "Tanh", "GELU", "LeakyReLU", "PReLU", "Softmax", "LogSoftmax"])
def test_activations(name, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    args = {"LeakyReLU": (0.2,), "PReLU": (3,), "Softmax": (1,), "LogSoftmax": (-1,)}.get(name, ())
    check_layer(getattr(nn, name)(*args), getattr(torch.nn, name)(*args), x)
    if name == "GELU":
        check_layer(nn.GELU("tanh"), torch.nn.GELU("tanh"), x)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_train_and_eval(momentum, rng):
    fm, tm = nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
    for step in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step).astype(np.float32)
        if step == 0:
            check_layer(fm, tm, x, train=True)
        else:
            fm(T(x)), tm(torch.from_numpy(x))
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(fm.state_dict()[k], v.numpy(), rtol=1e-5, err_msg=k)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    tm.eval(), fm.eval()
    assert rel_error(fm(T(x)), tm(torch.from_numpy(x)).detach().numpy()) < 1e-6
    with pytest.raises(ValueError, match="BatchNorm2d: expected a 4-D input"):
        fm(T(x[0]))


def test_batchnorm1d_and_no_running_stats(rng):
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    check_layer(nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4), x, train=True)
    check_layer(nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4), x[:, :, 0], train=False)
    fm = nn.BatchNorm1d(4, affine=False, track_running_stats=False)
    tm = torch.nn.BatchNorm1d(4, affine=False, track_running_stats=False)
    assert fm.state_dict() == {} and len(tm.state_dict()) == 0
    check_layer(fm, tm, x, train=False)  # no running stats: batch statistics even in eval


def test_layernorm(rng):
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    fm, tm = nn.LayerNorm(6), torch.nn.LayerNorm(6)
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5), tm.bias.uniform_(-1, 1)
    check_layer(fm, tm, x)
    check_layer(nn.LayerNorm((3, 6), elementwise_affine=False), torch.nn.LayerNorm((3, 6), elementwise_affine=False), x)


def test_dropout(rng):
    x = rng.standard_normal((200, 50)).astype(np.float32) + 3
    d = nn.Dropout(0.3)
    d.eval()
    assert d(T(x)).numpy() is x or np.array_equal(d(T(x)).numpy(), x)
    d.train()
    nn.init.manual_seed(5)
    y1 = d(T(x)).numpy()
    nn.init.manual_seed(5)
    y2 = d(T(x)).numpy()
    np.testing.assert_array_equal(y1, y2)
    kept = y1 != 0
    assert 0.65 < kept.mean() < 0.75
    np.testing.assert_allclose(y1[kept], x[kept] / 0.7, rtol=1e-6)


def test_losses(rng):
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    target = rng.integers(0, 4, 5)
    w = np.array([1.0, 2.0, 0.5, 1.0], np.float32)
    fm = nn.CrossEntropyLoss(weight=T(w), label_smoothing=0.1)
    tm = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(w), label_smoothing=0.1)
    xf, xt = T(logits, True), torch.from_numpy(logits).requires_grad_(True)
    lf, lt = fm(xf, T(target)), tm(xt, torch.from_numpy(target))
    assert abs(lf.item() - lt.item()) < 1e-5
    lf.backward(), lt.backward()
    assert rel_error(xf.grad, xt.grad.numpy()) < 1e-5
    y = rng.standard_normal((5, 4)).astype(np.float32)
    pos = np.array([1.0, 2.0, 3.0, 0.5], np.float32)
    for fm, tm, tgt in [(nn.MSELoss(), torch.nn.MSELoss(), y), (nn.HuberLoss(delta=0.5), torch.nn.HuberLoss(delta=0.5), y),
                        (nn.BCEWithLogitsLoss(pos_weight=T(pos), reduction="sum"),
                         torch.nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pos), reduction="sum"),
                         (y > 0).astype(np.float32))]:
        xf, xt = T(logits, True), torch.from_numpy(logits).requires_grad_(True)
        lf, lt = fm(xf, T(tgt)), tm(xt, torch.from_numpy(tgt))
        assert abs(lf.item() - lt.item()) < 1e-5 * max(1, abs(lt.item())), type(fm).__name__
        lf.backward(), lt.backward()
        assert rel_error(xf.grad, xt.grad.numpy()) < 1e-5, type(fm).__name__
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
