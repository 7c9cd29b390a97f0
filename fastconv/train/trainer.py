"""Trainer: fit / evaluate / predict with validation, schedules, clipping,
early stopping, atomic per-epoch checkpoints and bit-identical resume (CPU)."""
import json
import os
import time

import numpy as np

from .. import random as fc_random
from ..tensor import no_grad
from . import checkpoint as ckpt


def _default_loss(logits, target):
    from ..functional import cross_entropy

    return cross_entropy(logits, target)


def seed_all(seed):
    """Seed every stream fastconv draws from: the global stream (fastconv.random)
    and the initialiser/Dropout generator (fastconv.nn.init)."""
    from ..nn import init

    fc_random.manual_seed(seed)
    init.manual_seed(seed)


def random_state():
    """Both global random streams' states (JSON-serialisable)."""
    from ..nn import init

    return {"fastconv": fc_random.get_state(), "init": init.get_generator().bit_generator.state}


def set_random_state(state):
    from ..nn import init

    fc_random.set_state(state["fastconv"])
    init.get_generator().bit_generator.state = state["init"]


class Trainer:
    """Train ``model`` with ``optimizer``.

    Weight decay belongs to the optimizer (``weight_decay=``); ``l2`` adds an
    explicit penalty ``l2/2 * sum(w**2)`` over the weights (parameters with
    more than one dimension) to the loss instead -- two separate options, as
    they differ for adaptive optimizers.  ``grad_clip`` clips the global
    gradient norm.  ``early_stopping`` is a patience in epochs on the
    validation loss (training loss without a validation loader).  With
    ``out_dir`` a checkpoint is written atomically after every epoch
    (``last.ckpt``, and ``best.ckpt`` on improvement) together with
    ``history.json``; ``curves.png`` (loss and accuracy) is drawn at the end.
    ``meta`` (JSON-able dict) is stored in every checkpoint.
    Batches are moved to the model's device.
    """

    def __init__(self, model, optimizer, loss_fn=None, scheduler=None, grad_clip=None, l2=0.0,
                 early_stopping=None, out_dir=None, progress="auto", log=print, plot=True, meta=None):
        if l2 < 0 or (grad_clip is not None and grad_clip <= 0):
            raise ValueError(f"Trainer: l2 must be >= 0 and grad_clip > 0, got l2={l2}, grad_clip={grad_clip}")
        if early_stopping is not None and (int(early_stopping) != early_stopping or early_stopping < 1):
            raise ValueError(f"Trainer: early_stopping is a patience in epochs (int >= 1), got {early_stopping!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_fn = loss_fn or _default_loss
        self.grad_clip, self.l2, self.early_stopping = grad_clip, float(l2), early_stopping
        self.out_dir, self.progress, self.log, self.plot = out_dir, progress, log or (lambda *_: None), plot
        self.history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "lr": [],
                        "epoch_time": [], "images_per_s": []}
        self.meta = dict(meta or {})  # stored in checkpoints (e.g. how to rebuild the model)
        self.epoch = 0
        self.best_val = float("inf")
        self.bad_epochs = 0

    # ---- helpers ---------------------------------------------------------------------------
    def _to_model(self, x, y):
        dev = self.model.device
        if x.device != dev:
            x, y = x.to(dev), y.to(dev)
        return x, y

    def _penalty(self):
        total = None
        for p in self.model.parameters():
            if p.requires_grad and p.ndim > 1:  # weights, not biases / norm scales
                t = (p * p).sum()
                total = t if total is None else total + t
        return total * (0.5 * self.l2) if total is not None else None

    def _bar(self, total, label):
        if not self.progress:
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return None
        # progress="auto": a live bar on a terminal only (a log file would get every redraw); True: always
        disable = None if self.progress == "auto" else False
        return tqdm(total=total, desc=label, leave=False, dynamic_ncols=True, disable=disable)

    # ---- one epoch -------------------------------------------------------------------------
    def train_epoch(self, loader, label=""):
        """One pass over ``loader``; returns (mean loss, accuracy, seconds, images)."""
        self.model.train()
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.epoch)
        tot_loss, tot_correct, tot_n, t0 = 0.0, 0, 0, time.perf_counter()
        bar = self._bar(len(loader), label)
        try:
            for x, y in loader:
                x, y = self._to_model(x, y)
                self.optimizer.zero_grad()
                logits = self.model(x)
                loss = self.loss_fn(logits, y)
                total = loss
                if self.l2:
                    pen = self._penalty()
                    if pen is not None:
                        total = loss + pen
                total.backward()
                if self.grad_clip:
                    from ..optim.clip import clip_grad_norm_

                    clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.optimizer.step()
                n = y.shape[0]
                tot_loss += float(loss.item()) * n
                tot_correct += int((logits.data.argmax(1) == y.data).sum())
                tot_n += n
                if bar is not None:
                    dt = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{tot_loss / tot_n:.4f}", acc=f"{tot_correct / tot_n:.3f}",
                                    img_s=f"{tot_n / max(dt, 1e-9):.0f}")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return tot_loss / max(tot_n, 1), tot_correct / max(tot_n, 1), time.perf_counter() - t0, tot_n

    def predict(self, loader):
        """(scores (N, C), labels (N,)) as NumPy arrays, in eval mode, without a graph."""
        self.model.eval()
        scores, labels = [], []
        with no_grad():
            for x, y in loader:
                x, y = self._to_model(x, y)
                scores.append(np.asarray(self.model(x).numpy()))
                labels.append(np.asarray(y.numpy()))
        if not scores:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        return np.concatenate(scores), np.concatenate(labels)

    def evaluate(self, loader):
        """{'loss', 'acc', 'n'} over the loader, in eval mode."""
        self.model.eval()
        tot_loss, tot_correct, tot_n = 0.0, 0, 0
        with no_grad():
            for x, y in loader:
                x, y = self._to_model(x, y)
                out = self.model(x)
                n = y.shape[0]
                tot_loss += float(self.loss_fn(out, y).item()) * n
                tot_correct += int((out.data.argmax(1) == y.data).sum())
                tot_n += n
        return {"loss": tot_loss / max(tot_n, 1), "acc": tot_correct / max(tot_n, 1), "n": tot_n}

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, epochs=10, resume=False):
        """Train until ``epochs`` epochs are done (counting resumed ones) or early stopping.

        ``resume``: True (``out_dir/last.ckpt``) or a path; a missing file starts afresh.
        """
        if resume:
            path = resume if isinstance(resume, (str, os.PathLike)) else os.path.join(self.out_dir or ".", "last.ckpt")
            if os.path.exists(path):
                self.load_checkpoint(path)
                self.log(f"resumed from {path} after epoch {self.epoch}")
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
        stopped = False
        while self.epoch < epochs and not stopped:
            label = f"epoch {self.epoch + 1}/{epochs}"
            lr = float(self.optimizer.param_groups[0]["lr"])
            tl, ta, dt, n = self.train_epoch(train_loader, label)
            self.epoch += 1
            h = self.history
            h["train_loss"].append(tl)
            h["train_acc"].append(ta)
            h["lr"].append(lr)
            h["epoch_time"].append(dt)
            h["images_per_s"].append(n / max(dt, 1e-9))
            msg = f"{label}: loss {tl:.4f} acc {ta:.4f} ({n / max(dt, 1e-9):.0f} img/s, lr {lr:.3g})"
            monitor = tl
            if val_loader is not None:
                v = self.evaluate(val_loader)
                monitor = v["loss"]
                h["val_loss"].append(v["loss"])
                h["val_acc"].append(v["acc"])
                msg += f" | val loss {v['loss']:.4f} acc {v['acc']:.4f}"
            self.log(msg)
            if self.scheduler is not None:
                if type(self.scheduler).__name__ == "ReduceLROnPlateau":
                    self.scheduler.step(monitor)
                else:
                    self.scheduler.step()
            improved = monitor < self.best_val
            if improved:
                self.best_val, self.bad_epochs = monitor, 0
            else:
                self.bad_epochs += 1
            if self.early_stopping and self.bad_epochs >= self.early_stopping:
                self.log(f"early stopping after {self.epoch} epochs (no improvement for {self.bad_epochs})")
                stopped = True
                self.history["stopped_early"] = self.epoch
            if self.out_dir:
                self.save_checkpoint(os.path.join(self.out_dir, "last.ckpt"))
                if improved:
                    self.save_checkpoint(os.path.join(self.out_dir, "best.ckpt"))
                self.save_history(os.path.join(self.out_dir, "history.json"))
        if self.out_dir and self.plot and self.history["train_loss"]:
            from ..metrics import plot_history

            plot_history(self.history, os.path.join(self.out_dir, "curves.png"))
        return self.history

    # ---- persistence ---------------------------------------------------------------------------
    def state(self):
        return {
            "format": "fastconv.Trainer/1",
            "meta": self.meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "history": self.history,
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "random": random_state(),
        }

    def save_checkpoint(self, path):
        return ckpt.save(self.state(), path)

    def load_checkpoint(self, path):
        st = ckpt.load(path)
        if not isinstance(st, dict) or "model" not in st or "optimizer" not in st:
            raise ckpt.CheckpointError(f"checkpoint {path!r} is not a Trainer checkpoint (no model/optimizer state)")
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st.get("scheduler") is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        self.epoch, self.history = int(st["epoch"]), st["history"]
        self.best_val, self.bad_epochs = float(st["best_val"]), int(st["bad_epochs"])
        if st.get("random") is not None:
            set_random_state(st["random"])
        return st

    def save_history(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.history, f, indent=1)
        os.replace(tmp, path)
        return path
