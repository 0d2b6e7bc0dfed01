"""Classification and box losses.

Each loss is one file: the loss, the config dataclass of its keys (defaults and valid ranges),
and its registration with that config; the registered factory takes the loss's config
(``cfg.loss.cls`` or ``cfg.loss.box``) and returns the loss object.
"""
from ..registry import REGISTRY
from .box import GIoULoss, L1Loss, SmoothL1Loss
from .focal import (
    SigmoidFocalLoss,
    SoftmaxFocalLoss,
    sigmoid_focal_loss,
    sigmoid_focal_loss_from_labels,
    softmax_focal_loss,
)
from .focal_star import FocalStarLoss, focal_star_loss
from .ghm import GHMCLoss, GHMRLoss
from .poly1 import Poly1FocalLoss, poly1_focal_loss
from .quality_focal import QualityFocalLoss, quality_focal_loss
from .varifocal import VarifocalLoss, varifocal_loss


def build_cls_loss(cfg):
    """``cfg.loss.cls`` -> a classification loss object (see :class:`SigmoidFocalLoss`)."""
    return REGISTRY.build("cls_loss", cfg.loss.cls)


def build_box_loss(cfg):
    """``cfg.loss.box`` -> a box loss object (see :mod:`detector.losses.box`)."""
    return REGISTRY.build("box_loss", cfg.loss.box)


__all__ = [
    "FocalStarLoss",
    "GHMCLoss",
    "GHMRLoss",
    "Poly1FocalLoss",
    "QualityFocalLoss",
    "VarifocalLoss",
    "focal_star_loss",
    "poly1_focal_loss",
    "quality_focal_loss",
    "varifocal_loss",
    "GIoULoss",
    "L1Loss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "SoftmaxFocalLoss",
    "build_box_loss",
    "build_cls_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_from_labels",
    "softmax_focal_loss",
]
