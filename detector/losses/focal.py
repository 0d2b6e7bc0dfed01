"""The classification losses of the focal loss paper (Lin et al., 2017).

``sigmoid_focal_loss`` is the paper's loss. Cross-entropy (gamma=0, alpha<0) and
alpha-balanced cross-entropy (gamma=0, alpha=0.75) are the same function with other
parameters, so every preset runs through one code path. ``softmax_focal_loss`` is the
multi-class variant for a head with an explicit background logit.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import REGISTRY


def _at_least_float32(x: Tensor) -> Tensor:
    """Half and bfloat16 are computed in float32; float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got '{reduction}'")


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    """FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), elementwise over independent sigmoids.

    The contract of ``torchvision.ops.sigmoid_focal_loss``: ``logits`` and ``targets`` have
    the same shape, targets are 0/1 (soft targets in [0, 1] also work), ``alpha < 0``
    disables the alpha_t weighting. Unlike torchvision it computes in float32 whatever the
    input dtype and returns float32 (float64 for float64 input), and writes the modulating factor as
    ``exp(gamma * log(1 - p_t))`` with ``log(1 - p_t)`` taken from log-sigmoids, so value and
    gradient stay finite for saturated logits (|x| = 100 and beyond) and any gamma >= 0.
    """
    x = _at_least_float32(logits)
    t = targets.to(x.dtype)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    # 1 - p_t = p (1 - t) + (1 - p) t, in log space: log(1 - p_t).
    log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    log_t = torch.log(t)  # -inf where t == 0: contributes exp(-inf) = 0 to the sum below
    log_1mt = torch.log1p(-t)
    log_1m_pt = torch.logaddexp(log_p + log_1mt, log_1mp + log_t)
    loss = ce * torch.exp(gamma * log_1m_pt) if gamma != 0 else ce
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction)


def softmax_focal_loss(
    logits: Tensor,
    target_classes: Tensor,
    gamma: float = 2.0,
    alpha: Optional[float] = None,
    reduction: str = "none",
) -> Tensor:
    """Multi-class focal loss -alpha_t (1 - p_t)^gamma log p_t over a softmax.

    Args:
        logits: ``[..., C]``; the background is one of the C classes (by convention in this
            package the last one, index C - 1).
        target_classes: ``[...]`` int64 class indices in ``0..C-1``.
        alpha: ``None`` for no weighting; otherwise foreground targets (index < C - 1) are
            weighted by ``alpha`` and background targets by ``1 - alpha``.
    Returns:
        ``[...]`` float32 loss (float64 for float64 input; reduced as asked). Because the
        loss depends on the logits only through the softmax, its gradient with respect to
        each row of logits sums to zero.
    """
    log_probs = F.log_softmax(_at_least_float32(logits), dim=-1)
    index = target_classes.long().unsqueeze(-1)
    log_pt = log_probs.gather(-1, index).squeeze(-1)
    loss = -log_pt
    if gamma != 0:
        # log(1 - p_t) = log sum_{j != t} p_j: finite, with a finite gradient, even when p_t
        # rounds to 1, where log1p(-p_t) would give -inf and a NaN gradient.
        others = log_probs.scatter(-1, index, float("-inf"))
        loss = loss * torch.exp(gamma * torch.logsumexp(others, dim=-1))
    if alpha is not None:
        background = logits.shape[-1] - 1
        loss = torch.where(target_classes == background, 1.0 - alpha, alpha) * loss
    return _reduce(loss, reduction)


class SigmoidFocalLoss:
    """Classification loss for a head with K sigmoid outputs per anchor.

    Called on ``logits [N, A, K]`` and ``gt_labels [N, A]`` (0..K-1 object class, K
    background, -1 ignored); returns the loss summed over all valid anchors and classes.
    """

    background_logit = False

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        self.alpha = alpha
        self.gamma = gamma

    def __call__(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        num_classes = logits.shape[-1]
        valid = gt_labels >= 0
        # One extra column receives the background label and is dropped: background rows
        # become all zeros, the paper's target for a sigmoid head.
        targets = F.one_hot(gt_labels.clamp(min=0), num_classes + 1)[..., :num_classes]
        loss = sigmoid_focal_loss(logits, targets, self.alpha, self.gamma)
        return (loss * valid.unsqueeze(-1)).sum()

    def scores(self, logits: Tensor) -> Tensor:
        """``[..., K]`` logits -> ``[..., K]`` class probabilities."""
        return logits.sigmoid()


class SoftmaxFocalLoss:
    """Classification loss for a head with K + 1 softmax outputs (background last)."""

    background_logit = True

    def __init__(self, alpha: Optional[float] = None, gamma: float = 2.0) -> None:
        self.alpha = alpha
        self.gamma = gamma

    def __call__(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        valid = gt_labels >= 0
        loss = softmax_focal_loss(logits, gt_labels.clamp(min=0), self.gamma, self.alpha)
        return (loss * valid).sum()

    def scores(self, logits: Tensor) -> Tensor:
        """``[..., K + 1]`` logits -> ``[..., K]`` object-class probabilities."""
        return logits.softmax(dim=-1)[..., :-1]


@REGISTRY.register("cls_loss", "sigmoid_focal")
def _build_sigmoid_focal(cfg) -> SigmoidFocalLoss:
    return SigmoidFocalLoss(alpha=cfg.alpha, gamma=cfg.gamma)


@REGISTRY.register("cls_loss", "softmax_focal")
def _build_softmax_focal(cfg) -> SoftmaxFocalLoss:
    # alpha < 0 means "no balancing" for both heads, as in torchvision's contract.
    return SoftmaxFocalLoss(alpha=None if cfg.alpha < 0 else cfg.alpha, gamma=cfg.gamma)
