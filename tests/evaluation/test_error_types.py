"""Per-box error types against hotcoco's TIDE counts, and the confusion matrix by hand."""
import contextlib
import copy
import io

import numpy as np
import pytest
from hotcoco import COCO, COCOeval

from detector.evaluation.error_types import classify_detections, confusion_matrix

GT_BOXES = np.array([[10, 10, 50, 50], [100, 100, 150, 150], [60, 10, 90, 40], [150, 10, 190, 50]], float)
GT_LABELS = np.array([0, 1, 2, 0])
# one detection of each kind, by decreasing score
DETS = np.array([[10, 10, 50, 50],  # correct
                 [11, 11, 51, 51],  # duplicate of the first
                 [100, 100, 150, 150],  # class 2 on a class-1 box: classification
                 [60, 10, 72, 40],  # class 2, IoU 0.4 with its box: localization
                 [0, 150, 30, 190],  # on nothing: background
                 [150, 10, 163, 50]], float)  # class 1, IoU 0.33 with a class-0 box: both
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
LABELS = np.array([0, 0, 2, 2, 1, 1])


def _hotcoco_counts(images):
    """TIDE counts from hotcoco for [(gt boxes, gt labels, boxes, scores, labels)] per image."""
    gt = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": str(k)} for k in range(3)]}
    results = []
    for image_id, (gb, gl, db, ds, dl) in enumerate(images, 1):
        gt["images"].append({"id": image_id, "width": 400, "height": 400, "file_name": f"{image_id}.png"})
        for b, c in zip(gb, gl):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                      "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": 0})
        results += [{"image_id": image_id, "category_id": int(c) + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                     "score": float(s)} for b, s, c in zip(db, ds, dl)]
    coco = COCO(copy.deepcopy(gt))
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        return evaluator.tide_errors(pos_thr=0.5, bg_thr=0.1)["counts"]


def _ours(images):
    names = {"classification": "Cls", "localization": "Loc", "both": "Both", "duplicate": "Dupe",
             "background": "Bkg"}
    counts = dict.fromkeys(list(names.values()) + ["Miss"], 0)
    for gb, gl, db, ds, dl in images:
        types, _, missed = classify_detections(gb, gl, db, ds, dl)
        for t in types:
            if t in names:
                counts[names[t]] += 1
        counts["Miss"] += int(missed.sum())
    return counts


def test_one_of_each_kind_by_hand_and_as_hotcoco_counts_them():
    types, related, missed = classify_detections(GT_BOXES, GT_LABELS, DETS, SCORES, LABELS)
    assert types == ["correct", "duplicate", "classification", "localization", "background", "both"]
    assert related.tolist() == [0, 0, 1, 2, -1, 3]
    # box 3 only has a "both" error on it: missed; boxes 1 and 2 are explained by their errors
    assert missed.tolist() == [False, False, False, True]
    images = [(GT_BOXES, GT_LABELS, DETS, SCORES, LABELS)]
    assert _ours(images) == _hotcoco_counts(images) == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 1, "Miss": 1}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_images_give_hotcocos_counts(seed):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(60):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (g, 2))
        gb = np.concatenate([xy, xy + rng.uniform(20, 80, (g, 2))], 1)
        gl = rng.integers(0, 3, g)
        boxes = []
        d = int(rng.integers(0, 10))
        for _ in range(d):
            if g and rng.random() < 0.7:  # near a box, at one of three distances
                b = gb[rng.integers(0, g)] + rng.normal(0, rng.choice([2, 8, 20]), 4)
            else:
                corner = rng.uniform(0, 330, 2)
                b = np.concatenate([corner, corner + rng.uniform(10, 60, 2)])
            b[2:] = np.maximum(b[2:], b[:2] + 2)
            boxes.append(b)
        images.append((gb, gl, np.array(boxes).reshape(-1, 4), rng.random(d), rng.integers(0, 3, d)))
    ours = _ours(images)
    assert ours == _hotcoco_counts(images)
    assert min(ours.values()) >= 2  # every kind occurs: the comparison is not between zeros


def test_confusion_matrix_by_hand():
    # image 1: the six detections above (score >= 0.3 all); image 2: one box, no detection
    detections = [{"boxes": DETS, "scores": SCORES, "labels": LABELS},
                  {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}]
    gt = [(GT_BOXES, GT_LABELS), (np.array([[0, 0, 10, 10.0]]), np.array([2]))]
    m = confusion_matrix(gt, detections, num_classes=3, score_thresh=0.3, iou_thresh=0.5)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # the correct detection (its duplicate finds no free box: a false positive)
    expected[1, 2] = 1  # the class-1 box detected as class 2
    expected[2, 3] = 2  # class-2 boxes missed: image 1's (IoU 0.4 only) and image 2's
    expected[0, 3] = 1  # the class-0 box with only a poor, wrong-class detection
    expected[3, 0] = 1  # the duplicate
    expected[3, 2] = 1  # the poorly placed class-2 detection
    expected[3, 1] = 2  # the background and the "both" detections
    assert m.tolist() == expected.tolist()
    assert confusion_matrix(gt, detections, 3, score_thresh=0.95).sum(axis=0)[3] == 5  # nothing kept: all missed
