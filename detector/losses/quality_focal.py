"""Quality focal loss (Li et al., "Generalized Focal Loss", 2020): the focal loss with a soft,
IoU-valued target.

The target y of a positive anchor at its object's class is the IoU of its predicted box with
its ground truth (computed by the model, detached); every other element has y = 0. With
sigma = sigmoid(x):

    QFL(sigma) = -|y - sigma|^beta ((1 - y) log(1 - sigma) + y log(sigma))

i.e. the binary cross-entropy against y, scaled by the distance to it raised to beta (2 in
the paper). For y in {0, 1} and beta = gamma it is the focal loss without alpha. The scale is
not detached (as in mmdetection's ``quality_focal_loss``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import NOT_NEGATIVE, ComponentConfig, param
from ..registry import REGISTRY
from .targets import at_least_float32, element_targets


def quality_focal_loss(logits: Tensor, quality_targets: Tensor, beta: float = 2.0) -> Tensor:
    """Elementwise QFL of ``logits`` against soft targets y in [0, 1] (float32)."""
    x = at_least_float32(logits)
    y = quality_targets.to(x.dtype)
    scale = (y - torch.sigmoid(x)).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(x, y, reduction="none") * scale


@dataclass
class QualityFocalConfig(ComponentConfig):
    """``loss.cls`` of ``quality_focal``: beta, the exponent of |y - sigma| (2 in the paper)."""

    beta: float = param(2.0, **NOT_NEGATIVE)


class QualityFocalLoss:
    background_logit = False
    uses_quality = True  # the model passes each anchor's IoU as a third argument

    def __init__(self, beta: float = QualityFocalConfig.beta) -> None:
        self.beta = beta

    def __call__(self, logits: Tensor, gt_labels: Tensor, quality: Tensor) -> Tensor:
        targets, valid = element_targets(logits, gt_labels, quality)
        return (quality_focal_loss(logits, targets, self.beta) * valid).sum()


@REGISTRY.register("cls_loss", "quality_focal", config=QualityFocalConfig)
def _build(cfg: QualityFocalConfig) -> QualityFocalLoss:
    return QualityFocalLoss(cfg.beta)
