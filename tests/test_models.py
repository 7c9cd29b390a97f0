"""fastconv.models: published parameter counts, forward+backward of every model on a small
input, and torch.nn rebuilds (no torchvision) of ResNet-18, LeNet-5, VGG, the CIFAR ResNet, a small
DenseNet and GoogLeNet's Inception block, with weights copied through a .npz file: logits within
1e-4 relative (eval and training mode), gradients too."""
import collections

import numpy as np
import pytest
import torch

import fastconv as fc
from fastconv import models as M
from fastconv.models.googlenet import Inception as GoogLeNetInception
from fastconv.testing import rel_error

TV_COUNTS = {  # torchvision's published figures
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet152": 60_192_808,
    "alexnet": 61_100_840, "vgg16": 138_357_544, "densenet121": 7_978_856, "densenet201": 20_013_928,
    "googlenet": 6_624_904, "inception_v3": 27_161_264, "resnext50_32x4d": 25_028_904,
}
_cache = {}


def build(name):
    """Construct (once per session: construction of the big models dominates) a default model."""
    if name == "vgg16":  # 0.5 GB of float32: never cached
        return M.get_model(name)
    if name not in _cache:
        _cache[name] = M.get_model(name)
    return _cache[name]


@pytest.mark.parametrize("name", sorted(TV_COUNTS))
def test_parameter_counts_match_torchvision(name):
    assert build(name).num_parameters() == TV_COUNTS[name]


def test_other_parameter_counts():
    assert M.googlenet(aux_logits=True).num_parameters() == 13_004_888
    assert M.inception_v3(aux_logits=False).num_parameters() == 27_161_264 - 3_326_696  # AuxLogits removed
    assert M.lenet5().num_parameters() == 61_706          # LeCun's 32x32 LeNet-5, full C3 connections
    assert M.resnet20().num_parameters() == 269_722       # He et al. option A: 0.27M
    assert M.resnet56().num_parameters() == 853_018       # 0.85M
    assert M.resnet20(shortcut="B").num_parameters() > 269_722
    m = M.resnet18(num_classes=10, in_channels=1)
    assert m.conv1.weight.shape == (64, 1, 7, 7) and m.fc.weight.shape == (10, 512)


def test_registry():
    names = M.list_models()
    for n in ["lenet5", "alexnet", "vgg11", "vgg19_bn", "resnet152", "densenet201", "googlenet", "inception_v3",
              "resnet20", "resnet32", "resnet56", "cnn_rnn", "conv1d_classifier", "multitask"]:
        assert n in names
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*available"):
        M.get_model("resnet9000")


# ---- forward + backward of every family ---------------------------------------------------------

def run_fwd_bwd(model, shape, train=True, seed=0):
    model.train(train)
    x = fc.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), requires_grad=True)
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    loss = logits.sum() if not isinstance(out, tuple) else sum(o.sum() for o in out[1:] if o is not None) + out[0].sum()
    loss.backward()
    assert np.isfinite(logits.numpy()).all() and np.isfinite(x.grad).all() and np.abs(x.grad).sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    return out, missing


@pytest.mark.parametrize("name,kw,shape", [
    ("lenet5", {}, (2, 1, 32, 32)),
    ("lenet5_relu", {"c1_padding": 2}, (2, 1, 28, 28)),
    ("alexnet", {"num_classes": 10}, (1, 3, 64, 64)),
    ("vgg11_bn", {"num_classes": 10, "hidden_features": 32, "pool_size": 1}, (2, 3, 32, 32)),
    ("resnet50", {"num_classes": 10}, (2, 3, 32, 32)),
    ("densenet121", {"num_classes": 10}, (2, 3, 32, 32)),
    ("resnet20", {}, (2, 3, 16, 16)),
    ("conv1d_classifier", {"in_channels": 2}, (2, 2, 32)),
])
def test_forward_backward(name, kw, shape):
    model = M.get_model(name, **kw)
    out, missing = run_fwd_bwd(model, shape)
    assert out.shape == (shape[0], kw.get("num_classes", 10))
    assert missing == []


