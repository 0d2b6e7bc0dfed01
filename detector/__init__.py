"""detector: RetinaNet training and evaluation built around the focal loss.

``from detector import Detector`` is the Python API (:class:`detector.inference.Detector`);
it is imported on first use, so that ``import detector`` (and ``detector --help``) stays fast.
"""
from .version import __version__

__all__ = ["Detector", "__version__"]


def __getattr__(name):
    if name == "Detector":
        from .inference import Detector

        return Detector
    raise AttributeError(f"module 'detector' has no attribute '{name}'")
