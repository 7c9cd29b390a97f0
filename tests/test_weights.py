"""Weight files (.npz, .safetensors, .pt/.pth) and fastconv checkpoints."""
import json
import struct
import sys

import numpy as np
import pytest
import torch

import fastconv as fc
from fastconv import models as M
from fastconv import nn
from fastconv.models import weights as W


def small_model():
    return M.resnet20(num_classes=3)


def torch_lenet_state():
    torch.manual_seed(0)
    A, P = torch.nn.Tanh, torch.nn.AvgPool2d
    t = torch.nn.Module()
    t.features = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5), A(), P(2, 2), torch.nn.Conv2d(6, 16, 5), A(), P(2, 2),
                                     torch.nn.Conv2d(16, 120, 5), A())
    t.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(120, 84), A(), torch.nn.Linear(84, 10))
    return t, t.state_dict()


def assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_state_dict_file_round_trip(ext, tmp_path):
    m = small_model()
    path = tmp_path / f"w{ext}"
    W.save_state_dict_file(m.state_dict(), path)
    sd = W.load_state_dict_file(path)
    assert_same_state({k: sd[k] for k in m.state_dict()}, m.state_dict())
    m2 = small_model()
    m2.load_state_dict(sd)
    assert_same_state(m2.state_dict(), m.state_dict())
    m3 = M.get_model("resnet20", num_classes=3, weights=path)
    assert_same_state(m3.state_dict(), m.state_dict())


def test_safetensors_interoperates_with_the_reference_library(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    st_torch = pytest.importorskip("safetensors.torch")
    m = small_model()
    ours = tmp_path / "ours.safetensors"
    W.save_state_dict_file(m.state_dict(), ours)
    theirs = st_numpy.load_file(str(ours))
    assert_same_state({k: theirs[k] for k in m.state_dict()}, m.state_dict())
    # files written by the library, including float16 / bfloat16 / float64 / int64 tensors
    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).half(), "c": torch.randn(2, 2).bfloat16(),
               "d": torch.randn(2).double(), "e": torch.arange(6).reshape(2, 3), "scalar": torch.tensor(7)}
    path = tmp_path / "lib.safetensors"
    st_torch.save_file(tensors, str(path), metadata={"format": "pt"})
    got = W.load_state_dict_file(path)
    for k, v in tensors.items():
        ref = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        np.testing.assert_array_equal(got[k], ref, err_msg=k)
        assert got[k].dtype == ref.dtype and got[k].shape == ref.shape


def test_pt_files_through_torch(tmp_path):
    t, sd = torch_lenet_state()
    plain = tmp_path / "lenet.pt"
    torch.save(sd, plain)
    wrapped = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, wrapped)
    m1 = M.get_model("lenet5", weights=plain)
    m2 = M.lenet5()
    m2.load_state_dict(W.load_state_dict_file(wrapped, strip_prefix="module."))
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    ref = t.features(torch.from_numpy(x))
    ref = t.classifier(ref).detach().numpy()
    for m in (m1, m2):
        np.testing.assert_allclose(m.eval()(fc.Tensor(x)).numpy(), ref, rtol=1e-4, atol=1e-6)


def test_pt_without_torch_gives_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, path)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs PyTorch.*convert the file to .npz or .safetensors"):
        W.load_state_dict_file(path)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        W.load_state_dict_file(tmp_path / "missing.npz")
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported extension '.h5'"):
        W.load_state_dict_file(tmp_path / "w.h5")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 10 ** 6) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        W.load_state_dict_file(bad)
    odd = tmp_path / "odd.safetensors"
    header = json.dumps({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    odd.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(ValueError, match="unsupported dtype C64"):
        W.load_state_dict_file(odd)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(2))
    with pytest.raises(ValueError, match="not a fastconv checkpoint"):
        W.load_checkpoint(plain)
    with pytest.raises(ValueError, match="must end in .npz"):
        W.save_checkpoint(tmp_path / "c.pt", small_model())
    # a wrong file for the model: the strict error names the keys
    W.save_state_dict_file(M.lenet5().state_dict(), tmp_path / "lenet.npz")
    with pytest.raises(RuntimeError, match="(?s)Missing key\\(s\\) \\(97\\): 'conv1.weight'.*72 more.*"
                                           "Unexpected key\\(s\\) \\(10\\): 'features.0.weight'"):
        M.get_model("resnet20", weights=tmp_path / "lenet.npz")


def _train_steps(model, opt, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = fc.Tensor(rng.standard_normal((4, 1, 32, 32)).astype(np.float32))
        y = fc.Tensor(rng.integers(0, 10, 4))
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
        opt.step()


@fc.use_backend("reference")  # the reference kernels are run-to-run deterministic, so resuming must be bit-exact
def test_checkpoint_resume_is_bit_exact(tmp_path):
    optim = pytest.importorskip("fastconv.optim")
    nn.init.manual_seed(0)
    a = M.lenet5_relu()
    b = M.lenet5_relu()
    b.load_state_dict(a.state_dict())
    oa = optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    ob = optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    _train_steps(a, oa, 2, seed=1)
    _train_steps(b, ob, 2, seed=1)
    path = tmp_path / "ckpt.npz"
    W.save_checkpoint(path, b, ob, epoch=2, history={"loss": [1.5, float("nan")]}, tag="run-1")
    # resume into fresh objects
    c = M.lenet5_relu()
    oc = optim.SGD(c.parameters(), lr=0.05, momentum=0.9)
    info = W.load_checkpoint(path, c, oc)
    assert info["metadata"]["epoch"] == 2 and info["metadata"]["tag"] == "run-1"
    assert info["metadata"]["history"]["loss"][0] == 1.5 and np.isnan(info["metadata"]["history"]["loss"][1])
    assert info["model_class"] == "LeNet5"
    _train_steps(a, oa, 2, seed=2)
    _train_steps(c, oc, 2, seed=2)
    assert_same_state(c.state_dict(), a.state_dict())
    # the model part of a checkpoint also reads as a plain state dict
    sd = W.load_state_dict_file(path)
    assert set(sd) == set(b.state_dict())
