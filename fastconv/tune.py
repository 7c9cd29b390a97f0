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
    if n < 1:
        raise ValueError(f"random_configs: n must be >= 1, got {n}")
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


def run_trials(model_fn, train_ds, val_ds, configs, epochs=2, seed=0, log=print, device="cpu"):
    """Train one model per config -- every trial seeded with the same ``seed`` (model init,
    shuffling) so trials differ only by their configuration -- and evaluate on ``val_ds``.
    Returns the list of result dicts sorted best first (validation accuracy, then loss)."""
    from .train import Trainer, seed_all

    results = []
    for i, cfg in enumerate(configs):
        unknown = set(cfg) - {"lr", "batch_size", "weight_decay", "optimizer", "momentum"}
        if unknown:
            raise ValueError(f"tune: unknown hyper-parameters {sorted(unknown)}; "
                             "expected lr, batch_size, weight_decay, optimizer, momentum")
        seed_all(seed)
        model = model_fn()
        if device != "cpu":
            model.to(device)
        opt = make_optimizer(cfg.get("optimizer", "sgd"), model.parameters(), float(cfg.get("lr", 0.01)),
                             float(cfg.get("weight_decay", 0.0)), float(cfg.get("momentum", 0.9)))
        bs = int(cfg.get("batch_size", 32))
        tr = DataLoader(train_ds, bs, shuffle=True, seed=seed)
        va = DataLoader(val_ds, 256)
        t0 = time.perf_counter()
        trainer = Trainer(model, opt, progress=False, log=None)
        trainer.fit(tr, epochs=epochs)
        ev = trainer.evaluate(va)
        row = dict(cfg, trial=i, val_loss=ev["loss"], val_acc=ev["acc"],
                   train_loss=trainer.history["train_loss"][-1], seconds=time.perf_counter() - t0)
        results.append(row)
        if log:
            log(f"trial {i + 1}/{len(configs)}: {cfg} -> val acc {ev['acc']:.4f} loss {ev['loss']:.4f}")
    return sorted(results, key=lambda r: (-r["val_acc"], r["val_loss"], r["trial"]))


def search(model_fn, train_ds, val_ds, space, mode="grid", n_trials=8, epochs=2, seed=0, csv_path=None,
           log=print, device="cpu"):
    """Grid or random search; returns {'results': [...best first], 'best': config of the best trial}.
    Prints the results table through ``log`` and writes ``csv_path`` when given."""
    if mode not in ("grid", "random"):
        raise ValueError(f"tune.search: mode must be 'grid' or 'random', got {mode!r}")
    configs = grid(space) if mode == "grid" else random_configs(space, n_trials, seed)
    results = run_trials(model_fn, train_ds, val_ds, configs, epochs, seed, log, device)
    keys = [k for k in ("lr", "batch_size", "weight_decay", "optimizer", "momentum") if k in results[0]]
    best = {k: results[0][k] for k in keys}
    if log:
        log(format_table(results))
        log(f"best: {best} (val acc {results[0]['val_acc']:.4f})")
    if csv_path:
        write_csv(results, csv_path)
    return {"results": results, "best": best}


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
