import torch

from detector.modeling.matcher import BACKGROUND, IGNORE, Matcher


def test_thresholds_on_a_small_iou_matrix():
    # 2 ground-truth boxes x 5 anchors
    iou = torch.tensor([[[0.7, 0.45, 0.1, 0.0, 0.55],
                         [0.2, 0.3, 0.35, 0.0, 0.6]]])
    valid = torch.tensor([[True, True]])
    m = Matcher(0.5, 0.4, allow_low_quality_matches=False)(iou, valid)
    assert m.tolist() == [[0, IGNORE, BACKGROUND, BACKGROUND, 1]]


def test_low_quality_matches_give_every_box_its_best_anchor():
    # box 1's best IoU is 0.35 (anchor 2): below both thresholds, but it keeps that anchor.
    iou = torch.tensor([[[0.7, 0.45, 0.1, 0.0],
                         [0.2, 0.3, 0.35, 0.0]]])
    valid = torch.tensor([[True, True]])
    m = Matcher(0.5, 0.4, allow_low_quality_matches=True)(iou, valid)
    assert m.tolist() == [[0, IGNORE, 1, BACKGROUND]]


def test_padding_and_zero_overlap_claim_nothing():
    iou = torch.tensor([[[0.0, 0.0, 0.0], [0.9, 0.0, 0.0]],
                        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, False], [True, False]])  # second box of each image is padding
    m = Matcher()(iou, valid)
    assert m.tolist() == [[BACKGROUND] * 3, [BACKGROUND] * 3]


def test_no_ground_truth_at_all():
    m = Matcher()(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool))
    assert m.shape == (2, 4) and (m == BACKGROUND).all()
