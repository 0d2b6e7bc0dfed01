"""Poly-1 focal loss (Leng et al., "PolyLoss", 2022): the focal loss plus the first term of
its polynomial expansion in (1 - p_t), weighted by epsilon:

    Poly-1(p_t) = FL(p_t) + epsilon * (1 - p_t)^(gamma + 1),
    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)

As in the paper's code, alpha_t weights the focal term only. epsilon > 0 adds gradient where
p_t is small, epsilon < 0 removes it; the paper tunes epsilon per task, the default here
(``loss.cls.epsilon``) is 1. (1 - p_t) is taken in log space, log(1 - p_t) =
logsigmoid(-x_t), so that saturated logits stay finite.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ALPHA, NOT_NEGATIVE, ComponentConfig, param
from ..registry import REGISTRY
from .focal import sigmoid_focal_loss
from .targets import at_least_float32, element_targets


def poly1_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0,
                     epsilon: float = 1.0) -> Tensor:
    """Elementwise Poly-1 focal loss of ``logits`` against 0/1 ``targets`` (float32)."""
    x = at_least_float32(logits)
    t = targets.to(x.dtype)
    one_minus_pt = torch.exp(F.logsigmoid(-x * (2 * t - 1)))  # 1 - p_t = sigmoid(-x_t)
    return sigmoid_focal_loss(x, t, alpha, gamma) + epsilon * one_minus_pt.pow(gamma + 1)


@dataclass
class Poly1Config(ComponentConfig):
    """``loss.cls`` of ``poly1_focal``: FL (alpha, gamma) + epsilon (1 - p_t)^(gamma + 1)."""

    alpha: float = param(0.25, **ALPHA)
    gamma: float = param(2.0, **NOT_NEGATIVE)
    epsilon: float = 1.0


class Poly1FocalLoss:
    background_logit = False

    def __init__(self, alpha: float = Poly1Config.alpha, gamma: float = Poly1Config.gamma,
                 epsilon: float = Poly1Config.epsilon) -> None:
        self.alpha, self.gamma, self.epsilon = alpha, gamma, epsilon

    def __call__(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        targets, valid = element_targets(logits, gt_labels)
        return (poly1_focal_loss(logits, targets, self.alpha, self.gamma, self.epsilon) * valid).sum()


@REGISTRY.register("cls_loss", "poly1_focal", config=Poly1Config)
def _build(cfg: Poly1Config) -> Poly1FocalLoss:
    return Poly1FocalLoss(cfg.alpha, cfg.gamma, cfg.epsilon)
