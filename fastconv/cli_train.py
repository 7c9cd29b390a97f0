"""``fastconv train | eval | tune | demo``: the training subcommands.

Registered into ``fastconv.cli.COMMANDS`` (see ``COMMANDS`` below).  Heavy
imports happen inside the functions so ``fastconv info`` stays light.
"""
import contextlib
import json
import os
import sys

DATASET_HELP = "digits | mnist:PATH | fashion:PATH | cifar10:PATH | cifar100:PATH | folder:PATH"
OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad")


def resolve_device(device="auto"):
    """'auto' -> 'cuda' when CuPy sees a GPU, else 'cpu'."""
    if device in ("cpu", "cuda"):
        if device == "cuda":
            from .dispatch import gpu_status

            ok, why = gpu_status()
            if not ok:
                raise RuntimeError(f"--device cuda: {why}")
        return device
    if device != "auto":
        raise ValueError(f"unknown device {device!r}: expected auto, cpu or cuda")
    from .dispatch import gpu_status

    return "cuda" if gpu_status()[0] else "cpu"


def default_size(model_name):
    return 32 if model_name.startswith("lenet") else None


def build_model(name, num_classes, in_channels):
    from .models import get_model

    try:
        return get_model(name, num_classes=num_classes, in_channels=in_channels)
    except TypeError:  # builders without in_channels (torchvision-style, 3 channels)
        if in_channels != 3:
            raise ValueError(f"model {name!r} takes 3-channel input; the dataset has {in_channels}") from None
        return get_model(name, num_classes=num_classes)


def channel_stats(ds):
    x = ds.images
    return x.mean(axis=(0, 2, 3)).tolist(), (x.std(axis=(0, 2, 3)) + 1e-6).tolist()


def _backend_ctx(backend):
    if not backend:
        return contextlib.nullcontext()
    from .dispatch import use_backend

    return use_backend(backend)


def write_report(scores, labels, out_dir, class_names=None, extra=None):
    """Metrics report (report.json) and confusion / ROC / PR plots into ``out_dir``; returns the report."""
    from . import metrics

    os.makedirs(out_dir, exist_ok=True)
    rep = metrics.classification_report(labels, scores, class_names)
    if extra:
        rep.update(extra)
    metrics.plot_confusion_matrix(rep["confusion_matrix"], os.path.join(out_dir, "confusion_matrix.png"), class_names)
    metrics.plot_roc(labels, scores, os.path.join(out_dir, "roc.png"), class_names)
    metrics.plot_pr(labels, scores, os.path.join(out_dir, "pr.png"), class_names)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    return rep


def summary_line(rep):
    return (f"test accuracy {rep['accuracy']:.4f}  macro-F1 {rep['f1_macro']:.4f}  "
            f"ROC AUC (macro, one-vs-rest) {rep['roc_auc_macro']:.4f}  (n={rep['n']})")


