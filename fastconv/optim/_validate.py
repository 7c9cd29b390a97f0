"""Hyperparameter checks shared by the optimizers (torch.optim's rules, ValueError)."""
import numbers


def number(owner, name, v, minimum=None, below=None):
    """A real number >= minimum (and < below); raises ValueError naming the optimizer."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{owner}: '{name}' must be a number, got {v!r}")
    if v != v or (minimum is not None and v < minimum) or (below is not None and v >= below):
        rng = f">= {minimum}" if below is None else f"in [{minimum}, {below})"
        raise ValueError(f"{owner}: invalid {name} {v!r}: must be {rng}")
    return v
