"""fastconv.tune: grid/random configurations, seeded trials, results table/CSV, best config."""
import csv

import numpy as np
import pytest

from fastconv import data, nn, tune


def _model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def splits():
    ds = data.load_digits().subset(np.arange(240))
    tr, va, _ = data.split(ds, (0.7, 0.3, 0.0), seed=0)
    return tr, va


def test_grid_and_random_configs():
    g = tune.grid({"lr": [0.1, 0.01], "optimizer": ["sgd", "adam"], "batch_size": [16]})
    assert len(g) == 4 and {"lr": 0.01, "optimizer": "adam", "batch_size": 16} in g
    space = {"lr": (1e-4, 1e-1, "log"), "batch_size": [16, 32], "optimizer": ["sgd", "adam", "adagrad"]}
    r = tune.random_configs(space, 20, seed=1)
    assert r == tune.random_configs(space, 20, seed=1) and r != tune.random_configs(space, 20, seed=2)
    lrs = np.array([c["lr"] for c in r])
    assert (lrs >= 1e-4).all() and (lrs <= 1e-1).all() and (lrs < 1e-2).any() and (lrs > 1e-3).any()
    assert {c["optimizer"] for c in r} <= {"sgd", "adam", "adagrad"}
    with pytest.raises(ValueError, match="n must be"):
        tune.random_configs(space, 0)


def test_make_optimizer():
    m = _model()
    for name in tune.OPTIMIZERS:
        opt = tune.make_optimizer(name, m.parameters(), 0.01, 1e-4)
        assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 1e-4
    with pytest.raises(ValueError, match="unknown optimizer"):
        tune.make_optimizer("lbfgs", m.parameters(), 0.1)


def test_search_seeded_table_csv_best(tmp_path, splits):
    tr, va = splits
    space = {"lr": [0.3, 1e-4], "optimizer": ["sgd"], "batch_size": [32], "weight_decay": [0.0]}
    logs = []
    res = tune.search(_model, tr, va, space, "grid", epochs=1, seed=0, csv_path=str(tmp_path / "t.csv"),
                      log=logs.append)
    rows = res["results"]
    assert len(rows) == 2 and rows[0]["val_acc"] >= rows[1]["val_acc"]
    assert res["best"] == {"lr": 0.3, "batch_size": 32, "weight_decay": 0.0, "optimizer": "sgd"}
    assert rows[0]["val_acc"] > 0.3 and rows[1]["val_acc"] < rows[0]["val_acc"]  # lr 1e-4 barely moves
    table = logs[-2]
    assert "val_acc" in table.splitlines()[0] and len(table.splitlines()) == 3 and "best:" in logs[-1]
    with open(tmp_path / "t.csv") as f:
        got = list(csv.DictReader(f))
    assert [float(r["lr"]) for r in got] == [0.3, 1e-4] and float(got[0]["val_acc"]) == rows[0]["val_acc"]
    # the same trial seed reproduces a trial exactly
    again = tune.run_trials(_model, tr, va, [{"lr": 0.3, "optimizer": "sgd", "batch_size": 32}], 1, 0, None)
    assert again[0]["val_loss"] == rows[0]["val_loss"]


def test_random_search_and_errors(splits):
    tr, va = splits
    res = tune.search(_model, tr, va, {"lr": (1e-3, 1e-2, "log"), "optimizer": ["adam", "adamw"]}, "random",
                      n_trials=2, epochs=1, log=None)
    assert len(res["results"]) == 2 and set(res["best"]) == {"lr", "optimizer"}
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        tune.run_trials(_model, tr, va, [{"lr": 0.1, "momentun": 0.9}], 1, log=None)
    with pytest.raises(ValueError, match="grid' or 'random"):
        tune.search(_model, tr, va, {"lr": [0.1]}, "bayes")
