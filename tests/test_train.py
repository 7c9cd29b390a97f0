"""fastconv.train: Trainer fit/evaluate/predict, options, atomic checksummed checkpoints, exact resume."""
import json
import os

import numpy as np
import pytest

from fastconv import data, nn, optim
from fastconv.train import CheckpointError, Trainer, load_checkpoint, save_checkpoint, seed_all


def _small_net(dropout=0.2):
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * 6 * 6, 10))


@pytest.fixture(scope="module")
def digits():
    ds = data.load_digits().subset(np.arange(300))
    return data.split(ds, (0.6, 0.2, 0.2), seed=0)


def _weights(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_roundtrip_nested(tmp_path):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": {0: {"step": 3, "m": np.ones(2)}},
           "t": (1, "x", None), "big": 2 ** 100, "inf": float("inf"), "l": [np.int64(4), True, 0.5]}
    p = save_checkpoint(obj, str(tmp_path / "c.ckpt"))
    back = load_checkpoint(p)
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["a"].dtype == np.float32 and back["n"][0]["step"] == 3 and back["t"] == (1, "x", None)
    assert back["big"] == 2 ** 100 and back["inf"] == float("inf") and back["l"] == [4, True, 0.5]
    assert os.listdir(tmp_path) == ["c.ckpt"]  # no temporary file left behind


def test_checkpoint_truncated_corrupt_missing(tmp_path):
    p = str(tmp_path / "c.ckpt")
    save_checkpoint({"w": np.ones(100)}, p)
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"c\.ckpt.*truncated or corrupted"):
        load_checkpoint(p)
    open(p, "wb").write(raw[:20])
    with pytest.raises(CheckpointError, match="not a fastconv checkpoint"):
        load_checkpoint(p)
    flipped = bytearray(raw)
    flipped[-5] ^= 1
    open(p, "wb").write(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "none.ckpt"))


def test_checkpoint_failed_write_keeps_old_file(tmp_path):
    p = str(tmp_path / "c.ckpt")
    save_checkpoint({"v": 1}, p)
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint({"v": object()}, p)
    assert load_checkpoint(p) == {"v": 1} and os.listdir(tmp_path) == ["c.ckpt"]


def test_trainer_truncated_checkpoint_resume_raises(tmp_path, digits):
    tr, _, _ = digits
    seed_all(0)
    m = _small_net()
    t = Trainer(m, optim.SGD(m.parameters(), lr=0.1), out_dir=str(tmp_path), progress=False, log=None)
    t.fit(data.DataLoader(tr, 64), epochs=1)
    p = tmp_path / "last.ckpt"
    p.write_bytes(p.read_bytes()[:-100])
    t2 = Trainer(m, optim.SGD(m.parameters(), lr=0.1), out_dir=str(tmp_path), progress=False, log=None)
    with pytest.raises(CheckpointError, match="truncated"):
        t2.fit(data.DataLoader(tr, 64), epochs=2, resume=True)


# ---------------------------------------------------------------- resume
class _Interrupt(Exception):
    pass


class _Crashing:
    """A loader that raises in the middle of epoch ``at_epoch`` (like a killed process)."""

    def __init__(self, loader, at_epoch, at_batch):
        self.loader, self.at_epoch, self.at_batch = loader, at_epoch, at_batch
        self.dataset, self.epoch = loader.dataset, 0

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, e):
        self.epoch = e
        self.loader.set_epoch(e)

    def __iter__(self):
        for i, b in enumerate(self.loader):
            if self.epoch == self.at_epoch and i == self.at_batch:
                raise _Interrupt
            yield b


def _run(digits, out, crash=None, resume=False, seed=0):
    tr, va, _ = digits
    seed_all(seed)
    m = _small_net()
    opt = optim.Adam(m.parameters(), lr=3e-3, weight_decay=1e-4)
    sch = optim.lr_scheduler.StepLR(opt, 1, 0.5)
    t = Trainer(m, opt, scheduler=sch, grad_clip=5.0, l2=1e-4, out_dir=out, progress=False, log=None)
    loader = data.DataLoader(tr, 32, shuffle=True, seed=11, transform=data.transforms.RandomRotation(10))
    if crash:
        loader = _Crashing(loader, *crash)
    t.fit(loader, data.DataLoader(va, 64), epochs=3, resume=resume)
    return m, t


