"""Training: Trainer (fit/evaluate/predict) and atomic checkpoints."""
from .checkpoint import CheckpointError, load as load_checkpoint, save as save_checkpoint
from .trainer import Trainer, random_state, seed_all, set_random_state

__all__ = ["Trainer", "CheckpointError", "save_checkpoint", "load_checkpoint", "seed_all", "random_state",
           "set_random_state"]
