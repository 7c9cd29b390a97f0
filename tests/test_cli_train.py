"""``fastconv train / eval / tune / demo`` end to end on small data (the demo in a reduced form)."""
import json
import os
import struct

import numpy as np
import pytest

from fastconv import cli
from fastconv.train import CheckpointError


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A tiny MNIST-format copy of digits (8x8 upscaled to 28x28) in IDX files."""
    from fastconv.data import load_digits
    from fastconv.data.transforms import resize

    root = tmp_path_factory.mktemp("mnist")
    ds = load_digits()
    for prefix, sl in (("train", slice(0, 120)), ("t10k", slice(1000, 1040))):
        imgs = (resize(ds.images[sl], 28)[:, 0] * 255).clip(0, 255).astype(np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", ds.labels[sl])
    return str(root)


def test_train_then_eval(tmp_path, mnist_dir, capsys):
    out = str(tmp_path / "run")
    rc = cli.main(["train", "lenet5", "--dataset", f"mnist:{mnist_dir}", "--epochs", "2", "--batch-size", "16",
                   "--lr", "3e-3", "--optimizer", "adam", "--weight-decay", "1e-4", "--device", "cpu",
                   "--backend", "cython", "--no-progress", "--out", out])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "macro-F1" in text and "ROC AUC" in text and "epoch 2/2" in text
    for f in ("last.ckpt", "best.ckpt", "history.json", "curves.png", "confusion_matrix.png", "roc.png", "pr.png",
              "report.json"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    rep = json.load(open(os.path.join(out, "report.json")))
    assert rep["n"] == 40 and rep["model"] == "lenet5" and len(rep["confusion_matrix"]) == 10
    assert len(json.load(open(os.path.join(out, "history.json")))["train_loss"]) == 2

    ev = str(tmp_path / "eval")
    assert cli.main(["eval", os.path.join(out, "last.ckpt"), "--dataset", f"mnist:{mnist_dir}", "--device", "cpu",
                     "--out", ev]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "macro-F1" in text and "ROC AUC" in text
    rep2 = json.load(open(os.path.join(ev, "report.json")))
    assert rep2["accuracy"] == pytest.approx(rep["accuracy"]) and rep2["f1_macro"] == pytest.approx(rep["f1_macro"])
    assert sorted(os.listdir(ev)) == ["confusion_matrix.png", "pr.png", "report.json", "roc.png"]
    # default dataset: the one recorded in the checkpoint; --split all: train + val + test
    assert cli.main(["eval", os.path.join(out, "best.ckpt"), "--split", "all", "--device", "cpu",
                     "--out", ev]) == 0
    assert json.load(open(os.path.join(ev, "report.json")))["n"] == 160
    capsys.readouterr()

    # resume continues to 3 epochs from the saved state
    assert cli.main(["train", "lenet5", "--dataset", f"mnist:{mnist_dir}", "--epochs", "3", "--batch-size", "16",
                     "--device", "cpu", "--no-progress", "--resume", "--out", out]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert len(json.load(open(os.path.join(out, "history.json")))["train_loss"]) == 3

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(open(os.path.join(out, "last.ckpt"), "rb").read()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        cli.main(["eval", str(bad), "--dataset", f"mnist:{mnist_dir}"])


def test_tune_cli(tmp_path, mnist_dir, capsys):
    out = str(tmp_path / "tune")
    assert cli.main(["tune", "lenet5", "--dataset", f"mnist:{mnist_dir}", "--lr", "3e-3,1e-5", "--optimizer", "adam",
                     "--batch-size", "32", "--epochs", "1", "--device", "cpu", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "val_acc" in text and "best:" in text
    assert json.load(open(os.path.join(out, "best.json")))["optimizer"] == "adam"
    assert len(open(os.path.join(out, "tune.csv")).read().splitlines()) == 3


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(Exception, match=r"train-images-idx3-ubyte.*IDX"):
        cli.main(["train", "lenet5", "--dataset", f"mnist:{tmp_path}", "--epochs", "1", "--device", "cpu"])


def test_demo_reduced(tmp_path):
    """The demo path with 1 epoch and a one-op benchmark (``make run`` is the full version)."""
    from fastconv import demo

    lines = []
    assert demo.main(epochs=1, out=str(tmp_path / "demo"), device="auto", progress=False,
                     log=lambda s="": lines.append(str(s)), bench_ops=["relu"]) == 0
    text = "\n".join(lines)
    assert "LeNet-5 on digits 32x32" in text and "test accuracy" in text and "ROC AUC" in text
    acc = json.load(open(tmp_path / "demo" / "report.json"))["accuracy"]
    assert acc > 0.85  # one epoch already learns digits
    assert "quick benchmark" in text and ("relu" in text or "skipped" in text or "failed" in text)
    assert "relu" in text  # the benchmark table itself
    for f in ("last.ckpt", "curves.png", "roc.png", "report.json"):
        assert (tmp_path / "demo" / f).exists()
