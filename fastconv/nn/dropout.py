"""Dropout: identity in eval mode; in training a seeded mask drawn from nn.init's generator."""
from .. import functional as F
from . import init
from .module import Module


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        seed = int(init.get_generator().integers(0, 2 ** 31 - 1))
        return F.dropout(x, self.p, True, seed=seed)

    def extra_repr(self):
        return f"p={self.p}"
