"""ATSS on hand-built anchors: the candidates per level (every anchor of the nearest
locations), the mean + sample std threshold, the centre-inside rule, one box per anchor, and
padding. Each rule has a case it decides: the same case under the rule changed gives another
answer (computed by hand beside it)."""
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


# Two anchors per location: a 10 x 10 square and a 20 x 10 wide one. Level 0: 4 locations 10 px
# apart along y = 5 (anchors 0..7, the location's two in a row); level 1: 2 locations 20 px apart
# along y = 10, 20 x 20 and 40 x 20 (anchors 8..11).
def _locations(stride, count, shapes):
    return [[stride * (i + 0.5) - w / 2, stride / 2 - h / 2, stride * (i + 0.5) + w / 2, stride / 2 + h / 2]
            for i in range(count) for w, h in shapes]


PAIRS = torch.tensor(_locations(10, 4, [(10, 10), (20, 10)]) + _locations(20, 2, [(20, 20), (40, 20)]))
PAIR_LEVELS = [8, 4]


def _by_hand(box, topk, per_location=2, sample_std=True, centre_rule=True):
    """The ATSS rule in plain Python on PAIRS: the positives for one box."""
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    candidates, start = [], 0
    for size in PAIR_LEVELS:
        level = range(start, start + size)
        by_distance = sorted(level, key=lambda i: (((PAIRS[i][0] + PAIRS[i][2]) / 2 - centre[0]) ** 2
                                                   + ((PAIRS[i][1] + PAIRS[i][3]) / 2 - centre[1]) ** 2, i))
        candidates += by_distance[:topk * per_location]
        start += size
    ious = [_iou(PAIRS[i].tolist(), box) for i in candidates]
    threshold = statistics.mean(ious) + (statistics.stdev(ious) if sample_std else statistics.pstdev(ious))
    positives = []
    for i, value in zip(candidates, ious):
        cx, cy = (PAIRS[i][0] + PAIRS[i][2]) / 2, (PAIRS[i][1] + PAIRS[i][3]) / 2
        inside = min(cx - box[0], cy - box[1], box[2] - cx, box[3] - cy) > 0.01
        if value >= threshold and (inside or not centre_rule):
            positives.append(i)
    return sorted(positives)


def _positives(box, topk):
    got = ATSSMatcher(topk=topk).assign(PAIRS, torch.tensor([[box]]), torch.tensor([[True]]), PAIR_LEVELS,
                                        anchors_per_location=2)[0]
    return torch.nonzero(got == 0).flatten().tolist()


def test_candidates_are_every_anchor_of_the_nearest_locations():
    # centre (11, 5): the nearest location of level 0 is (15, 5), with the square (anchor 2) and the
    # wide anchor 3 [5, 0, 25, 10] (IoU 0.68); level 1's nearest is (10, 10), anchors 8 and 9. The
    # authors' code takes all four; one candidate per level (the nearest anchor) keeps 2 and 8,
    # with no positive at all.
    box = [0.0, 0.0, 22.0, 10.0]
    assert _by_hand(box, topk=1) == [3]
    assert _by_hand(box, topk=1, per_location=1) == []  # the rule decides
    assert _positives(box, topk=1) == [3]


def test_the_threshold_takes_the_sample_standard_deviation():
    box = [0.0, 0.0, 18.0, 8.0]
    assert _by_hand(box, topk=2) == [1]
    assert _by_hand(box, topk=2, sample_std=False) == [0, 1]  # the population std would admit anchor 0
    assert _positives(box, topk=2) == [1]


def test_a_candidate_over_the_threshold_with_its_centre_outside_the_box_is_background():
    # anchor 8 [0, 0, 20, 20] has IoU 0.40 with the box, over the threshold, but its centre x = 10 > 8
    box = [0.0, 0.0, 8.0, 20.0]
    assert _by_hand(box, topk=2) == [0]
    assert _by_hand(box, topk=2, centre_rule=False) == [0, 8]
    assert _positives(box, topk=2) == [0]
