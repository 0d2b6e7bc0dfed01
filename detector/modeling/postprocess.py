"""Inference: decode, score threshold, top-k per level, class-aware NMS, for a whole batch."""
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from .box_coder import BoxCoder


def postprocess_detections(
    scores: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    level_sizes: List[int],
    image_sizes: List[Tuple[int, int]],
    box_coder: BoxCoder,
    score_thresh: float = 0.05,
    topk_candidates: int = 1000,
    nms_thresh: float = 0.5,
    max_detections_per_image: int = 100,
) -> List[Dict[str, Tensor]]:
    """
    Args:
        scores: ``[N, R, K]`` class probabilities for the R anchors of all levels.
        deltas: ``[N, R, 4]`` predicted box deltas.
        anchors: ``[R, 4]`` xyxy in padded-input pixels.
        level_sizes: anchors per level (they sum to R).
        image_sizes: each image's (H, W) inside the padded batch; boxes are clipped to it.
    Returns:
        per image ``{"boxes": [D, 4] xyxy, "scores": [D], "labels": [D] int64 in 0..K-1}``,
        sorted by decreasing score, D <= max_detections_per_image.
    """
    num_images, _, num_classes = scores.shape
    limits = torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=torch.float32,
                          device=scores.device)[:, None, :]  # [N, 1, 4]
    boxes_l, scores_l, labels_l = [], [], []
    start = 0
    for size in level_sizes:
        # The k best (anchor, class) pairs of this level; those under the threshold are
        # dropped below. Same set as thresholding first, without a data-dependent shape here.
        level_scores = scores[:, start:start + size].reshape(num_images, -1)  # [N, size*K]
        k = min(topk_candidates, level_scores.shape[1])
        top_scores, top_idx = level_scores.topk(k, dim=1)  # [N, k]
        anchor_idx = start + torch.div(top_idx, num_classes, rounding_mode="floor")
        level_deltas = deltas.gather(1, anchor_idx[..., None].expand(-1, -1, 4))
        level_boxes = box_coder.decode(level_deltas.float(), anchors[anchor_idx])  # [N, k, 4]
        boxes_l.append(torch.minimum(level_boxes.clamp(min=0), limits))
        scores_l.append(top_scores)
        labels_l.append(top_idx % num_classes)
        start += size
    boxes, top_scores, labels = torch.cat(boxes_l, 1), torch.cat(scores_l, 1), torch.cat(labels_l, 1)
    image_idx = torch.arange(num_images, device=scores.device)[:, None].expand_as(labels)

    keep = top_scores > score_thresh
    boxes, top_scores, labels, image_idx = boxes[keep], top_scores[keep], labels[keep], image_idx[keep]
    # One NMS call for the batch: boxes of different images or classes never suppress each other.
    kept = batched_nms(boxes, top_scores, image_idx * num_classes + labels, nms_thresh)
    # kept is sorted by score; a stable sort by image keeps that order within each image.
    kept = kept[torch.sort(image_idx[kept], stable=True).indices]
    counts = torch.bincount(image_idx[kept], minlength=num_images)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.numel(), device=kept.device) - first[image_idx[kept]]
    kept = kept[rank < max_detections_per_image]
    per_image = torch.bincount(image_idx[kept], minlength=num_images).tolist()
    return [
        {"boxes": b, "scores": s, "labels": c}
        for b, s, c in zip(boxes[kept].split(per_image), top_scores[kept].split(per_image),
                           labels[kept].split(per_image))
    ]
