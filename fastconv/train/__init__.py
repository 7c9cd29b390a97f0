"""Training: Trainer (fit/evaluate/predict) and atomic checkpoints."""
from .checkpoint import CheckpointError, load as load_checkpoint, save as save_checkpoint
from .trainer import Trainer

__all__ = ["Trainer", "CheckpointError", "save_checkpoint", "load_checkpoint"]
