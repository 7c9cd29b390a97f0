"""fastconv.transfer: freeze/unfreeze, head replacement, per-group learning rates, feature
extraction; train on digits 0-4, transfer to 5-9 with a small budget."""
import numpy as np
import pytest

from fastconv import data, nn, optim, transfer
from fastconv.train import Trainer, seed_all


def _net(n_out=5):
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, n_out))


@pytest.fixture(scope="module")
def setup():
    ds = data.load_digits()
    src = ds.subset(np.flatnonzero(ds.labels < 5))
    tgt = ds.subset(np.flatnonzero(ds.labels >= 5))
    tgt = data.ArrayDataset(tgt.images, tgt.labels - 5)
    rng = np.random.default_rng(0)
    few = np.concatenate([rng.choice(np.flatnonzero(tgt.labels == c), 8, replace=False) for c in range(5)])
    rest = np.setdiff1d(np.arange(len(tgt)), few)
    seed_all(0)
    source = _net()
    t = Trainer(source, optim.Adam(source.parameters(), lr=3e-3), progress=False, log=None)
    t.fit(data.DataLoader(src, 32, shuffle=True, seed=0), epochs=4)
    assert t.evaluate(data.DataLoader(src, 256))["acc"] > 0.9
    return source, tgt.subset(few), tgt.subset(rest)


def _weights(m):
    return {k: np.array(v) for k, v in m.state_dict().items()}


def test_freeze_unfreeze_patterns():
    m = _net()
    names = transfer.freeze(m, "0.*")
    assert names == ["0.weight", "0.bias"]
    assert transfer.freeze(m, ["3", "7.weight"]) == ["3.weight", "3.bias", "7.weight"]
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["7.bias", "9.weight", "9.bias"]
    transfer.unfreeze(m, "*")
    assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError, match="no parameter matches"):
        transfer.freeze(m, "classifier.*")


def test_frozen_parameters_do_not_move():
    seed_all(1)
    m = _net(10)
    transfer.freeze(m, ["0", "3"])
    before = _weights(m)
    ds = data.load_digits().subset(np.arange(64))
    Trainer(m, optim.SGD(m.parameters(), lr=0.1), progress=False, log=None).fit(data.DataLoader(ds, 32), epochs=1)
    after = _weights(m)
    for k in before:
        assert np.array_equal(before[k], after[k]) == k.startswith(("0.", "3.")), k


def test_replace_head_and_param_groups():
    m = _net()
    assert transfer.find_head(m) == "9"
    new = transfer.replace_head(m, 3, seed=5)
    assert list(m._modules)[-1] == "9" and m[9] is new and new.weight.shape == (3, 32)
    same = transfer.replace_head(_net(), 3, seed=5)
    np.testing.assert_array_equal(np.array(same.weight.data), np.array(new.weight.data))
    import fastconv

    assert m(fastconv.Tensor(np.zeros((2, 1, 8, 8), np.float32))).shape == (2, 3)
    transfer.freeze(m, "0.*")
    groups = transfer.param_groups(m, {"9": 0.1, "7": 0.01}, 0.001)
    assert [g["lr"] for g in groups] == [0.1, 0.01, 0.001]
    assert [len(g["params"]) for g in groups] == [2, 2, 2]  # 9.*, 7.*, then 3.* (0.* frozen)
    opt = optim.Adam(groups, lr=1.0)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01, 0.001]
    with pytest.raises(ValueError, match="not a Linear"):
        transfer.replace_head(m, 3, name="8")


def test_probe_head_matches_linear_head(setup):
    source, few, _ = setup
    m = _net()
    m.load_state_dict(source.state_dict())
    dl = data.DataLoader(few, 16)
    lin = transfer.init_head_from_probe(m, dl, epochs=10)
    feats, _ = transfer.extract_features(source, dl)
    probe = transfer.train_linear_head(feats, few.labels, 5, epochs=10)
    scores, _ = Trainer(m, optim.SGD(m.parameters(), lr=0.0), progress=False, log=None).predict(dl)
    np.testing.assert_allclose(scores, transfer.linear_head_predict(probe, feats), rtol=1e-3, atol=1e-3)
    assert lin is m[9]


def test_extract_features_named_layer(setup):
    source, few, _ = setup
    dl = data.DataLoader(few, 16)
    f_head, y = transfer.extract_features(source, dl)
    assert f_head.shape == (len(few), 32)
    np.testing.assert_array_equal(y, few.labels)
    f_pool, _ = transfer.extract_features(source, dl, layer="5")
    assert f_pool.shape == (len(few), 64)
    np.testing.assert_allclose(f_head, np.maximum(f_pool @ np.array(source[7].weight.data).T
                                                  + np.array(source[7].bias.data), 0), rtol=1e-4, atol=1e-5)
    assert "forward" not in vars(source[9])  # the hook is removed
    with pytest.raises(ValueError, match="no layer named"):
        transfer.extract_features(source, dl, layer="nope")


def test_transfer_beats_scratch_with_the_same_budget(setup):
    source, few, rest = setup
    epochs, test = 6, data.DataLoader(rest, 256)
    train = data.DataLoader(few, 8, shuffle=True, seed=0)

    seed_all(0)
    scratch = _net()
    t = Trainer(scratch, optim.Adam(scratch.parameters(), lr=3e-3), progress=False, log=None)
    t.fit(train, epochs=epochs)
    acc_scratch = t.evaluate(test)["acc"]

    feats, labels = transfer.extract_features(source, train)
    head = transfer.train_linear_head(feats, labels, 5, epochs=epochs * 5, lr=0.05)
    test_feats, test_labels = transfer.extract_features(source, test)
    acc_features = float((transfer.linear_head_predict(head, test_feats).argmax(1) == test_labels).mean())

    tuned = _net()
    tuned.load_state_dict(source.state_dict())
    transfer.replace_head(tuned, 5, seed=0)
    # LP-FT: a linear probe initialises the new head (same budget as the feature head), then
    # every layer is fine-tuned for the same number of epochs as the scratch run
    tr = transfer.fine_tune(tuned, train, epochs=epochs, lr=3e-3, body_lr=3e-4, probe_epochs=epochs * 5,
                            progress=False, log=None)
    assert [g["lr"] for g in tr.optimizer.param_groups] == [3e-3, 3e-4]
    acc_tuned = tr.evaluate(test)["acc"]

    print(f"scratch {acc_scratch:.3f}  features {acc_features:.3f}  fine-tune {acc_tuned:.3f}")
    assert acc_features > acc_scratch + 0.1
    assert acc_tuned > acc_scratch + 0.1
