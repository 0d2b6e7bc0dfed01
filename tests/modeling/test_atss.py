"""ATSS on hand-built anchors: the candidates per level, the mean + std threshold, the
centre-inside rule, one box per anchor, and padding."""
import statistics

import torch

from detector.modeling.atss import ATSSMatcher
from detector.modeling.matcher import BACKGROUND

# Level 0: four 10 x 10 anchors on a 2 x 2 grid; level 1: two 20 x 20 anchors.
ANCHORS = torch.tensor([[0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20],
                        [0, 0, 20, 20], [20, 0, 40, 20]], dtype=torch.float32)
LEVELS = [4, 2]


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_one_box_by_hand():
    box = [0.0, 0.0, 12.0, 11.0]  # centre (6, 5.5): nearest level-0 anchors 0 (1.1 px) and 1 (9.0 px)
    candidates = [0, 1, 4, 5]  # top 2 of level 0, both of level 1
    ious = [_iou(ANCHORS[i].tolist(), box) for i in candidates]
    threshold = statistics.mean(ious) + statistics.stdev(ious)  # 0.296 + 0.338
    expected = [0 if i in candidates and _iou(ANCHORS[i].tolist(), box) >= threshold else BACKGROUND
                for i in range(6)]
    assert expected == [0, BACKGROUND, BACKGROUND, BACKGROUND, BACKGROUND, BACKGROUND]
    got = ATSSMatcher(topk=2).assign(ANCHORS, torch.tensor([[box]]), torch.tensor([[True]]), LEVELS)
    assert got.tolist() == [expected]


def test_a_candidate_whose_centre_is_outside_the_box_is_not_positive():
    # a thin box beside anchor 4's centre (10, 10): high IoU with nothing, centre rule decides
    box = [0.0, 0.0, 9.0, 20.0]  # anchor 4 [0, 0, 20, 20] has IoU 0.45 but its centre x = 10 > 9
    got = ATSSMatcher(topk=4).assign(ANCHORS, torch.tensor([[box]]), torch.tensor([[True]]), LEVELS)
    assert got[0, 4] == BACKGROUND


def test_an_anchor_positive_for_two_boxes_goes_to_the_one_it_overlaps_most_and_padding_claims_nothing():
    # anchor 0 passes both boxes' thresholds (IoU 0.93 with box 0, 0.96 with box 1)
    boxes = torch.tensor([[[0.0, 0.0, 10.8, 10.0], [0.0, 0.0, 10.0, 10.4], [0, 0, 40, 20]]])
    assert _iou(ANCHORS[0].tolist(), boxes[0, 0].tolist()) < _iou(ANCHORS[0].tolist(), boxes[0, 1].tolist())
    for index in (0, 1):  # positive for each box alone
        alone = ATSSMatcher(topk=6).assign(ANCHORS, boxes[:, index:index + 1], torch.tensor([[True]]), LEVELS)
        assert alone[0, 0] == 0
    valid = torch.tensor([[True, True, False]])  # the third box is padding
    got = ATSSMatcher(topk=6).assign(ANCHORS, boxes, valid, LEVELS)[0].tolist()
    assert got[0] == 1 and 2 not in got


def test_images_without_boxes_are_all_background():
    got = ATSSMatcher().assign(ANCHORS, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool), LEVELS)
    assert got.tolist() == [[BACKGROUND] * 6] * 2