def test_googlenet_with_aux_outputs():
    m = M.googlenet(num_classes=5, aux_logits=True)
    out, missing = run_fwd_bwd(m, (1, 3, 64, 64))
    assert isinstance(out, M.GoogLeNetOutputs) and out.logits.shape == (1, 5) and out.aux_logits1.shape == (1, 5)
    assert missing == []
    m.eval()
    assert m(fc.Tensor(np.zeros((1, 3, 64, 64), np.float32))).shape == (1, 5)


def test_inception_v3_eval_and_size_check():
    m = M.inception_v3(num_classes=4)
    out, missing = run_fwd_bwd(m, (1, 3, 75, 75), train=False)
    assert out.shape == (1, 4)
    assert all(n.startswith("AuxLogits.") for n in missing)  # aux head only runs in training
    with pytest.raises(ValueError, match=">= 75"):
        m(fc.Tensor(np.zeros((1, 3, 64, 64), np.float32)))
    m.train()
    with pytest.raises(ValueError, match="InceptionAux: needs a Mixed_6e map of at least 17x17"):
        m(fc.Tensor(np.zeros((2, 3, 75, 75), np.float32)))


def test_inception_aux_head():
    aux = M.inception.InceptionAux(768, 6)
    out, missing = run_fwd_bwd(aux, (2, 768, 17, 17))
    assert out.shape == (2, 6) and missing == []


@pytest.mark.parametrize("rnn,bidirectional", [("lstm", False), ("gru", True)])
def test_cnn_rnn(rnn, bidirectional):
    m = M.cnn_rnn(num_classes=7, rnn=rnn, hidden_size=8, num_layers=2, bidirectional=bidirectional,
                  channels=(4, 8), input_height=16)
    out, missing = run_fwd_bwd(m, (2, 1, 16, 12))
    assert out.shape == (2, 7) and missing == []
    seq = m.sequence(fc.Tensor(np.zeros((2, 1, 16, 12), np.float32)))
    assert seq.shape == (2, 3, 8 * 4)  # 12/4 columns of 8 channels x 16/4 rows
    with pytest.raises(ValueError, match="feature height"):
        m(fc.Tensor(np.zeros((2, 1, 32, 12), np.float32)))


def test_multitask_weighted_losses():
    m = M.multitask({"digit": 10, "parity": 2, "size": 1}, width=4, losses={"size": "mse"},
                    loss_weights={"parity": 0.5, "size": 2.0})
    rng = np.random.default_rng(0)
    x = fc.Tensor(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    out = m(x)
    assert {k: v.shape for k, v in out.items()} == {"digit": (4, 10), "parity": (4, 2), "size": (4, 1)}
    targets = {"digit": fc.Tensor(rng.integers(0, 10, 4)), "parity": fc.Tensor(rng.integers(0, 2, 4)),
               "size": fc.Tensor(rng.standard_normal((4, 1)).astype(np.float32))}
    total, per = m.loss(out, targets)
    expected = per["digit"].item() + 0.5 * per["parity"].item() + 2.0 * per["size"].item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match="unknown tasks"):
        M.multitask({"a": 2}, loss_weights={"b": 1.0})
    with pytest.raises(KeyError, match="parity"):
        m.loss(out, {"digit": targets["digit"], "size": targets["size"]})


# ---- torch.nn rebuilds with copied weights ------------------------------------------------------

from fastconv.bench.torch_models import TCifarResNet, TLeNet, TResNet  # noqa: E402  (shared with the CPU model benchmark)