def train_model(model="lenet5", dataset="digits", epochs=10, batch_size=32, lr=1e-3, optimizer="adam",
                weight_decay=0.0, l2=0.0, grad_clip=None, scheduler="cosine", early_stopping=None, device="auto",
                backend=None, out="runs/train", seed=0, size=None, augment=False, progress="auto", resume=False,
                fractions=(0.8, 0.1, 0.1), log=print):
    """Train ``model`` on ``dataset``; write checkpoints, history, curves, plots and report.json to ``out``.
    Returns (report dict, trainer)."""
    from . import data, optim
    from .train import Trainer, seed_all
    from .tune import make_optimizer

    device = resolve_device(device)
    size = size or default_size(model)
    train_ds, val_ds, test_ds = data.load_splits(dataset, size, fractions, seed)
    n_cls, in_ch = train_ds.num_classes, train_ds.images.shape[1]
    mean, std = channel_stats(train_ds)
    norm = data.transforms.Normalize(mean, std)
    aug = norm
    if augment:
        h = train_ds.images.shape[-1]
        aug = data.transforms.Compose(data.transforms.RandomCrop(h, padding=max(1, h // 16)),
                                      data.transforms.RandomRotation(10), norm)
    seed_all(seed)
    net = build_model(model, n_cls, in_ch)
    if device != "cpu":
        net.to(device)
    opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay)
    sched = None
    if scheduler == "cosine":
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    elif scheduler == "step":
        sched = optim.lr_scheduler.StepLR(opt, max(1, epochs // 3), 0.1)
    elif scheduler == "plateau":
        sched = optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.3, patience=2)
    elif scheduler not in (None, "none"):
        raise ValueError(f"unknown scheduler {scheduler!r}: expected none, cosine, step, plateau")
    meta = {"model": model, "num_classes": n_cls, "in_channels": in_ch, "size": size, "mean": mean, "std": std,
            "classes": train_ds.classes, "dataset": dataset, "seed": seed}
    trainer = Trainer(net, opt, scheduler=sched, grad_clip=grad_clip, l2=l2, early_stopping=early_stopping,
                      out_dir=out, progress=progress, log=log, meta=meta)
    kw = dict(prefetch=2, device=device)
    tr = data.DataLoader(train_ds, batch_size, shuffle=True, seed=seed, transform=aug, **kw)
    va = data.DataLoader(val_ds, 256, transform=norm, **kw)
    te = data.DataLoader(test_ds, 256, transform=norm, **kw)
    log(f"{model} on {dataset}: {len(train_ds)} train / {len(val_ds)} val / {len(test_ds)} test images "
        f"{tuple(train_ds.images.shape[1:])}, {n_cls} classes, device {device}"
        + (f", backend {backend}" if backend else ""))
    with _backend_ctx(backend):
        trainer.fit(tr, va, epochs, resume=resume)
        scores, labels = trainer.predict(te)
    rep = write_report(scores, labels, out, train_ds.classes,
                       {"model": model, "dataset": dataset, "epochs": trainer.epoch, "device": device,
                        "train_seconds": float(sum(trainer.history["epoch_time"]))})
    return rep, trainer


# ---------------------------------------------------------------- train
def _train_args(p):
    p.add_argument("model", help="model name (fastconv.models.list_models()), e.g. lenet5, resnet20")
    p.add_argument("--dataset", default="digits", help=DATASET_HELP)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0, help="decoupled/optimizer weight decay")
    p.add_argument("--l2", type=float, default=0.0, help="explicit L2 penalty l2/2*|w|^2 added to the loss")
    p.add_argument("--grad-clip", type=float, default=None, help="clip the global gradient norm")
    p.add_argument("--scheduler", choices=("none", "cosine", "step", "plateau"), default="cosine")
    p.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE")
    p.add_argument("--augment", action="store_true", help="random crop with padding and rotation")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE (LeNet: 32)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--backend", default=None, help="prefer this kernel backend (fastconv info lists them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default="runs/train", metavar="DIR")


def _train_run(args):
    rep, _ = train_model(args.model, args.dataset, args.epochs, args.batch_size, args.lr, args.optimizer,
                         args.weight_decay, args.l2, args.grad_clip, args.scheduler, args.early_stopping,
                         args.device, args.backend, args.out, args.seed, args.size, args.augment,
                         False if args.no_progress else "auto", args.resume)
    print(summary_line(rep))
    print(f"wrote checkpoint, history, plots and report.json to {args.out}")
    return 0


# ---------------------------------------------------------------- eval
def _eval_args(p):
    p.add_argument("checkpoint", help="a checkpoint written by fastconv train (last.ckpt / best.ckpt)")
    p.add_argument("--dataset", default=None, help=DATASET_HELP + " (default: the one it was trained on)")
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test",
                   help="which split (the same seeded split as in training); all: the three together")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--backend", default=None)
    p.add_argument("--out", default=None, metavar="DIR", help="plots and report (default: next to the checkpoint)")


def evaluate_checkpoint(path, dataset=None, split_name="test", device="auto", backend=None, out=None):
    import numpy as np

    from . import data
    from .train import Trainer, load_checkpoint

    st = load_checkpoint(path)
    meta = st.get("meta") if isinstance(st, dict) else None
    if not meta or "model" not in meta:
        raise ValueError(f"{path!r}: the checkpoint has no model description (meta); was it written by fastconv train?")
    device = resolve_device(device)
    dataset = dataset or meta["dataset"]
    parts = data.load_splits(dataset, meta["size"], seed=meta.get("seed", 0))
    if split_name == "all":
        ds = data.ArrayDataset(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                               parts[0].classes, dataset)
    else:
        ds = {"train": parts[0], "val": parts[1], "test": parts[2]}[split_name]
    if ds.images.shape[1] != meta["in_channels"] or ds.num_classes > meta["num_classes"]:
        raise ValueError(f"dataset {dataset!r} ({ds.images.shape[1]} channels, {ds.num_classes} classes) does not "
                         f"fit the checkpoint's model ({meta['in_channels']} channels, {meta['num_classes']} classes)")
    net = build_model(meta["model"], meta["num_classes"], meta["in_channels"])
    net.load_state_dict(st["model"])
    if device != "cpu":
        net.to(device)
    norm = data.transforms.Normalize(meta["mean"], meta["std"])
    loader = data.DataLoader(ds, 256, transform=norm, device=device)
    with _backend_ctx(backend):
        scores, labels = Trainer(net, _NoOptimizer(), progress=False, log=None).predict(loader)
    out = out or os.path.dirname(os.path.abspath(path))
    return write_report(scores, labels, out, meta.get("classes"),
                        {"checkpoint": os.path.abspath(path), "dataset": dataset, "split": split_name})