def test_resume_after_interrupted_epoch_is_bit_identical(tmp_path, digits):
    ref, t_ref = _run(digits, str(tmp_path / "ref"))
    with pytest.raises(_Interrupt):
        _run(digits, str(tmp_path / "b"), crash=(1, 3))  # dies in the 2nd epoch, after epoch 1's checkpoint
    assert load_checkpoint(str(tmp_path / "b" / "last.ckpt"))["epoch"] == 1
    seed_all(123)  # a different process state: everything must come from the checkpoint
    np.random.default_rng().random(5)
    resumed, t_res = _run(digits, str(tmp_path / "b"), resume=True, seed=99)
    assert t_res.epoch == 3
    a, b = _weights(ref), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert t_res.history["train_loss"] == t_ref.history["train_loss"]
    assert t_res.history["lr"] == t_ref.history["lr"] == [3e-3, 1.5e-3, 7.5e-4]


# ---------------------------------------------------------------- options
def test_fit_outputs_history_curves_and_metrics(tmp_path, digits, capsys):
    tr, va, te = digits
    seed_all(0)
    m = _small_net(0.0)
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    t = Trainer(m, opt, scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, 3), out_dir=str(tmp_path), progress=True)
    hist = t.fit(data.DataLoader(tr, 32, shuffle=True), data.DataLoader(va, 64), epochs=3)
    out = capsys.readouterr()
    assert "img_s" in out.err and "epoch 3/3" in out.out and "val loss" in out.out
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "curves.png", "history.json", "last.ckpt"]
    assert json.load(open(tmp_path / "history.json")) == json.loads(json.dumps(hist))
    assert len(hist["val_acc"]) == 3 and hist["train_loss"][-1] < hist["train_loss"][0]
    np.testing.assert_allclose(hist["lr"], [0.1, 0.075, 0.025])
    assert open(tmp_path / "curves.png", "rb").read(4) == b"\x89PNG"
    ev = t.evaluate(data.DataLoader(te, 64))
    scores, labels = t.predict(data.DataLoader(te, 64))
    assert scores.shape == (len(te), 10) and ev["n"] == len(te)
    assert ev["acc"] == pytest.approx((scores.argmax(1) == labels).mean()) and ev["acc"] > 0.7
    assert load_checkpoint(str(tmp_path / "last.ckpt"))["epoch"] == 3


def test_early_stopping(digits):
    tr, va, _ = digits
    m = _small_net(0.0)
    logs = []
    t = Trainer(m, optim.SGD(m.parameters(), lr=0.0), early_stopping=2, progress=False, log=logs.append)
    hist = t.fit(data.DataLoader(tr, 64), data.DataLoader(va, 64), epochs=10)  # lr 0: val loss never improves
    assert len(hist["train_loss"]) == 3 and hist["stopped_early"] == 3
    assert any("early stopping" in s for s in logs)
    with pytest.raises(ValueError, match="patience"):
        Trainer(m, optim.SGD(m.parameters(), lr=0.1), early_stopping=0)


def _linear_fit(opt_cls, digits, **kw):
    tr, _, _ = digits
    seed_all(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, bias=False))
    t = Trainer(m, opt_cls(m.parameters(), lr=0.05, weight_decay=kw.pop("wd", 0.0)), progress=False, log=None, **kw)
    t.fit(data.DataLoader(tr, 60), epochs=2)
    return _weights(m)["1.weight"]


def test_weight_decay_and_l2_are_separate_options(digits):
    base = _linear_fit(optim.SGD, digits)
    wd = _linear_fit(optim.SGD, digits, wd=0.1)
    l2 = _linear_fit(optim.SGD, digits, l2=0.1)
    # for plain SGD both give the same update, and differ from no regularisation
    np.testing.assert_allclose(wd, l2, rtol=1e-4, atol=1e-6)
    assert np.abs(base - wd).max() > 1e-3 and np.linalg.norm(wd) < np.linalg.norm(base)
    # for AdamW (decoupled) they are different algorithms
    assert np.abs(_linear_fit(optim.AdamW, digits, wd=0.1) - _linear_fit(optim.AdamW, digits, l2=0.1)).max() > 1e-4


def test_gradient_clipping_bounds_the_step(digits):
    tr, _, _ = digits
    seed_all(0)
    m = _small_net(0.0)
    before = _weights(m)
    t = Trainer(m, optim.SGD(m.parameters(), lr=1.0), grad_clip=0.01, progress=False, log=None)
    t.fit(data.DataLoader(tr.subset(np.arange(32)), 32), epochs=1)  # one step
    step = np.sqrt(sum(((a - before[k]) ** 2).sum() for k, a in _weights(m).items()))
    assert step == pytest.approx(0.01, rel=1e-3)
