"""The loop around the model: trainer, checkpoints, optimizer and schedule."""
from .checkpoint import load_model_weights, save_checkpoint
from .trainer import resolve_device, train

__all__ = ["load_model_weights", "resolve_device", "save_checkpoint", "train"]