class TVGG(torch.nn.Module):
    def __init__(self, cfg, bn, num_classes, hidden, pool, feat):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(torch.nn.MaxPool2d(2, 2))
            else:
                layers += [torch.nn.Conv2d(c, v, 3, padding=1)] + ([torch.nn.BatchNorm2d(v)] if bn else []) + \
                    [torch.nn.ReLU()]
                c = v
        self.features = torch.nn.Sequential(*layers)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(pool)
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(feat * pool * pool, hidden), torch.nn.ReLU(), torch.nn.Dropout(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _randomize_bn(tm, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def compare_with_torch(fm, tm, shape, tmp_path, tol=1e-4, train=False, seed=0):
    """torch state_dict -> .npz -> load_state_dict_file -> fastconv; compare logits and gradients."""
    path = tmp_path / "weights.npz"
    np.savez(path, **{k: v.detach().numpy() for k, v in tm.state_dict().items()})
    res = fm.load_state_dict(M.load_state_dict_file(path))
    assert res.missing_keys == [] and res.unexpected_keys == []
    fm.train(train), tm.train(train)
    tm.zero_grad(set_to_none=True)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    xf = fc.Tensor(x, requires_grad=True)
    yt, yf = tm(xt), fm(xf)
    assert rel_error(yf, yt.detach().numpy()) < tol
    dy = np.random.default_rng(seed + 1).standard_normal(yf.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    (yf * fc.Tensor(dy)).sum().backward()
    assert rel_error(xf.grad, xt.grad.numpy()) < tol
    tp = dict(tm.named_parameters())
    # relative per parameter, with a floor for gradients that vanish in exact arithmetic (a conv bias
    # feeding a training-mode batch norm): there both libraries return rounding noise
    floor = 1e-3 * max(float(np.linalg.norm(p.grad.numpy())) for p in tm.parameters())
    worst = max((float(np.linalg.norm(p.grad - tp[n].grad.numpy()))
                 / max(float(np.linalg.norm(tp[n].grad.numpy())), floor), n) for n, p in fm.named_parameters())
    assert worst[0] < tol, worst
    if train:  # running statistics were updated identically
        ts = tm.state_dict()
        for k, v in fm.state_dict().items():
            np.testing.assert_allclose(v, ts[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)


def test_resnet18_matches_torch(tmp_path):
    tm = TResNet([2, 2, 2, 2], 10)
    _randomize_bn(tm)
    fm = M.resnet18(num_classes=10)
    assert list(fm.state_dict()) == list(tm.state_dict())
    compare_with_torch(fm, tm, (2, 3, 32, 32), tmp_path)


def test_lenet5_matches_torch(tmp_path):
    compare_with_torch(M.lenet5(), TLeNet(), (3, 1, 32, 32), tmp_path, tol=1e-5)


@pytest.mark.parametrize("bn,train", [(False, False), (True, False), (True, True)])
def test_small_vgg_matches_torch(bn, train, tmp_path):
    cfg = [8, "M", 16, "M", 16, 16, "M"]
    tm = TVGG(cfg, bn, 5, hidden=32, pool=2, feat=16)
    for m in tm.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # dropout masks are not comparable across libraries
    _randomize_bn(tm)
    fm = M.vgg.VGG(M.vgg.make_layers(cfg, bn), num_classes=5, hidden_features=32, pool_size=2, feature_channels=16,
                   dropout=0.0)
    compare_with_torch(fm, tm, (2, 3, 16, 16), tmp_path, train=train)


def test_cifar_resnet20_matches_torch(tmp_path):
    tm = TCifarResNet(3)
    _randomize_bn(tm)
    fm = M.resnet20()
    assert list(fm.state_dict()) == list(tm.state_dict())
    compare_with_torch(fm, tm, (2, 3, 8, 8), tmp_path)
    compare_with_torch(M.resnet20(), tm, (4, 3, 8, 8), tmp_path, train=True, seed=1)


def test_state_dict_keys_follow_torchvision_naming():
    sd = build("densenet121").state_dict()
    assert "features.denseblock4.denselayer16.conv2.weight" in sd and "features.norm5.running_var" in sd
    assert "features.transition3.conv.weight" in sd and sd["classifier.weight"].shape == (1000, 1024)
    sd = build("inception_v3").state_dict()
    assert sd["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert sd["AuxLogits.fc.weight"].shape == (1000, 768) and "Conv2d_1a_3x3.bn.num_batches_tracked" in sd
    sd = build("googlenet").state_dict()
    assert sd["inception5b.branch3.1.conv.weight"].shape == (128, 48, 3, 3)
    assert sd["inception4a.branch4.1.bn.running_mean"].shape == (64,)
    sd = build("resnet50").state_dict()
    assert sd["layer3.0.downsample.0.weight"].shape == (1024, 512, 1, 1) and sd["fc.weight"].shape == (1000, 2048)
    assert [k for k in build("alexnet").state_dict() if k.startswith("classifier")] == [
        "classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
        "classifier.6.weight", "classifier.6.bias"]


class TDenseLayer(torch.nn.Module):
    def __init__(self, c, growth, bn_size):
        super().__init__()
        self.norm1, self.relu1 = torch.nn.BatchNorm2d(c), torch.nn.ReLU()
        self.conv1 = torch.nn.Conv2d(c, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = torch.nn.BatchNorm2d(bn_size * growth), torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, feats):
        x = self.conv1(self.relu1(self.norm1(torch.cat(feats, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class TDenseBlock(torch.nn.ModuleDict):
    def __init__(self, n, c, bn_size, growth):
        super().__init__()
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", TDenseLayer(c + i * growth, growth, bn_size))

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class TDenseNet(torch.nn.Module):
    """torchvision's DenseNet rebuilt from torch.nn (small configuration)."""

    def __init__(self, growth, blocks, init_features, bn_size, num_classes):
        super().__init__()
        od = collections.OrderedDict
        self.features = torch.nn.Sequential(od([
            ("conv0", torch.nn.Conv2d(3, init_features, 7, 2, 3, bias=False)), ("norm0", torch.nn.BatchNorm2d(init_features)),
            ("relu0", torch.nn.ReLU()), ("pool0", torch.nn.MaxPool2d(3, 2, 1))]))
        c = init_features
        for i, n in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", TDenseBlock(n, c, bn_size, growth))
            c += n * growth
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", torch.nn.Sequential(od([
                    ("norm", torch.nn.BatchNorm2d(c)), ("relu", torch.nn.ReLU()),
                    ("conv", torch.nn.Conv2d(c, c // 2, 1, bias=False)), ("pool", torch.nn.AvgPool2d(2, 2))])))
                c //= 2
        self.features.add_module("norm5", torch.nn.BatchNorm2d(c))
        self.classifier = torch.nn.Linear(c, num_classes)

    def forward(self, x):
        x = torch.relu(self.features(x))
        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("train", [False, True])
def test_small_densenet_matches_torch(train, tmp_path):
    tm = TDenseNet(4, (2, 2), 8, 2, 5)
    _randomize_bn(tm)
    fm = M.densenet.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=5)
    assert list(fm.state_dict()) == list(tm.state_dict())
    compare_with_torch(fm, tm, (2, 3, 32, 32), tmp_path, train=train)


def test_densenet_accepts_torchvision_legacy_keys():
    fm = M.densenet.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=5)
    sd = {k: v + 1 for k, v in fm.state_dict().items()}
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    fm.load_state_dict(legacy)
    np.testing.assert_array_equal(fm.state_dict()["features.denseblock2.denselayer2.conv2.weight"],
                                  sd["features.denseblock2.denselayer2.conv2.weight"])


class TBasicConv(torch.nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = torch.nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class TInception(torch.nn.Module):
    """torchvision's GoogLeNet Inception block rebuilt from torch.nn."""

    def __init__(self, cin, c1, r3, c3, r5, c5, pp):
        super().__init__()
        S = torch.nn.Sequential
        self.branch1 = TBasicConv(cin, c1, kernel_size=1)
        self.branch2 = S(TBasicConv(cin, r3, kernel_size=1), TBasicConv(r3, c3, kernel_size=3, padding=1))
        self.branch3 = S(TBasicConv(cin, r5, kernel_size=1), TBasicConv(r5, c5, kernel_size=3, padding=1))
        self.branch4 = S(torch.nn.MaxPool2d(3, 1, 1, ceil_mode=True), TBasicConv(cin, pp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


@pytest.mark.parametrize("train", [False, True])
def test_googlenet_inception_block_matches_torch(train, tmp_path):
    tm = TInception(8, 4, 4, 6, 2, 3, 3)
    _randomize_bn(tm)
    fm = GoogLeNetInception(8, 4, 4, 6, 2, 3, 3)
    compare_with_torch(fm, tm, (2, 8, 7, 7), tmp_path, train=train)
