"""Inference: score threshold, top-k per level, decode, class-aware NMS, for a whole batch."""
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from .box_coder import BoxCoder

# Elements of logits scored per block on the CPU when scores are not elementwise (softmax).
# On a GPU the batch is one block.
_BLOCK_ELEMENTS = 1 << 18


def postprocess_detections(
    logits: Tensor,
    scores_fn: Callable[[Tensor], Tensor],
    deltas: Tensor,
    anchors: Tensor,
    level_sizes: List[int],
    image_sizes: List[Tuple[int, int]],
    box_coder: BoxCoder,
    score_thresh: float = 0.05,
    topk_candidates: int = 1000,
    nms_thresh: float = 0.5,
    max_detections_per_image: int = 100,
    min_logit: Optional[float] = None,
) -> List[Dict[str, Tensor]]:
    """
    Args:
        logits: ``[N, R, C]`` class logits for the R anchors of all levels.
        scores_fn: ``[n, r, C]`` logits -> ``[n, r, K]`` class probabilities, row by row
            (a sigmoid, or a softmax without its background column).
        deltas: ``[N, R, 4]`` predicted box deltas.
        anchors: ``[R, 4]`` xyxy in padded-input pixels.
        level_sizes: anchors per level (they sum to R).
        image_sizes: each image's (H, W) inside the padded batch; boxes are clipped to it.
        min_logit: for elementwise scores (a sigmoid), the logit a class needs to score over
            ``score_thresh``: then only anchors whose best logit reaches it are scored.
    Returns:
        per image ``{"boxes": [D, 4] xyxy, "scores": [D], "labels": [D] int64 in 0..K-1}``,
        sorted by decreasing score, D <= max_detections_per_image. As in torchvision's
        RetinaNet: (anchor, class) pairs over ``score_thresh``, the ``topk_candidates`` best
        of each level and image, NMS within each class and image.
    """
    num_images, num_anchors = logits.shape[:2]
    image_idx, anchor_idx, labels, scores = _candidates(logits, scores_fn, score_thresh, min_logit)

    # The top k of every (image, level) group. Candidates come ordered by image, then anchor,
    # so each group is one contiguous run; only runs longer than k need a top-k.
    level_ends = torch.tensor(level_sizes, device=logits.device).cumsum(0)
    group = image_idx * len(level_sizes) + torch.bucketize(anchor_idx, level_ends, right=True)
    counts = torch.bincount(group, minlength=num_images * len(level_sizes)).tolist()
    keep, start = [], 0
    for count in counts:
        if count > topk_candidates:
            keep.append(start + scores[start:start + count].topk(topk_candidates).indices)
        elif count:
            keep.append(torch.arange(start, start + count, device=logits.device))
        start += count
    keep = torch.cat(keep) if keep else group.new_zeros(0)
    image_idx, anchor_idx, labels, scores = image_idx[keep], anchor_idx[keep], labels[keep], scores[keep]

    boxes = box_coder.decode(deltas[image_idx, anchor_idx].float(), anchors[anchor_idx])
    limits = torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=boxes.dtype, device=boxes.device)
    boxes = torch.minimum(boxes.clamp(min=0), limits[image_idx])

    # One NMS call for the batch: boxes of different images or classes never suppress each other.
    num_classes = int(labels.max()) + 1 if labels.numel() else 1
    kept = _batched_nms(boxes, scores, image_idx * num_classes + labels, nms_thresh)
    # kept is sorted by score; a stable sort by image keeps that order within each image.
    kept = kept[torch.sort(image_idx[kept], stable=True).indices]
    kept = kept[_rank_in_group(image_idx[kept], num_images) < max_detections_per_image]
    per_image = torch.bincount(image_idx[kept], minlength=num_images).tolist()
    return [
        {"boxes": b, "scores": s, "labels": c}
        for b, s, c in zip(boxes[kept].split(per_image), scores[kept].split(per_image),
                           labels[kept].split(per_image))
    ]


def _candidates(logits: Tensor, scores_fn, score_thresh: float, min_logit: Optional[float]):
    """Every (image, anchor, class) scoring over ``score_thresh``: four ``[P]`` tensors
    (image index, anchor index, class, score), ordered by image, then anchor."""
    if min_logit is not None:
        # One cheap pass finds the few anchors that can have a class over the threshold (a
        # small margin covers rounding); only those are scored and thresholded exactly.
        image_idx, anchor_idx = torch.nonzero(logits.amax(-1) >= min_logit - 1e-3, as_tuple=True)
        scores = scores_fn(logits[image_idx, anchor_idx][None])[0]  # [A', K]
        row, labels = torch.nonzero(scores > score_thresh, as_tuple=True)
        return image_idx[row], anchor_idx[row], labels, scores[row, labels]
    # Any other scores: block of anchors by block, so that the scores stay in cache and no
    # full-size score tensor is allocated.
    num_images, num_anchors = logits.shape[:2]
    step = num_anchors if logits.is_cuda else max(1, _BLOCK_ELEMENTS // logits.shape[2])
    found = []
    for image in range(num_images):
        for start in range(0, num_anchors, step):
            scores = scores_fn(logits[image, start:start + step])  # [r, K]
            anchor_idx, labels = torch.nonzero(scores > score_thresh, as_tuple=True)
            found.append((torch.full_like(anchor_idx, image), anchor_idx + start, labels,
                          scores[anchor_idx, labels]))
    return [torch.cat(parts) for parts in zip(*found)]


def _rank_in_group(sorted_group: Tensor, num_groups: int) -> Tensor:
    """Position of each element within its group, for group ids sorted ascending."""
    counts = torch.bincount(sorted_group, minlength=num_groups)
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(sorted_group.numel(), device=sorted_group.device) - first[sorted_group]


def _batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """Indices kept by NMS within each group, by decreasing score (torchvision's batched_nms).

    On the CPU, one NMS per group on its own slice, the groups found by one sort: for many
    groups, torchvision's CPU path scans every box once per group to find its members.
    """
    if boxes.is_cuda:
        return batched_nms(boxes, scores, groups, iou_thresh)
    order = torch.sort(groups, stable=True).indices
    counts = torch.bincount(groups[order]).tolist() if groups.numel() else []
    kept = [members[nms(boxes[members], scores[members], iou_thresh)]
            for members in order.split(counts) if members.numel()]
    kept = torch.cat(kept) if kept else groups.new_zeros(0)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]
