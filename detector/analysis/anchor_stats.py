"""How imbalanced is my data? Anchors, positives, ignored and negatives per image, for the
configured input size, anchors and matcher.

The focal loss is a remedy for extreme foreground-background imbalance (COCO at 800 px: of
the order of 1:1000). These statistics name the regime a dataset is in, and show the boxes
the anchors serve badly: those that reach no anchor at ``fg_iou_thresh`` (kept only by the
low-quality matches) and those that get no anchor at all, by COCO size bucket.
"""
import dataclasses
import math
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..data import CocoDetection, build_dataset
from ..data.coco import AREA_RANGES, size_bucket
from ..modeling import PYRAMID_STRIDES, build_anchor_generator, build_matcher
from ..modeling.matcher import BACKGROUND, IGNORE, IoUMatcherConfig
from ..modeling.preprocess import padded_size, resized_size
from ..structures import box_iou

DEFAULT_MAX_IMAGES = 2000


def _summary(values: List[int]) -> Dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p95": float(np.percentile(a, 95))}


def anchor_statistics(cfg, split: str = "train", max_images: int = DEFAULT_MAX_IMAGES,
                      dataset: Optional[CocoDetection] = None) -> Dict[str, Any]:
    """Match every box of (up to ``max_images`` evenly spaced) images of ``split`` to the
    anchors the model would place on that image at test-time size (``input.min_size`` /
    ``max_size``, padded to ``input.size_divisible``), with the configured matcher.

    Returns per-image ``anchors``, ``positives``, ``ignored``, ``negatives`` (mean, median,
    95th percentile), ``negatives_per_positive`` over the whole sample (the imbalance,
    1:N), and the boxes by size bucket: ``boxes``, ``below_fg_thresh`` (best IoU under
    ``fg_iou_thresh``: matched only through the low-quality matches, when they are on) and
    ``no_anchor`` (no foreground anchor at all). ``dataset``: the split, when the caller
    has built it already (only its annotations are read).
    """
    dataset = dataset if dataset is not None else build_dataset(cfg, split, training=False)
    m = cfg.model
    generator, matcher = build_anchor_generator(cfg), build_matcher(cfg)
    # a matcher without a fixed threshold (ATSS) is measured against the paper's 0.5
    fg_iou_thresh = getattr(cfg.model.matcher, "fg_iou_thresh", IoUMatcherConfig.fg_iou_thresh)
    step = max(1, math.ceil(len(dataset) / max_images))
    counts: Dict[str, List[int]] = {"anchors": [], "positives": [], "ignored": [], "negatives": []}
    boxes_by = {k: dict.fromkeys(AREA_RANGES, 0) for k in ("boxes", "below_fg_thresh", "no_anchor")}
    for index in range(0, len(dataset), step):
        height, width = dataset.image_size(index)
        rh, rw = resized_size(height, width, cfg.input.min_size, cfg.input.max_size)  # the model's resize
        ph, pw = padded_size(rh, rw, cfg.input.size_divisible)
        # ResNet and the FPN halve sizes rounding up: level stride s has ceil(side / s) cells
        shapes = [(math.ceil(ph / s), math.ceil(pw / s)) for s in PYRAMID_STRIDES]
        anchors = generator((ph, pw), shapes, torch.device("cpu"))
        boxes = torch.as_tensor(dataset.annotations(index)[0])
        scaled = boxes * torch.tensor([rw / width, rh / height, rw / width, rh / height])
        iou = box_iou(scaled, anchors)  # [G, A]
        matches = matcher.assign(anchors, scaled[None], torch.ones(1, len(boxes), dtype=torch.bool),
                                 generator.level_sizes(shapes), generator.num_anchors)[0]
        counts["anchors"].append(len(anchors))
        counts["positives"].append(int((matches >= 0).sum()))
        counts["ignored"].append(int((matches == IGNORE).sum()))
        counts["negatives"].append(int((matches == BACKGROUND).sum()))
        if len(boxes):
            best = iou.max(dim=1).values
            claimed = torch.zeros(len(boxes), dtype=torch.bool)
            claimed[matches[matches >= 0].unique()] = True
            areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist()
            for area, best_iou, has_anchor in zip(areas, best.tolist(), claimed.tolist()):
                bucket = size_bucket(area)
                boxes_by["boxes"][bucket] += 1
                boxes_by["below_fg_thresh"][bucket] += best_iou < fg_iou_thresh
                boxes_by["no_anchor"][bucket] += not has_anchor
    positives, negatives = sum(counts["positives"]), sum(counts["negatives"])
    return {
        "split": split, "ann_file": dataset.ann_file, "images": len(counts["anchors"]),
        "images_in_split": len(dataset),
        "input": {"min_size": cfg.input.min_size, "max_size": cfg.input.max_size},
        "matcher": {**dataclasses.asdict(m.matcher), "fg_iou_thresh": fg_iou_thresh},
        **{k: _summary(v) for k, v in counts.items()},
        "negatives_per_positive": negatives / positives if positives else float("inf"),
        **boxes_by,
    }


def format_anchor_statistics(stats: Dict[str, Any]) -> str:
    """A few lines for ``check-data`` and the training log."""
    sample = (f"{stats['images']} images" if stats["images"] == stats["images_in_split"]
              else f"{stats['images']} of {stats['images_in_split']} images, evenly spaced")
    matcher = stats["matcher"]
    rule = (f"IoU {matcher['fg_iou_thresh']}/{matcher['bg_iou_thresh']}" if "bg_iou_thresh" in matcher
            else matcher["name"].upper())
    lines = [f"anchors at input {stats['input']['min_size']}/{stats['input']['max_size']} px, matcher "
             f"{rule} ({sample}), per image:",
             "               mean   median      p95"]
    for key in ("anchors", "positives", "ignored", "negatives"):
        s = stats[key]
        lines.append(f"  {key:<10} {s['mean']:8.1f} {s['median']:8.1f} {s['p95']:8.1f}")
    lines.append(f"  foreground:background = 1:{stats['negatives_per_positive']:.0f}")
    for key, text in (("below_fg_thresh", f"boxes with no anchor at IoU >= {stats['matcher']['fg_iou_thresh']}"),
                      ("no_anchor", "boxes with no foreground anchor at all")):
        per = ", ".join(f"{b} {stats[key][b]}/{stats['boxes'][b]}" for b in AREA_RANGES)
        lines.append(f"  {text}: {sum(stats[key].values())} ({per})")
    return "\n".join(lines)
