"""Hyper-parameter search: grid and random search over learning rate, batch
size, weight decay and optimizer; every trial seeded; results as a table and CSV."""
import csv
import itertools
import time

import numpy as np

from .data import DataLoader

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad")


def make_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9):
    from . import optim

    name = name.lower()
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def grid(space):
    """All combinations of a {name: [values]} space, as dicts."""
    keys = list(space)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(space[k] for k in keys))]


def random_configs(space, n, seed=0):
    """``n`` configs drawn from the space: lists are sampled uniformly; (lo, hi, 'log') ranges log-uniformly."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cfg = {}
        for k, v in space.items():
            if isinstance(v, tuple) and len(v) == 3 and v[2] == "log":
                cfg[k] = float(np.exp(rng.uniform(np.log(v[0]), np.log(v[1]))))
            else:
                cfg[k] = v[int(rng.integers(len(v)))]
        out.append(cfg)
    return out


def run_trials(model_fn, train_ds, val_ds, configs, epochs=2, seed=0, log=print):
    """Train one model per config (same seed each) and evaluate on ``val_ds``.
    Returns the list of result dicts sorted best first (by validation accuracy)."""
    from . import random as fc_random
    from .train import Trainer

    results = []
    for i, cfg in enumerate(configs):
        fc_random.manual_seed(seed)
        model = model_fn()
        opt = make_optimizer(cfg.get("optimizer", "sgd"), model.parameters(), cfg.get("lr", 0.01),
                             cfg.get("weight_decay", 0.0))
        bs = int(cfg.get("batch_size", 32))
        tr = DataLoader(train_ds, bs, shuffle=True, seed=seed)
        va = DataLoader(val_ds, 256)
        t0 = time.perf_counter()
        trainer = Trainer(model, opt, progress=False, log=lambda *_: None)
        trainer.fit(tr, epochs=epochs)
        ev = trainer.evaluate(va)
        row = dict(cfg, trial=i, val_loss=ev["loss"], val_acc=ev["acc"],
                   train_loss=trainer.history["train_loss"][-1], seconds=time.perf_counter() - t0)
        results.append(row)
        log(f"trial {i}: {cfg} -> val acc {ev['acc']:.4f} loss {ev['loss']:.4f}")
    return sorted(results, key=lambda r: (-r["val_acc"], r["val_loss"]))


def format_table(results):
    if not results:
        return "(no trials)"
    keys = [k for k in results[0] if k != "trial"]
    rows = [["trial"] + keys] + [[str(r["trial"])] + [f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k])
                                                      for k in keys] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def write_csv(results, path):
    if not results:
        return path
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    return path
