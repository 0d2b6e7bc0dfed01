"""Which detections are right and which are errors, box by box, as TIDE names them (Bolya
et al., 2020), and the confusion matrix of classes and background.

hotcoco's TIDE analysis in every evaluation gives the AP each kind of error costs; this module
says which boxes they are, for drawing them (``detector visualize --predictions``) and for the
confusion matrix. At IoU ``fg`` (0.5) and background threshold ``bg`` (0.1), detections in
order of decreasing score are, in TIDE's order of precedence:

- ``correct``: IoU >= fg with a ground-truth box of its class that no higher-scoring correct
  detection took;
- ``localization``: its best IoU with a box of its class is in [bg, fg);
- ``classification``: its best IoU with a box of another class is >= fg;
- ``duplicate``: IoU >= fg with a box of its class that a higher-scoring detection took;
- ``both``: IoU >= bg with some box, none of the above;
- ``background``: IoU < bg with every box;

and a ground-truth box is ``missed`` when no detection is correct for it and none is a
classification or localization error on it (TIDE's definition; hotcoco's counts agree, as a
test checks).
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..structures import box_iou

DETECTION_TYPES = ("correct", "classification", "localization", "both", "duplicate", "background")
ERROR_TYPES = DETECTION_TYPES[1:] + ("missed",)


def classify_detections(gt_boxes: np.ndarray, gt_labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                        labels: np.ndarray, fg: float = 0.5,
                        bg: float = 0.1) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """One image: the type of each detection (``[D]`` names from :data:`DETECTION_TYPES`),
    the ground-truth box each one's type refers to (``[D]`` index, -1 for background), and
    whether each ground-truth box was missed (``[G]`` bool). Boxes are ``[*, 4]`` xyxy."""
    num_det, num_gt = len(boxes), len(gt_boxes)
    iou = (box_iou(torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                   torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)).numpy()
           if num_det and num_gt else np.zeros((num_det, num_gt)))
    taken = np.zeros(num_gt, dtype=bool)
    types, related = ["background"] * num_det, np.full(num_det, -1, dtype=np.int64)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        same = np.asarray(gt_labels) == labels[d]
        free = same & ~taken & (iou[d] >= fg)
        if free.any():
            types[d], related[d] = "correct", int(np.argmax(np.where(free, iou[d], -1.0)))
            taken[related[d]] = True
            continue
        if not num_gt:
            continue
        # as TIDE: each test looks at the single best-overlapping box of its kind
        best_same = int(np.argmax(np.where(same, iou[d], -1.0)))
        best_other = int(np.argmax(np.where(~same, iou[d], -1.0)))
        best_taken = int(np.argmax(np.where(same & taken, iou[d], -1.0)))
        if same[best_same] and bg <= iou[d, best_same] < fg:
            types[d], related[d] = "localization", best_same
        elif not same[best_other] and iou[d, best_other] >= fg:
            types[d], related[d] = "classification", best_other
        elif taken[best_taken] and same[best_taken] and iou[d, best_taken] >= fg:
            types[d], related[d] = "duplicate", best_taken
        elif iou[d].max() >= bg:
            types[d], related[d] = "both", int(np.argmax(iou[d]))
    explained = np.zeros(num_gt, dtype=bool)  # TIDE: a box found with the wrong class or a poor box is not missed
    explained[[g for t, g in zip(types, related) if t in ("classification", "localization")]] = True
    return types, related, ~taken & ~explained


def confusion_matrix(gt: Sequence[Tuple[np.ndarray, np.ndarray]], detections: Sequence[Dict[str, np.ndarray]],
                     num_classes: int, score_thresh: float = 0.3, iou_thresh: float = 0.5) -> np.ndarray:
    """``[K + 1, K + 1]`` counts: rows the ground-truth class, columns the detected class, the
    last row and column background. Per image, detections scoring at least ``score_thresh``
    and ground-truth boxes are paired one to one, greedily by IoU (>= ``iou_thresh``),
    whatever their classes; an unpaired box counts as (its class, background), an unpaired
    detection as (background, its class)."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for (gt_boxes, gt_labels), det in zip(gt, detections):
        keep = det["scores"] >= score_thresh
        boxes, labels = det["boxes"][keep], det["labels"][keep]
        iou = (box_iou(torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                       torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)).numpy()
               if len(boxes) and len(gt_boxes) else np.zeros((len(boxes), len(gt_boxes))))
        free_det, free_gt = np.ones(len(boxes), bool), np.ones(len(gt_boxes), bool)
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            d, g = divmod(int(flat), len(gt_boxes))
            if iou[d, g] < iou_thresh:
                break
            if free_det[d] and free_gt[g]:
                matrix[gt_labels[g], labels[d]] += 1
                free_det[d] = free_gt[g] = False
        np.add.at(matrix, (np.asarray(gt_labels)[free_gt], num_classes), 1)
        np.add.at(matrix, (num_classes, labels[free_det]), 1)
    return matrix
