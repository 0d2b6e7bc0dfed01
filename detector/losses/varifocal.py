"""Varifocal loss (Zhang et al., "VarifocalNet", 2021): an IoU-aware classification loss.

The target of a positive anchor at its object's class is q, the IoU of the anchor's
predicted box with its ground truth (computed by the model, detached); every other element
has q = 0. With p = sigmoid(x):

    VFL(p, q) = -q (q log p + (1 - q) log(1 - p))     if q > 0
              = -alpha p^gamma log(1 - p)              if q = 0

Positives are weighted by their own quality, negatives are the focal loss's (alpha 0.75,
gamma 2 in the paper). Detection scores then estimate the IoU, which ranks boxes for NMS and AP.
The weight alpha p^gamma is not detached (as in mmdetection's ``varifocal_loss``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import FRACTION, NOT_NEGATIVE, ComponentConfig, param
from ..registry import REGISTRY
from .targets import at_least_float32, element_targets


def varifocal_loss(logits: Tensor, quality_targets: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Elementwise VFL of ``logits`` against soft targets q in [0, 1] (float32)."""
    x = at_least_float32(logits)
    q = quality_targets.to(x.dtype)
    p = torch.sigmoid(x)
    weight = torch.where(q > 0, q, alpha * p.pow(gamma))
    return F.binary_cross_entropy_with_logits(x, q, reduction="none") * weight


@dataclass
class VarifocalConfig(ComponentConfig):
    """``loss.cls`` of ``varifocal``: the paper's alpha 0.75 (weight of the negatives) and gamma 2."""

    alpha: float = param(0.75, **FRACTION)
    gamma: float = param(2.0, **NOT_NEGATIVE)


QUALITY_FLOOR = 1e-6  # the smallest IoU target of a foreground anchor


class VarifocalLoss:
    background_logit = False
    uses_quality = True  # the model passes each anchor's IoU as a third argument

    def __init__(self, alpha: float = VarifocalConfig.alpha, gamma: float = VarifocalConfig.gamma) -> None:
        self.alpha, self.gamma = alpha, gamma

    def __call__(self, logits: Tensor, gt_labels: Tensor, quality: Tensor) -> Tensor:
        """``[N, R, K]`` logits, ``[N, R]`` labels and IoUs -> the loss summed over valid anchors."""
        # A foreground anchor whose predicted box misses its object has IoU 0: kept a positive
        # with a tiny target, as the reference (mmdetection's VFNet) clamps it, not turned into
        # a negative weighted alpha p^gamma.
        targets, valid = element_targets(logits, gt_labels, quality.clamp(min=QUALITY_FLOOR))
        return (varifocal_loss(logits, targets, self.alpha, self.gamma) * valid).sum()


@REGISTRY.register("cls_loss", "varifocal", config=VarifocalConfig)
def _build(cfg: VarifocalConfig) -> VarifocalLoss:
    return VarifocalLoss(cfg.alpha, cfg.gamma)
