"""Classification metrics (computed with scikit-learn) and their plots.

Inputs are NumPy arrays, CuPy arrays or Tensors: ``y_true`` (N,) int labels,
``scores`` (N, C) logits or probabilities, ``y_pred`` (N,) int labels.
"""
import numpy as np

from ._xp import to_numpy


def _np(a):
    if hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        a = a.numpy()
    return to_numpy(a)


def softmax_np(scores):
    s = _np(scores).astype(np.float64)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(y_true, y_pred):
    y_true, y_pred = _np(y_true), _np(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"accuracy: y_true shape {y_true.shape} != y_pred shape {y_pred.shape}")
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def top_k_accuracy(y_true, scores, k=5):
    from sklearn.metrics import top_k_accuracy_score

    scores, y_true = _np(scores), _np(y_true)
    if scores.ndim != 2 or scores.shape[0] != y_true.shape[0]:
        raise ValueError(f"top_k_accuracy: scores must be (N, C) with N = {y_true.shape[0]}, got {scores.shape}")
    if scores.shape[1] == 2:  # scikit-learn wants one score, thresholded at 0, in the binary case: the margin
        return 1.0 if k >= 2 else float(top_k_accuracy_score(y_true, scores[:, 1] - scores[:, 0], k=k,
                                                             labels=[0, 1]))
    return float(top_k_accuracy_score(y_true, scores, k=k, labels=np.arange(scores.shape[1])))


def precision_recall_f1(y_true, y_pred, average=None, num_classes=None):
    """(precision, recall, f1, support); ``average`` None (per class), 'macro', 'micro', 'weighted'."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(num_classes) if num_classes else None
    p, r, f, s = precision_recall_fscore_support(_np(y_true), _np(y_pred), average=average, labels=labels,
                                                 zero_division=0)
    return p, r, f, s


def confusion_matrix(y_true, y_pred, num_classes=None):
    from sklearn.metrics import confusion_matrix as cm

    labels = np.arange(num_classes) if num_classes else None
    return cm(_np(y_true), _np(y_pred), labels=labels)


def roc_curves(y_true, scores):
    """One-vs-rest ROC per class: {class: (fpr, tpr, auc)} plus 'macro' AUC."""
    from sklearn.metrics import auc, roc_curve

    y_true, probs = _np(y_true), softmax_np(scores)
    out = {}
    for c in range(probs.shape[1]):
        pos = y_true == c
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, c])
        out[c] = (fpr, tpr, float(auc(fpr, tpr)))
    out["macro"] = float(np.mean([v[2] for v in out.values()])) if out else float("nan")
    return out


def roc_auc(y_true, scores):
    """Macro one-vs-rest ROC AUC (scikit-learn's roc_auc_score)."""
    from sklearn.metrics import roc_auc_score

    y_true, probs = _np(y_true), softmax_np(scores)
    present = np.unique(y_true)
    if probs.shape[1] == 2:
        return float(roc_auc_score(y_true, probs[:, 1]))
    if len(present) < probs.shape[1]:  # classes absent from y_true: average over the present ones
        return float(np.mean([roc_auc_score(y_true == c, probs[:, c]) for c in present]))
    return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))


def pr_curves(y_true, scores):
    """One-vs-rest precision-recall per class: {class: (precision, recall, average_precision)}."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y_true, probs = _np(y_true), softmax_np(scores)
    out = {}
    for c in range(probs.shape[1]):
        pos = y_true == c
        if not pos.any():
            continue
        p, r, _ = precision_recall_curve(pos, probs[:, c])
        out[c] = (p, r, float(average_precision_score(pos, probs[:, c])))
    return out


def classification_report(y_true, scores, class_names=None):
    """Dict of the figures people report: accuracy, top-5, macro/micro/weighted P/R/F1, ROC AUC, mAP."""
    scores = _np(scores)
    y_true = _np(y_true)
    y_pred = scores.argmax(1)
    n = scores.shape[1]
    rep = {"n": int(y_true.size), "accuracy": accuracy(y_true, y_pred)}
    if n > 5:
        rep["top5_accuracy"] = top_k_accuracy(y_true, scores, 5)
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_f1(y_true, y_pred, avg, n)
        rep[f"precision_{avg}"], rep[f"recall_{avg}"], rep[f"f1_{avg}"] = float(p), float(r), float(f)
    p, r, f, s = precision_recall_f1(y_true, y_pred, None, n)
    names = class_names or [str(i) for i in range(n)]
    rep["per_class"] = {names[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(s[i])} for i in range(n)}
    rep["roc_auc_macro"] = roc_auc(y_true, scores)
    prc = pr_curves(y_true, scores)
    rep["average_precision_macro"] = float(np.mean([v[2] for v in prc.values()])) if prc else float("nan")
    rep["confusion_matrix"] = confusion_matrix(y_true, y_pred, n).tolist()
    return rep


# ---- plots ---------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm, path, class_names=None, title="Confusion matrix"):
    plt = _plt()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(5 + 0.3 * len(cm), 4 + 0.3 * len(cm)))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    names = class_names or [str(i) for i in range(len(cm))]
    ax.set_xticks(range(len(cm)), names, rotation=45)
    ax.set_yticks(range(len(cm)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > thresh else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(y_true, scores, path, class_names=None):
    plt = _plt()
    curves = roc_curves(y_true, scores)
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, v in curves.items():
        if c == "macro":
            continue
        name = class_names[c] if class_names else str(c)
        ax.plot(v[0], v[1], lw=1, label=f"{name} (AUC {v[2]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, one-vs-rest (macro AUC {curves['macro']:.4f})")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pr(y_true, scores, path, class_names=None):
    plt = _plt()
    curves = pr_curves(y_true, scores)
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, (p, r, ap) in curves.items():
        name = class_names[c] if class_names else str(c)
        ax.plot(r, p, lw=1, label=f"{name} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall, one-vs-rest")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(history, path):
    """Loss and accuracy curves from a Trainer history dict."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history.get("train_loss", [])) + 1)
    for key, ax in (("loss", axes[0]), ("acc", axes[1])):
        for split in ("train", "val"):
            vals = history.get(f"{split}_{key}")
            if vals:
                ax.plot(list(epochs)[:len(vals)], vals, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
