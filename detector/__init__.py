"""detector: RetinaNet training and evaluation built around the focal loss."""
__version__ = "0.1.0"
