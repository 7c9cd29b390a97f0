"""Trainer: fit / evaluate / predict with validation, schedules, clipping,
early stopping, atomic per-epoch checkpoints and bit-identical resume (CPU)."""
import json
import os
import time

import numpy as np

from .. import random as fc_random
from ..tensor import Tensor, no_grad
from . import checkpoint as ckpt


def _default_loss(logits, target):
    from ..functional import cross_entropy

    return cross_entropy(logits, target)


class Trainer:
    """Train ``model`` with ``optimizer``.

    weight decay belongs to the optimizer (``weight_decay=``); ``l2`` adds an
    explicit penalty ``l2/2 * sum(w**2)`` to the loss instead -- two separate
    options, as they differ for adaptive optimizers.  ``grad_clip`` clips the
    global gradient norm.  ``early_stopping`` is a patience in epochs on the
    validation loss.  With ``out_dir`` a checkpoint is written atomically after
    every epoch (``last.ckpt``, and ``best.ckpt`` on improvement) together
    with ``history.json``.
    """

    def __init__(self, model, optimizer, loss_fn=None, scheduler=None, grad_clip=None, l2=0.0,
                 early_stopping=None, out_dir=None, progress=True, log=print):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_fn = loss_fn or _default_loss
        self.grad_clip, self.l2, self.early_stopping = grad_clip, float(l2), early_stopping
        self.out_dir, self.progress, self.log = out_dir, progress, log
        self.history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "lr": [],
                        "epoch_time": []}
        self.epoch = 0
        self.best_val = float("inf")
        self.bad_epochs = 0

    # ---- one epoch -------------------------------------------------------------------------
    def _penalty(self):
        total = None
        for p in self.model.parameters():
            if p.ndim > 1:  # weights, not biases / norm scales
                t = (p * p).sum()
                total = t if total is None else total + t
        return total * (0.5 * self.l2) if total is not None else None

    def _clip(self):
        from ..optim.clip import clip_grad_norm_

        clip_grad_norm_(self.model.parameters(), self.grad_clip)

    def train_epoch(self, loader, epoch_label=""):
        self.model.train()
        loader.set_epoch(self.epoch)
        tot_loss, tot_correct, tot_n, t0 = 0.0, 0, 0, time.perf_counter()
        bar = None
        if self.progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=len(loader), desc=epoch_label, leave=False, dynamic_ncols=True)
            except ImportError:
                bar = None
        for x, y in loader:
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
                self._clip()
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
        if bar is not None:
            bar.close()
        return tot_loss / max(tot_n, 1), tot_correct / max(tot_n, 1), time.perf_counter() - t0

    def predict(self, loader):
        """(scores (N, C) NumPy, labels (N,) NumPy) in eval mode, no graph."""
        self.model.eval()
        scores, labels = [], []
        with no_grad():
            for x, y in loader:
                out = self.model(x)
                scores.append(np.asarray(out.numpy()))
                labels.append(np.asarray(y.numpy()))
        return np.concatenate(scores), np.concatenate(labels)

    def evaluate(self, loader):
        """{'loss', 'acc', 'n'} over the loader, in eval mode."""
        self.model.eval()
        tot_loss, tot_correct, tot_n = 0.0, 0, 0
        with no_grad():
            for x, y in loader:
                out = self.model(x)
                n = y.shape[0]
                tot_loss += float(self.loss_fn(out, y).item()) * n
                tot_correct += int((out.data.argmax(1) == y.data).sum())
                tot_n += n
        return {"loss": tot_loss / max(tot_n, 1), "acc": tot_correct / max(tot_n, 1), "n": tot_n}

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, epochs=10, resume=False):
        if resume:
            path = resume if isinstance(resume, str) else os.path.join(self.out_dir or ".", "last.ckpt")
            if os.path.exists(path):
                self.load_checkpoint(path)
                self.log(f"resumed from {path} at epoch {self.epoch}")
        while self.epoch < epochs:
            label = f"epoch {self.epoch + 1}/{epochs}"
            lr = self.optimizer.param_groups[0]["lr"]
            tl, ta, dt = self.train_epoch(train_loader, label)
            self.epoch += 1
            h = self.history
            h["train_loss"].append(tl)
            h["train_acc"].append(ta)
            h["lr"].append(lr)
            h["epoch_time"].append(dt)
            msg = f"{label}: loss {tl:.4f} acc {ta:.4f} ({len(train_loader.dataset) / dt:.0f} img/s)"
            val_loss = None
            if val_loader is not None:
                v = self.evaluate(val_loader)
                val_loss = v["loss"]
                h["val_loss"].append(v["loss"])
                h["val_acc"].append(v["acc"])
                msg += f" | val loss {v['loss']:.4f} acc {v['acc']:.4f}"
            self.log(msg)
            if self.scheduler is not None:
                if type(self.scheduler).__name__ == "ReduceLROnPlateau":
                    self.scheduler.step(val_loss if val_loss is not None else tl)
                else:
                    self.scheduler.step()
            improved = (val_loss if val_loss is not None else tl) < self.best_val
            if improved:
                self.best_val = val_loss if val_loss is not None else tl
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            if self.out_dir:
                self.save_checkpoint(os.path.join(self.out_dir, "last.ckpt"))
                if improved:
                    self.save_checkpoint(os.path.join(self.out_dir, "best.ckpt"))
                self.save_history(os.path.join(self.out_dir, "history.json"))
            if self.early_stopping and self.bad_epochs >= self.early_stopping:
                self.log(f"early stopping after {self.epoch} epochs (no improvement for {self.bad_epochs})")
                break
        return self.history

    # ---- persistence ---------------------------------------------------------------------------
    def state(self):
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "history": self.history,
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "random": fc_random.get_state(),
        }

    def save_checkpoint(self, path):
        return ckpt.save(self.state(), path)

    def load_checkpoint(self, path):
        st = ckpt.load(path)
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st.get("scheduler") is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        self.epoch, self.history = int(st["epoch"]), st["history"]
        self.best_val, self.bad_epochs = float(st["best_val"]), int(st["bad_epochs"])
        if st.get("random") is not None:
            fc_random.set_state(st["random"])
        return st

    def save_history(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.history, f, indent=1)
        os.replace(tmp, path)
        return path


def to_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)
