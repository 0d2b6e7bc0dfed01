"""GHM, the gradient harmonizing losses (Li, Liu and Wang, "Gradient Harmonized Single-stage
Detector", AAAI 2019): GHM-C for classification and GHM-R for the boxes, the paper's pair.

Both weigh each element by the inverse density of its gradient norm g. The valid elements are
counted in ``bins`` equal bins of g over [0, 1]; the gradient density of a bin is its count
times the number of non-empty bins n, and each element is weighted by the inverse:

    L = (1 / N) sum_i beta_i loss_i,   beta_i = N / GD(g_i) = N / (n * count(bin(g_i)))

with N the number of valid elements. With ``momentum`` > 0 the count of a bin is an exponential
moving average over iterations (from 0, so the first updates weigh 1 / (1 - momentum) more), as
in the paper's code and mmdetection's ``GHMC`` / ``GHMR``; the averages are part of the model's
state, saved in checkpoints. g and the weights carry no gradient. Each loss is normalised by
its own 1/N, not by the number of foreground anchors (``normalized``: the model does not divide
it again). Under DDP each process weighs its own elements and DDP averages the processes'
gradients, as mmdetection does.

GHM-C: for each (anchor, class) element, the cross-entropy, and g = |p - p*| (p = sigmoid(x),
p* the 0/1 target). The many easy negatives (g near 0) share one bin and their weight falls with
their number: GHM's answer to the imbalance the focal loss answers with (1 - p_t)^gamma.

GHM-R: for each coordinate of each foreground anchor, the authentic smooth L1 of d = delta -
target, ASL1 = sqrt(d^2 + mu^2) - mu, whose gradient norm is g = |d| / sqrt(d^2 + mu^2). The
paper's mu 0.02, 10 bins, momentum 0.7 and, in mmdetection's RetinaNet, loss weight 10.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AT_LEAST_ONE, NOT_NEGATIVE, BoxLossConfig, ComponentConfig, param
from ..registry import REGISTRY
from .targets import at_least_float32, element_targets


@dataclass
class GHMCConfig(ComponentConfig):
    """``loss.cls`` of ``ghm_c``: 30 bins and momentum 0.75, the paper's GHM-C and mmdetection's
    RetinaNet setting (10 bins is GHM-R's)."""

    bins: int = param(30, **AT_LEAST_ONE)
    momentum: float = param(0.75, ge=0.0, lt=1.0)  # of the moving bin counts; 0: this batch's counts


class GHMCLoss(nn.Module):
    """GHM-C: ``loss(logits [N, R, K], gt_labels [N, R])`` -> a scalar, already normalised."""

    background_logit = False
    normalized = True  # already divided by its element count: the model does not divide by the foreground count

    def __init__(self, bins: int = GHMCConfig.bins, momentum: float = GHMCConfig.momentum) -> None:
        super().__init__()
        self.bins = bins
        self.momentum = momentum
        self.register_buffer("accumulated", torch.zeros(bins))  # the moving bin counts
        # inner bin edges 1/bins .. (bins-1)/bins: g = 1 falls into the last bin
        self.register_buffer("edges", torch.arange(1, bins, dtype=torch.float64) / bins, persistent=False)

    def forward(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        """``[N, R, K]`` logits, ``[N, R]`` labels (-1 ignored) -> GHM-C, a scalar."""
        x = at_least_float32(logits)
        targets, valid = element_targets(x, gt_labels)
        g = (torch.sigmoid(x.detach()) - targets).abs()
        weight, total = self.density_weights(g, valid.expand_as(x).bool())
        return (F.binary_cross_entropy_with_logits(x, targets, reduction="none") * weight).sum() / total

    def density_weights(self, g: Tensor, valid: Tensor):
        """Each element's weight N / (n * count of its bin) (0 where not ``valid``) and N, for
        gradient norms ``g`` in [0, 1]; updates the moving counts when ``momentum`` > 0."""
        bin_index = torch.bucketize(g.double(), self.edges, right=True)  # in 0..bins-1
        bin_index = torch.where(valid, bin_index, self.bins)  # invalid elements: an extra bin, weight 0
        # Counted in integers: a float32 count stops at 2^24 (16,777,216; two COCO images at 800 x
        # 1333 with 80 classes hold 32 million elements). A fixed-size scatter, because a masked
        # index or bincount would wait for the GPU.
        ones = torch.ones(1, dtype=torch.int64, device=g.device).expand(bin_index.numel())
        counts = torch.zeros(self.bins + 1, dtype=torch.int64, device=g.device).scatter_add_(
            0, bin_index.flatten(), ones)[:self.bins]
        total = counts.sum().clamp(min=1).double()
        if self.momentum > 0:
            updated = self.momentum * self.accumulated.double() + (1 - self.momentum) * counts
            self.accumulated = torch.where(counts > 0, updated, self.accumulated.double()).to(self.accumulated.dtype)
            density = self.accumulated.double()
        else:
            density = counts.double()
        non_empty = (counts > 0).sum().clamp(min=1)
        weights = torch.where(counts > 0, total / density.clamp(min=1e-12), 0.0) / non_empty  # per bin, float64
        return torch.cat([weights, weights.new_zeros(1)]).to(g.dtype)[bin_index], total.to(g.dtype)


@REGISTRY.register("cls_loss", "ghm_c", config=GHMCConfig)
def _build(cfg: GHMCConfig) -> GHMCLoss:
    return GHMCLoss(cfg.bins, cfg.momentum)


@dataclass
class GHMRConfig(BoxLossConfig):
    """``loss.box`` of ``ghm_r``: the paper's mu 0.02, 10 bins, momentum 0.7, and mmdetection's
    loss weight 10 (its GHM RetinaNet)."""

    weight: float = param(10.0, **NOT_NEGATIVE)
    mu: float = param(0.02, gt=0.0)
    bins: int = param(10, **AT_LEAST_ONE)
    momentum: float = param(0.7, ge=0.0, lt=1.0)


class GHMRLoss(GHMCLoss):
    """GHM-R: ``loss(pred_deltas [N, R, 4], anchors, gt_boxes, box_coder, valid [N, R])`` -> a
    scalar over the coordinates of the ``valid`` (foreground) anchors, already normalised."""

    def __init__(self, mu: float = GHMRConfig.mu, bins: int = GHMRConfig.bins,
                 momentum: float = GHMRConfig.momentum) -> None:
        super().__init__(bins, momentum)
        self.mu = mu

    def forward(self, pred_deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, box_coder, valid: Tensor) -> Tensor:
        diff = at_least_float32(pred_deltas) - box_coder.encode(anchors, gt_boxes)
        root = torch.sqrt(diff * diff + self.mu * self.mu)
        g = (diff.detach() / root.detach()).abs()
        weight, total = self.density_weights(g, valid[..., None].expand_as(g))
        return ((root - self.mu) * weight).sum() / total


@REGISTRY.register("box_loss", "ghm_r", config=GHMRConfig)
def _build_ghm_r(cfg: GHMRConfig) -> GHMRLoss:
    return GHMRLoss(cfg.mu, cfg.bins, cfg.momentum)
