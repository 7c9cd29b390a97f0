"""fastconv's global random stream: seeds for ops that draw (dropout).

``manual_seed(s)`` makes every later seed-less call reproducible, like
``torch.manual_seed``; ``next_seed()`` hands out the next seed.
"""
import numbers

import numpy as np

__all__ = ["manual_seed", "next_seed", "initial_seed", "get_state", "set_state"]

_state = {"seed": None, "gen": np.random.default_rng()}


def manual_seed(seed):
    """Reset the global stream to ``seed`` (a non-negative int)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _state["seed"] = int(seed)
    _state["gen"] = np.random.default_rng(int(seed))


def initial_seed():
    """The seed last given to ``manual_seed`` (None if never called)."""
    return _state["seed"]


def next_seed():
    """The next seed from the global stream: a non-negative int below 2**63."""
    return int(_state["gen"].integers(0, 2**63 - 1))


def get_state():
    """The global stream's state (JSON-serialisable), for checkpoints: ``set_state`` restores it."""
    return {"seed": _state["seed"], "bit_generator": _state["gen"].bit_generator.state}


def set_state(state):
    """Restore a state from ``get_state`` so later draws repeat exactly."""
    try:
        bg = state["bit_generator"]
        gen = np.random.Generator(getattr(np.random, bg["bit_generator"])())
        gen.bit_generator.state = bg
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"set_state: not a state from fastconv.random.get_state ({exc})") from None
    _state["seed"] = state.get("seed")
    _state["gen"] = gen
