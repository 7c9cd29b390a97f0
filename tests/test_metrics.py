"""fastconv.metrics equal scikit-learn's on fixed predictions; plots are written."""
import numpy as np
import pytest
from sklearn import metrics as skm

from fastconv import Tensor, metrics


@pytest.fixture(scope="module")
def preds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    scores = rng.normal(size=(60, 4)) + 2.0 * np.eye(4)[y]  # informative but imperfect logits
    return y, scores.astype(np.float32)


def _probs(s):
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_accuracy_topk(preds):
    y, s = preds
    assert metrics.accuracy(y, s.argmax(1)) == skm.accuracy_score(y, s.argmax(1))
    assert metrics.accuracy(Tensor(y), Tensor(s)) == skm.accuracy_score(y, s.argmax(1))  # Tensors and scores
    for k in (1, 2, 3):
        assert metrics.top_k_accuracy(y, s, k) == skm.top_k_accuracy_score(y, s, k=k, labels=range(4))
    yb = (y > 1).astype(int)
    assert metrics.top_k_accuracy(yb, s[:, :2], 1) == skm.accuracy_score(yb, s[:, :2].argmax(1))
    assert metrics.top_k_accuracy(yb, s[:, :2], 2) == 1.0
    with pytest.raises(ValueError, match="shape"):
        metrics.accuracy(y, y[:-1])


@pytest.mark.parametrize("average", [None, "macro", "micro", "weighted"])
def test_precision_recall_f1(preds, average):
    y, s = preds
    p = s.argmax(1)
    got = metrics.precision_recall_f1(y, p, average, 4)
    want = skm.precision_recall_fscore_support(y, p, average=average, labels=range(4), zero_division=0)
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w)
    if average is None:
        np.testing.assert_array_equal(got[3], want[3])


def test_confusion_matrix_with_absent_class(preds):
    y, s = preds
    p = s.argmax(1)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p), skm.confusion_matrix(y, p))
    cm = metrics.confusion_matrix(y[y != 3], p[y != 3], num_classes=5)
    assert cm.shape == (5, 5) and cm.sum() == (y != 3).sum()


def test_roc_and_pr_curves(preds):
    y, s = preds
    pr = _probs(s.astype(np.float64))
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, pr, multi_class="ovr", average="macro"))
    curves = metrics.roc_curves(y, s)
    for c in range(4):
        fpr, tpr, _ = skm.roc_curve(y == c, pr[:, c])
        np.testing.assert_allclose(curves[c][0], fpr)
        np.testing.assert_allclose(curves[c][1], tpr)
        assert curves[c][2] == pytest.approx(skm.roc_auc_score(y == c, pr[:, c]))
    assert curves["macro"] == pytest.approx(metrics.roc_auc(y, s))
    prc = metrics.pr_curves(y, s)
    for c in range(4):
        p_, r_, _ = skm.precision_recall_curve(y == c, pr[:, c])
        np.testing.assert_allclose(prc[c][0], p_)
        np.testing.assert_allclose(prc[c][1], r_)
        assert prc[c][2] == pytest.approx(skm.average_precision_score(y == c, pr[:, c]))
    yb = (y > 1).astype(int)
    assert metrics.roc_auc(yb, s[:, :2]) == pytest.approx(skm.roc_auc_score(yb, _probs(s[:, :2].astype(float))[:, 1]))


def test_classification_report(preds):
    y, s = preds
    rep = metrics.classification_report(y, s, ["a", "b", "c", "d"])
    p = s.argmax(1)
    assert rep["accuracy"] == skm.accuracy_score(y, p)
    assert rep["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert rep["f1_weighted"] == pytest.approx(skm.f1_score(y, p, average="weighted"))
    assert rep["recall_micro"] == pytest.approx(skm.recall_score(y, p, average="micro"))
    assert rep["per_class"]["c"]["precision"] == pytest.approx(skm.precision_score(y, p, average=None)[2])
    assert rep["per_class"]["a"]["support"] == int((y == 0).sum())
    assert rep["confusion_matrix"] == skm.confusion_matrix(y, p).tolist()


def test_plots_are_pngs(tmp_path, preds):
    y, s = preds
    paths = [metrics.plot_confusion_matrix(metrics.confusion_matrix(y, s.argmax(1)), str(tmp_path / "cm.png")),
             metrics.plot_roc(y, s, str(tmp_path / "roc.png"), ["a", "b", "c", "d"]),
             metrics.plot_pr(y, s, str(tmp_path / "pr.png")),
             metrics.plot_history({"train_loss": [1, 0.5], "val_loss": [1.1, 0.7], "train_acc": [0.5, 0.8],
                                   "val_acc": [0.4, 0.7]}, str(tmp_path / "h.png"))]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
