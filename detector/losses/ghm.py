"""GHM-C, the gradient harmonizing classification loss (Li, Liu and Wang, "Gradient Harmonized
Single-stage Detector", AAAI 2019).

For each (anchor, class) element the gradient norm of the cross-entropy with respect to its
logit is g = |p - p*| (p = sigmoid(x), p* the 0/1 target). The elements are counted in
``bins`` equal bins of g over [0, 1]; the gradient density of a bin is its count times the
number of non-empty bins n, and each element is weighted by the inverse:

    L = (1 / N) sum_i beta_i CE(p_i, p*_i),   beta_i = N / GD(g_i) = N / (n * count(bin(g_i)))

with N the number of valid elements. The many easy negatives (g near 0) share one bin and
their weight falls with their number, which is GHM's answer to the imbalance the focal loss
answers with (1 - p_t)^gamma. With ``momentum`` > 0 the count of a bin is an exponential
moving average over iterations (from 0, so the first updates weigh 1 / (1 - momentum) more), as
in the paper's code and mmdetection's ``GHMC``; the averages are part of the model's state,
saved in checkpoints. g and the weights carry no gradient.

The loss is normalised by its own 1/N, not by the number of foreground anchors
(``normalized``: the model does not divide it again). Under DDP each process weighs its own
elements and DDP averages the processes' gradients, as mmdetection does.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import REGISTRY
from .targets import at_least_float32, element_targets


class GHMCLoss(nn.Module):
    background_logit = False
    normalized = True  # already divided by its element count: the model does not divide by the foreground count

    def __init__(self, bins: int = 10, momentum: float = 0.75) -> None:
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
        valid = valid.expand_as(x).bool()
        g = (torch.sigmoid(x.detach()) - targets).abs()
        bin_index = torch.bucketize(g.double(), self.edges, right=True)  # [N, R, K] in 0..bins-1
        bin_index = torch.where(valid, bin_index, self.bins)  # ignored elements: an extra bin, weight 0
        # Counted in integers: a float32 count stops at 2^24 (16,777,216; two COCO images at 800 x
        # 1333 with 80 classes hold 32 million elements). A fixed-size scatter, because a masked
        # index or bincount would wait for the GPU.
        ones = torch.ones(1, dtype=torch.int64, device=x.device).expand(bin_index.numel())
        counts = torch.zeros(self.bins + 1, dtype=torch.int64, device=x.device).scatter_add_(
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
        weight = torch.cat([weights, weights.new_zeros(1)]).to(x.dtype)[bin_index]
        return (F.binary_cross_entropy_with_logits(x, targets, reduction="none") * weight).sum() / total.to(x.dtype)


@REGISTRY.register("cls_loss", "ghm_c")
def _build(cfg) -> GHMCLoss:
    return GHMCLoss(cfg.bins, cfg.momentum)
