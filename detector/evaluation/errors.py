"""Which detections are right and which are errors, box by box, as TIDE names them (Bolya
et al., 2020), and the confusion matrix of classes and background.

hotcoco's TIDE analysis in every evaluation gives the AP each kind of error costs; this module
says which boxes they are, for drawing them (``detector visualize --predictions``) and for the
confusion matrix. At IoU ``fg`` (0.5) and background threshold ``bg`` (0.1), detections in
order of decreasing score are, in this order of precedence:

- ``correct``: IoU >= fg with a ground-truth box of its class that no higher-scoring correct
  detection took;
- ``duplicate``: IoU >= fg with a box of its class that a higher-scoring detection took;
- ``classification``: IoU >= fg with a box of another class;
- ``localization``: bg <= IoU < fg with a box of its class;
- ``both``: bg <= IoU < fg with a box of another class only;
- ``background``: IoU < bg with every box;

and a ground-truth box that no detection is correct for is ``missed``.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..structures import box_iou

DETECTION_TYPES = ("correct", "classification", "localization", "both", "duplicate", "background")
ERROR_TYPES = DETECTION_TYPES[1:] + ("missed",)


def classify_detections(gt_boxes: np.ndarray, gt_labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                        labels: np.ndarray, fg: float = 0.5, bg: float = 0.1) -> Tuple[List[str], np.ndarray]:
    """One image: the type of each detection (``[D]`` names from :data:`DETECTION_TYPES`) and
    whether each ground-truth box was missed (``[G]`` bool). Boxes are ``[*, 4]`` xyxy."""
    num_det, num_gt = len(boxes), len(gt_boxes)
    iou = (box_iou(torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                   torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)).numpy()
           if num_det and num_gt else np.zeros((num_det, num_gt)))
    taken = np.zeros(num_gt, dtype=bool)
    types = [""] * num_det
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        same = np.asarray(gt_labels) == labels[d]
        free = same & ~taken & (iou[d] >= fg)
        if free.any():
            taken[np.argmax(np.where(free, iou[d], -1.0))] = True
            types[d] = "correct"
        elif (same & (iou[d] >= fg)).any():
            types[d] = "duplicate"
        elif (iou[d] >= fg).any():
            types[d] = "classification"
        elif (same & (iou[d] >= bg)).any():
            types[d] = "localization"
        elif (iou[d] >= bg).any():
            types[d] = "both"
        else:
            types[d] = "background"
    return types, ~taken


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
