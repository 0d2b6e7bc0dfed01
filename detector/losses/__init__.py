"""Classification and box losses.

Registered factories take their config node (``cfg.loss.cls`` or ``cfg.loss.box``) and
return the loss object; ``build_cls_loss`` / ``build_box_loss`` are the only readers.
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
from .ghm import GHMCLoss
from .poly1 import Poly1FocalLoss, poly1_focal_loss
from .quality_focal import QualityFocalLoss, quality_focal_loss
from .varifocal import VarifocalLoss, varifocal_loss


def build_cls_loss(cfg):
    """``cfg.loss.cls`` -> a classification loss object (see :class:`SigmoidFocalLoss`)."""
    return REGISTRY.get("cls_loss", cfg.loss.cls.name)(cfg.loss.cls)


def build_box_loss(cfg):
    """``cfg.loss.box`` -> a box loss object (see :mod:`detector.losses.box`)."""
    return REGISTRY.get("box_loss", cfg.loss.box.name)(cfg.loss.box)


__all__ = [
    "FocalStarLoss",
    "GHMCLoss",
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
