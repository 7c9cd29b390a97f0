"""Multi-task network: one shared trunk, several named heads, a weighted sum of per-task losses."""
from .. import nn
from .weights import register

_LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss, "huber": nn.HuberLoss,
           "bce_with_logits": nn.BCEWithLogitsLoss}


class MultiTaskNet(nn.Module):
    """``forward(x) -> {task: output}``; ``loss(outputs, targets) -> (total, {task: loss})``.

    ``heads`` maps task names to modules reading the trunk's features; ``losses`` maps task
    names to loss modules (or names in ``cross_entropy``, ``mse``, ``huber``,
    ``bce_with_logits``); ``loss_weights`` to floats (default 1).
    """

    def __init__(self, trunk, heads, losses=None, loss_weights=None):
        super().__init__()
        if not heads:
            raise ValueError("MultiTaskNet: needs at least one head")
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)
        losses = dict(losses or {})
        for task in self.heads:
            spec = losses.get(task, "cross_entropy")
            if isinstance(spec, str):
                if spec not in _LOSSES:
                    raise ValueError(f"MultiTaskNet: unknown loss {spec!r} for task {task!r}; known {sorted(_LOSSES)}")
                spec = _LOSSES[spec]()
            losses[task] = spec
        unknown = set(losses) - set(self.heads)
        if unknown:
            raise ValueError(f"MultiTaskNet: losses given for unknown tasks {sorted(unknown)}")
        self.losses = nn.ModuleDict(losses)
        weights = dict(loss_weights or {})
        unknown = set(weights) - set(self.heads)
        if unknown:
            raise ValueError(f"MultiTaskNet: loss_weights given for unknown tasks {sorted(unknown)}")
        self.loss_weights = {t: float(weights.get(t, 1.0)) for t in self.heads}

    def forward(self, x):
        f = self.trunk(x)
        return {task: head(f) for task, head in self.heads.items()}

    def loss(self, outputs, targets):
        missing = [t for t in self.heads if t not in targets or t not in outputs]
        if missing:
            raise KeyError(f"MultiTaskNet.loss: no output/target for task(s) {missing}")
        per_task = {t: self.losses[t](outputs[t], targets[t]) for t in self.heads}
        total = None
        for t, v in per_task.items():
            term = v * self.loss_weights[t]
            total = term if total is None else total + term
        return total, per_task


def small_trunk(in_channels=1, width=16):
    """conv-bn-relu-pool x2 then global average pooling: (N, C, H, W) -> (N, 2*width)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


@register
def multitask(tasks=None, in_channels=1, width=16, losses=None, loss_weights=None):
    """A small CNN trunk with one linear head per task; ``tasks`` maps name -> output size
    (default: ``{'digit': 10, 'parity': 2}``)."""
    tasks = tasks or {"digit": 10, "parity": 2}
    heads = {name: nn.Linear(2 * width, n) for name, n in tasks.items()}
    return MultiTaskNet(small_trunk(in_channels, width), heads, losses, loss_weights)
