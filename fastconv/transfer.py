"""Transfer learning: freeze/unfreeze by name pattern, replace the head,
per-group learning rates, feature extraction and a linear head on features."""
import contextlib
import fnmatch

import numpy as np

from .tensor import Tensor, no_grad


def _match(name, patterns):
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatchcase(name, p) or name.startswith(p.rstrip("*").rstrip(".") + ".") for p in patterns)


def freeze(model, patterns="*"):
    """Stop gradients for parameters whose names match ``patterns`` (fnmatch or prefix). Returns names."""
    names = [n for n, p in model.named_parameters() if _match(n, patterns)]
    if not names:
        raise ValueError(f"freeze: no parameter matches {patterns!r}")
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad = False
            p.grad = None
    return names


def unfreeze(model, patterns="*"):
    names = [n for n, p in model.named_parameters() if _match(n, patterns)]
    if not names:
        raise ValueError(f"unfreeze: no parameter matches {patterns!r}")
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad = True
    return names


def find_head(model):
    """Name of the last Linear layer (the classifier head)."""
    from .nn import Linear

    last = None
    for name, m in model.named_modules():
        if isinstance(m, Linear):
            last = name
    if last is None:
        raise ValueError(f"find_head: {type(model).__name__} has no Linear layer")
    return last


@contextlib.contextmanager
def _seeded_init(seed):
    """Draw initial weights from ``seed`` inside the block; the global initialiser stream is
    left where it was.  ``seed=None``: draw from the global stream."""
    from .nn import init

    if seed is None:
        yield
        return
    gen = init.get_generator()
    saved = gen.bit_generator.state
    gen.bit_generator.state = np.random.default_rng(seed).bit_generator.state
    try:
        yield
    finally:
        gen.bit_generator.state = saved


def replace_head(model, num_classes, name=None, seed=None):
    """Replace the classifier head (default: the last Linear) with a fresh Linear of ``num_classes``
    outputs on the same device and dtype, in the same place.  ``seed`` draws its initial weights from
    a generator seeded with it (the global initialiser stream is left untouched); returns the new head."""
    from .nn import Linear

    name = name or find_head(model)
    parent = model
    *path, leaf = name.split(".")
    for part in path:
        parent = parent._modules[part]
    old = parent._modules.get(leaf)
    if not isinstance(old, Linear):
        raise ValueError(f"replace_head: {name!r} is a {type(old).__name__}, not a Linear layer")
    with _seeded_init(seed):
        new = Linear(old.in_features, num_classes, bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    parent._modules[leaf] = new  # keeps the position (Sequential order)
    return new


def param_groups(model, lrs, default_lr):
    """Optimizer groups from {pattern: lr}; unmatched trainable parameters get ``default_lr``.
    The first matching pattern wins; frozen parameters are left out."""
    groups = {pat: [] for pat in lrs}
    rest = []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        for pat in lrs:
            if _match(n, pat):
                groups[pat].append(p)
                break
        else:
            rest.append(p)
    out = [{"params": ps, "lr": lrs[pat]} for pat, ps in groups.items() if ps]
    if rest:
        out.append({"params": rest, "lr": default_lr})
    return out


def _get_module(model, name):
    for n, m in model.named_modules():
        if n == name:
            return m
    raise ValueError(f"extract_features: no layer named {name!r}; layers: {[n for n, _ in model.named_modules()][:20]}...")


def extract_features(model, loader, layer=None):
    """Run ``model`` in eval mode and collect the output of ``layer`` (a module
    name; default: the input of the head, i.e. the output before the last Linear)
    flattened per sample.  Returns (features (N, F), labels (N,)) NumPy arrays."""
    captured = []
    if layer is None:
        head = _get_module(model, find_head(model))
        orig = head.forward

        def hook(x, *a, **k):
            captured.append(np.asarray(x.numpy()).reshape(x.shape[0], -1))
            return orig(x, *a, **k)

        target = head
    else:
        target = _get_module(model, layer)
        orig = target.forward

        def hook(*a, **k):
            out = orig(*a, **k)
            captured.append(np.asarray(out.numpy()).reshape(out.shape[0], -1))
            return out

    target.forward = hook
    labels = []
    model.eval()
    try:
        with no_grad():
            for x, y in loader:
                model(x)
                labels.append(np.asarray(y.numpy()))
    finally:
        del target.forward
    return np.concatenate(captured), np.concatenate(labels)


def train_linear_head(features, labels, num_classes, epochs=100, lr=0.05, weight_decay=1e-4, seed=0,
                      batch_size=128):
    """Fit a Linear classifier on fixed features with Adam; returns the Linear module."""
    from . import functional as F
    from .nn import Linear
    from .optim import Adam

    feats = np.ascontiguousarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if feats.ndim != 2 or labels.shape != (feats.shape[0],):
        raise ValueError(f"train_linear_head: features must be (N, F) and labels (N,), got {feats.shape} and "
                         f"{labels.shape}")
    rng = np.random.default_rng(seed)
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    with _seeded_init(seed):
        head = Linear(feats.shape[1], num_classes)
    head.feature_mean, head.feature_std = mu, sd
    xs = (feats - mu) / sd
    opt = Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for i in range(0, len(xs), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(head(Tensor(xs[idx])), Tensor(labels[idx]))
            loss.backward()
            opt.step()
    return head


def linear_head_predict(head, features):
    xs = (np.asarray(features, dtype=np.float32) - head.feature_mean) / head.feature_std
    with no_grad():
        return head(Tensor(xs)).numpy()


def init_head_from_probe(model, loader, head=None, epochs=30, lr=0.05, seed=0):
    """Fit a linear probe on the features entering the head (``train_linear_head``) and load it
    into the model's head, with the feature standardisation folded into its weights.  Fine-tuning
    from such a head ("LP-FT") leaves the pretrained features intact at the start."""
    name = head or find_head(model)
    lin = _get_module(model, name)
    feats, labels = extract_features(model, loader)
    probe = train_linear_head(feats, labels, lin.out_features, epochs=epochs, lr=lr, seed=seed)
    w = np.asarray(probe.weight.numpy(), np.float64) / probe.feature_std[None, :]
    b = np.asarray(probe.bias.numpy(), np.float64) - w @ probe.feature_mean
    xp = lin.weight.xp
    lin.weight.data[...] = xp.asarray(w.astype(lin.weight.dtype))
    if lin.bias is not None:
        lin.bias.data[...] = xp.asarray(b.astype(lin.bias.dtype))
    return lin


def fine_tune(model, train_loader, val_loader=None, epochs=3, lr=1e-3, body_lr=None, head=None,
              optimizer="adam", weight_decay=0.0, probe_epochs=0, **trainer_kwargs):
    """Fine-tune ``model`` with two learning rates: ``lr`` for the head (default: the last
    Linear) and ``body_lr`` (default lr/10) for every other trainable parameter.  With
    ``probe_epochs`` the head first gets a linear probe on the frozen features
    (``init_head_from_probe``).  Returns the Trainer."""
    from .train import Trainer
    from .tune import make_optimizer

    head = head or find_head(model)
    if probe_epochs:
        init_head_from_probe(model, train_loader, head, probe_epochs)
    groups = param_groups(model, {head: lr}, lr / 10 if body_lr is None else body_lr)
    opt = make_optimizer(optimizer, groups, lr, weight_decay)
    trainer = Trainer(model, opt, **trainer_kwargs)
    trainer.fit(train_loader, val_loader, epochs)
    return trainer
