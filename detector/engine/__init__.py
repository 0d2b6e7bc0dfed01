"""The loop around the model: trainer, checkpoints, optimizer and schedule, metrics, the
output-directory lock and the clean stop on signals.

``train`` is imported on first use, so that ``detector.engine.stopping`` and ``lock`` stay
cheap to import (the CLI needs them before it knows whether anything will train).
"""


def __getattr__(name):
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(f"module 'detector.engine' has no attribute '{name}'")
