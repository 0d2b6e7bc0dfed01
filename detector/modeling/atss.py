"""ATSS: adaptive training sample selection (Zhang et al., "Bridging the Gap Between
Anchor-based and Anchor-free Detection", CVPR 2020), for the whole batch at once.

For each ground-truth box: on every pyramid level, the anchors of the ``topk`` locations
whose centres are nearest the box's centre are its candidates (``topk`` x anchors per location
anchors, as the authors' code takes them); their IoUs with the box give a threshold, mean +
sample standard deviation; a candidate is positive when its IoU reaches the threshold and its
centre lies inside the box. An anchor that is positive for several boxes goes to the one it
overlaps most. There is no ignored band: every other anchor is background.

The paper's RetinaNet comparison (+0.8 AP from the assignment alone) uses one anchor per
location (9 candidates per level); with 9 anchors per location this takes 81 per level, as the
authors' code does for several anchors per location, and the threshold picks the shapes that fit.
"""
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from ..config import AT_LEAST_ONE, ComponentConfig, param
from ..registry import REGISTRY
from ..structures import box_iou
from .matcher import BACKGROUND


@dataclass
class ATSSConfig(ComponentConfig):
    """``model.matcher`` of ``atss``: the 9 nearest locations per level (the paper's k)."""

    topk: int = param(9, **AT_LEAST_ONE)


class ATSSMatcher:
    def __init__(self, topk: int = ATSSConfig.topk) -> None:
        self.topk = topk

    def assign(self, anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, level_sizes: List[int],
               anchors_per_location: int = 1) -> Tensor:
        """
        Args:
            anchors: ``[R, 4]`` xyxy, ordered level by level (``level_sizes`` anchors each).
            gt_boxes: ``[N, G, 4]`` xyxy, padded; gt_valid ``[N, G]`` bool, False for padding.
            anchors_per_location: the anchors that share each location (9 in RetinaNet): a level
                gives ``topk`` x that many candidates.
        Returns:
            ``[N, R]`` int64: the matched ground-truth index for foreground anchors, else
            ``BACKGROUND`` (-2).
        """
        n, g = gt_valid.shape
        if g == 0:
            return torch.full((n, anchors.shape[0]), BACKGROUND, dtype=torch.int64, device=anchors.device)
        anchor_centres = (anchors[:, :2] + anchors[:, 2:]) / 2  # [R, 2]
        box_centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [N, G, 2]
        distance = torch.cdist(box_centres.reshape(n * g, 2), anchor_centres).reshape(n, g, -1)  # [N, G, R]
        candidates, start = [], 0
        for size in level_sizes:
            k = min(self.topk * anchors_per_location, size)
            nearest = distance[..., start:start + size].topk(k, dim=-1, largest=False).indices
            candidates.append(nearest + start)
            start += size
        candidates = torch.cat(candidates, dim=-1)  # [N, G, C]
        iou = box_iou(gt_boxes, anchors[None])  # [N, G, R]
        candidate_iou = iou.gather(-1, candidates)
        # the sample standard deviation (n - 1), as torch.std gives it to the authors' code
        threshold = candidate_iou.mean(-1, keepdim=True) + candidate_iou.std(-1, correction=1, keepdim=True)
        centre = anchor_centres[candidates]  # [N, G, C, 2]
        inside = (((centre - gt_boxes[..., None, :2]).amin(-1) > 0.01)
                  & ((gt_boxes[..., None, 2:] - centre).amin(-1) > 0.01))
        positive = (candidate_iou >= threshold) & inside & gt_valid[..., None]
        # IoU where the anchor is a positive candidate of the box, -1 elsewhere; each anchor goes
        # to its best box among those it is positive for.
        claims = torch.full_like(iou, -1.0).scatter_(-1, candidates, torch.where(positive, candidate_iou, -1.0))
        best, matched = claims.max(dim=1)  # [N, R]
        return torch.where(best >= 0, matched, BACKGROUND)


@REGISTRY.register("matcher", "atss", config=ATSSConfig)
def _build(cfg: ATSSConfig) -> ATSSMatcher:
    return ATSSMatcher(cfg.topk)
