"""Anchor-to-ground-truth matching by IoU, for the whole batch at once."""
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from ..config import FRACTION, ComponentConfig, param
from ..errors import UserError
from ..registry import REGISTRY
from ..structures import box_iou

# What a match is besides a ground-truth index (0..G-1). -1 means ignored here as it does in the
# labels the losses take (0..K-1 class, K background, -1 ignored).
IGNORE = -1
BACKGROUND = -2


@dataclass
class IoUMatcherConfig(ComponentConfig):
    """``model.matcher`` of ``iou``: the paper's 0.5 / 0.4."""

    fg_iou_thresh: float = param(0.5, **FRACTION)
    bg_iou_thresh: float = param(0.4, **FRACTION)
    # Also match each ground-truth box to its best anchors when none reaches fg_iou_thresh
    # (detectron2 and torchvision do; the paper does not mention it).
    allow_low_quality_matches: bool = True

    def problem(self):
        if self.bg_iou_thresh > self.fg_iou_thresh:
            return "bg_iou_thresh", f"<= fg_iou_thresh ({self.fg_iou_thresh})", self.bg_iou_thresh
        return None


class Matcher:
    """IoU >= fg_iou_thresh: foreground; < bg_iou_thresh: background; in between: ignored.

    With ``allow_low_quality_matches`` each ground-truth box also claims the anchors with
    which it has its highest IoU (ties included), so that no box is left without an anchor
    (detectron2 and torchvision do this). A box whose best IoU is 0 claims nothing: without
    that guard, every anchor of the image would become its foreground.
    """

    def __init__(self, fg_iou_thresh: float = IoUMatcherConfig.fg_iou_thresh,
                 bg_iou_thresh: float = IoUMatcherConfig.bg_iou_thresh,
                 allow_low_quality_matches: bool = IoUMatcherConfig.allow_low_quality_matches) -> None:
        if bg_iou_thresh > fg_iou_thresh:
            raise UserError(f"matcher: bg_iou_thresh {bg_iou_thresh} > fg_iou_thresh {fg_iou_thresh}")
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh = bg_iou_thresh
        self.allow_low_quality_matches = allow_low_quality_matches

    def assign(self, anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, level_sizes: List[int],
               anchors_per_location: int = 1) -> Tensor:
        """``[R, 4]`` anchors, ``[N, G, 4]`` padded boxes and ``[N, G]`` validity -> ``[N, R]``
        matches, as :meth:`__call__` (the interface every matcher shares; ``level_sizes`` and
        ``anchors_per_location`` are for matchers that look at pyramid levels and locations)."""
        return self(box_iou(gt_boxes, anchors[None]), gt_valid)

    def __call__(self, iou: Tensor, gt_valid: Tensor) -> Tensor:
        """
        Args:
            iou: ``[N, G, A]`` IoU of each (padded) ground-truth box with each anchor.
            gt_valid: ``[N, G]`` bool, False for padding.
        Returns:
            ``[N, A]`` int64: the matched ground-truth index (0..G-1) for foreground anchors,
            ``BACKGROUND`` (-2) or ``IGNORE`` (-1).
        """
        n, g, a = iou.shape
        if g == 0:
            return torch.full((n, a), BACKGROUND, dtype=torch.int64, device=iou.device)
        iou = iou.masked_fill(~gt_valid[:, :, None], -1.0)
        best_iou, best_gt = iou.max(dim=1)  # [N, A]
        matches = torch.where(best_iou >= self.fg_iou_thresh, best_gt, IGNORE)
        matches = torch.where(best_iou < self.bg_iou_thresh, BACKGROUND, matches)
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=2, keepdim=True).values  # [N, G, 1]
            is_best = (iou == best_per_gt) & (best_per_gt > 0) & gt_valid[:, :, None]
            matches = torch.where(is_best.any(dim=1), best_gt, matches)
        return matches


@REGISTRY.register("matcher", "iou", config=IoUMatcherConfig)
def _build(cfg: IoUMatcherConfig) -> Matcher:
    return Matcher(cfg.fg_iou_thresh, cfg.bg_iou_thresh, cfg.allow_low_quality_matches)