class _NoOptimizer:
    param_groups = [{"lr": 0.0}]


def _eval_run(args):
    rep = evaluate_checkpoint(args.checkpoint, args.dataset, args.split, args.device, args.backend, args.out)
    print(f"accuracy {rep['accuracy']:.4f}  macro-F1 {rep['f1_macro']:.4f}  ROC AUC {rep['roc_auc_macro']:.4f}  "
          f"(n={rep['n']}, split {rep['split']})")
    print(f"wrote report.json, confusion_matrix.png, roc.png, pr.png to "
          f"{args.out or os.path.dirname(os.path.abspath(args.checkpoint))}")
    return 0


# ---------------------------------------------------------------- tune
def _floats(s):
    return [float(v) for v in s.split(",") if v]


def _tune_args(p):
    p.add_argument("model")
    p.add_argument("--dataset", default="digits", help=DATASET_HELP)
    p.add_argument("--mode", choices=("grid", "random"), default="grid")
    p.add_argument("--trials", type=int, default=8, help="random search: number of trials")
    p.add_argument("--lr", type=_floats, default=[1e-3, 3e-3], help="comma list (random mode: the range lo,hi)")
    p.add_argument("--batch-size", type=lambda s: [int(v) for v in s.split(",")], default=[32])
    p.add_argument("--weight-decay", type=_floats, default=[0.0])
    p.add_argument("--optimizer", type=lambda s: s.split(","), default=["adam"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="use only this many training images")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/tune", metavar="DIR", help="writes tune.csv and best.json")


def _tune_run(args):
    from . import data, tune

    for o in args.optimizer:
        if o not in OPTIMIZERS:
            raise SystemExit(f"fastconv tune: unknown optimizer {o!r}; expected {', '.join(OPTIMIZERS)}")
    size = args.size or default_size(args.model)
    train_ds, val_ds, _ = data.load_splits(args.dataset, size, seed=args.seed)
    if args.subset:
        train_ds = train_ds.subset(slice(0, args.subset))
    device = resolve_device(args.device)
    n_cls, in_ch = train_ds.num_classes, train_ds.images.shape[1]
    lr = args.lr
    if args.mode == "random" and len(lr) == 2:
        lr = (lr[0], lr[1], "log")
    space = {"lr": lr, "batch_size": args.batch_size, "weight_decay": args.weight_decay,
             "optimizer": args.optimizer}
    os.makedirs(args.out, exist_ok=True)
    res = tune.search(lambda: build_model(args.model, n_cls, in_ch), train_ds, val_ds, space, args.mode,
                      args.trials, args.epochs, args.seed, os.path.join(args.out, "tune.csv"), device=device)
    with open(os.path.join(args.out, "best.json"), "w") as f:
        json.dump(res["best"], f, indent=1)
    print(f"wrote {os.path.join(args.out, 'tune.csv')} and best.json")
    return 0


# ---------------------------------------------------------------- demo
def _demo_args(p):
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epoch count")
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-bench", action="store_true", help="skip the quick benchmark table")
    p.add_argument("--no-progress", action="store_true")


def _demo_run(args):
    from .demo import main

    return main(epochs=args.epochs, out=args.out, device=args.device, bench=not args.no_bench,
                progress=False if args.no_progress else "auto")


COMMANDS = {
    "train": ("train a model on a dataset; write checkpoint, history, plots and a metrics report",
              _train_args, _train_run),
    "eval": ("evaluate a checkpoint: accuracy, macro-F1, ROC AUC, plots", _eval_args, _eval_run),
    "tune": ("grid / random search over lr, batch size, weight decay, optimizer", _tune_args, _tune_run),
    "demo": ("LeNet-5 on digits: train, report, quick benchmark (make run)", _demo_args, _demo_run),
}


if __name__ == "__main__":  # pragma: no cover
    from .cli import main as _main

    sys.exit(_main())
