"""Inference: score threshold, top-k per level, decode, class-aware NMS, for a whole batch.

It computes what torchvision's RetinaNet computes with a loop per image and per level, written
out plainly in ``tests/modeling/test_postprocess.py::_reference`` and tested equal to it; the
comments marked "reference step N" say which of its steps each part does:

1. per (image, level), the (anchor, class) pairs scoring over ``score_thresh``;
2. of those, the ``topk_candidates`` best (a tie at the k-th place as ``topk`` breaks it, as in
   torchvision);
3. their boxes decoded from the anchors and clipped to the image;
4. NMS within each class of the image (of two tied boxes, the candidate with the lower (anchor,
   class) index is kept, and comes first);
5. the ``max_detections_per_image`` best, by decreasing score.

The same function runs eagerly and under the ONNX tracer (``detector export``, one image).
Eagerly, the top-k of every (image, level) and the NMS per (image, class) find their groups
on the host; traced, those steps take their ONNX-friendly form (a top-k per level with a
traced count, torchvision's ``batched_nms``), in the branches marked ``is_tracing``.
"""
import itertools
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from .box_coder import BoxCoder

# Elements of logits scored per block on the CPU when scores are not elementwise (softmax).
# On a GPU (and in an exported graph) the batch is one block.
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
    # reference step 1, for every image and level at once: candidates in (image, anchor, class) order
    rows, flat, scores, num_classes = _candidates(logits, scores_fn, score_thresh, min_logit)
    # reference step 2: the runs of one (image, level) are contiguous in that order
    keep = _top_k_per_level(rows, flat, scores, num_classes, num_images, num_anchors, level_sizes,
                            topk_candidates)
    flat, scores = flat[keep], scores[keep]
    labels = flat % num_classes
    row = rows[torch.div(flat, num_classes, rounding_mode="floor")]
    image_idx, anchor_idx = torch.div(row, num_anchors, rounding_mode="floor"), row % num_anchors

    # reference step 3
    boxes = box_coder.decode(deltas[image_idx, anchor_idx].float(), anchors[anchor_idx])
    boxes = torch.minimum(boxes.clamp(min=0), _limits(image_sizes, boxes)[image_idx])

    # reference step 4: NMS within each (image, class) group, for the whole batch at once.
    kept = _batched_nms(boxes, scores, image_idx * num_classes + labels, nms_thresh)
    if torch.jit.is_tracing():  # one image
        kept = kept[:max_detections_per_image]
        return [{"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}]
    # reference step 5. kept is sorted by score; a stable sort by image keeps that order within
    # each image, and the rank in the image cuts at max_detections_per_image.
    kept = kept[torch.sort(image_idx[kept], stable=True).indices]
    kept = kept[_rank_in_group(image_idx[kept], num_images) < max_detections_per_image]
    per_image = torch.bincount(image_idx[kept], minlength=num_images).tolist()
    return [
        {"boxes": b, "scores": s, "labels": c}
        for b, s, c in zip(boxes[kept].split(per_image), scores[kept].split(per_image),
                           labels[kept].split(per_image))
    ]


def _candidates(logits: Tensor, scores_fn, score_thresh: float, min_logit: Optional[float]):
    """Every (image, anchor, class) scoring over ``score_thresh``, in four parts: ``rows``
    ``[A']``, the scored anchors as ``image * R + anchor`` (sorted); ``flat`` ``[P]``, the
    candidates as ``row position * K + class`` (sorted); their ``[P]`` scores; and K."""
    num_images, num_anchors = logits.shape[:2]
    all_rows = logits.reshape(num_images * num_anchors, -1)
    if min_logit is not None:
        # One cheap pass finds the anchors that can have a class over the threshold (a small
        # margin covers rounding); only those are scored and thresholded exactly.
        rows = torch.nonzero(logits.amax(-1).flatten() >= min_logit - 1e-3).squeeze(1)
        scores = scores_fn(all_rows[rows])  # [A', K]
        flat = torch.nonzero(scores.flatten() > score_thresh).squeeze(1)
        return rows, flat, scores.flatten()[flat], scores.shape[1]
    # Any other scores: block of anchors by block, so that the scores stay in cache and no
    # full-size score tensor is allocated.
    blocks = not (logits.is_cuda or torch.jit.is_tracing())
    step = max(1, _BLOCK_ELEMENTS // logits.shape[2]) if blocks else all_rows.shape[0]
    flats, found = [], []
    for start in range(0, all_rows.shape[0], step) if blocks else [0]:
        scores = scores_fn(all_rows[start:start + step])  # [r, K]
        num_classes = scores.shape[1]
        flat = torch.nonzero(scores.flatten() > score_thresh).squeeze(1)
        flats.append(start * num_classes + flat)
        found.append(scores.flatten()[flat])
    rows = torch.arange(all_rows.shape[0], device=logits.device)
    return rows, torch.cat(flats), torch.cat(found), num_classes


def _top_k_per_level(rows: Tensor, flat: Tensor, scores: Tensor, num_classes, num_images, num_anchors,
                     level_sizes: List[int], k: int) -> Tensor:
    """Positions in ``flat`` of the ``k`` best candidates of every (image, level)."""
    level_starts = list(itertools.accumulate(level_sizes, initial=0))
    if torch.jit.is_tracing():  # one image: a top-k per level, its count a traced min(count, k)
        anchor = rows[torch.div(flat, num_classes, rounding_mode="floor")]
        keep = []
        for start, end in zip(level_starts[:-1], level_starts[1:]):
            members = torch.nonzero((anchor >= start) & (anchor < end)).squeeze(1)
            count = torch.clamp(members.shape[0], max=k)  # shape[0]: a traced 0-d tensor
            keep.append(members[scores[members].topk(count).indices])
        return torch.cat(keep)
    # Rows and candidates are sorted, so each (image, level) group is one contiguous run, found
    # by binary search; only runs longer than k need a top-k.
    group_rows = torch.tensor([image * num_anchors + start for image in range(num_images)
                               for start in level_starts[:-1]] + [num_images * num_anchors], device=rows.device)
    bounds = torch.searchsorted(flat, torch.searchsorted(rows, group_rows) * num_classes).tolist()
    keep = []
    for first, last in zip(bounds[:-1], bounds[1:]):
        if last - first > k:
            keep.append(first + scores[first:last].topk(k).indices)
        elif last > first:
            keep.append(torch.arange(first, last, device=flat.device))
    # back in (image, anchor, class) order, which NMS's stable sort keeps among equal scores
    return torch.cat(keep).sort().values if keep else flat.new_zeros(0)


def _limits(image_sizes: List[Tuple[int, int]], like: Tensor) -> Tensor:
    """``[N, 4]`` (W, H, W, H) per image, the upper bounds of its boxes' coordinates."""
    if torch.jit.is_tracing():  # the sizes are traced tensors
        return torch.stack([torch.stack([w, h, w, h]) for h, w in image_sizes]).to(like.dtype)
    return torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=like.dtype, device=like.device)


def _rank_in_group(sorted_group: Tensor, num_groups: int) -> Tensor:
    """Position of each element within its group, for group ids sorted ascending."""
    counts = torch.bincount(sorted_group, minlength=num_groups)
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(sorted_group.numel(), device=sorted_group.device) - first[sorted_group]


def _batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """Indices kept by NMS within each group (image and class), by decreasing score: what
    torchvision's RetinaNet gets from one ``batched_nms`` call per image.

    Traced, torchvision's ``batched_nms`` (one ONNX NonMaxSuppression); on the CPU, one NMS per
    group (:func:`_nms_per_group`); on a GPU, one NMS over the whole batch with the groups
    shifted apart (:func:`_nms_with_offsets`).
    """
    if torch.jit.is_tracing():
        return batched_nms(boxes, scores, groups, iou_thresh)
    if boxes.device.type == "cpu":
        return _nms_per_group(boxes, scores, groups, iou_thresh)
    return _nms_with_offsets(boxes, scores, groups, iou_thresh)


def _nms_per_group(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """One NMS per group on its own slice, the groups found by one sort: for many groups,
    torchvision's CPU path scans every box once per group to find its members."""
    order = torch.sort(groups, stable=True).indices
    counts = torch.bincount(groups[order]).tolist() if groups.numel() else []
    kept = [members[nms(boxes[members], scores[members], iou_thresh)]
            for members in order.split(counts) if members.numel()]
    kept = torch.cat(kept) if kept else groups.new_zeros(0)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def _nms_with_offsets(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """One ``nms`` call for every group, each group's boxes shifted by ``group * (largest
    coordinate + 1)`` so that boxes of two groups never overlap: the work stays on the device.

    torchvision's ``batched_nms`` does this only below 100,000 numbers on a GPU (an evaluation
    batch of 8 images can hold 40,000 candidate boxes, 160,000 numbers); above, it loops over
    the groups with a host synchronisation each. Shifted in float64, so the coordinates stay
    exact (a float32 shift of a few hundred thousand pixels rounds them by up to 1/32 px);
    the IoU is then computed in float64 where the CPU path computes it in float32.
    """
    if boxes.numel() == 0:
        return groups.new_zeros(0)
    boxes = boxes.double()
    shifted = boxes + (groups.to(boxes.dtype) * (boxes.max() + 1))[:, None]
    return nms(shifted, scores.double(), iou_thresh)
