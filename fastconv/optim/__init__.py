"""fastconv.optim: torch.optim-like optimizers, LR schedulers and gradient clipping.

Every update is one in-place kernel (``sgd_step``, ``adagrad_step``,
``adam_step``) resolved through ``fastconv.dispatch`` on the parameter's
device; ``flat=True`` packs each parameter group into one buffer so a step is
a single kernel call per group.
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam", "AdamW", "lr_scheduler", "clip_grad_norm_", "clip_grad_value_"]
