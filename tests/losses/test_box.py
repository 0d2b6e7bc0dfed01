import pytest
import torch
from torchvision.ops import generalized_box_iou_loss

from detector.losses import GIoULoss, L1Loss, SmoothL1Loss
from detector.modeling.box_coder import BoxCoder

ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0]])
GT = torch.tensor([[1.0, 2.0, 11.0, 13.0], [4.0, 5.0, 24.0, 17.0]])


def test_l1_and_smooth_l1_on_hand_computed_deltas():
    coder = BoxCoder()
    target = coder.encode(ANCHORS, GT)
    pred = target + torch.tensor([[0.05, -0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    l1 = L1Loss()(pred, ANCHORS, GT, coder)
    torch.testing.assert_close(l1, torch.tensor([0.25, 0.0]))
    smooth = SmoothL1Loss(beta=0.1)(pred, ANCHORS, GT, coder)
    # |d| < beta: 0.5 d^2 / beta; otherwise |d| - beta / 2
    torch.testing.assert_close(smooth, torch.tensor([0.5 * 0.05 ** 2 / 0.1 + (0.2 - 0.05), 0.0]))
    torch.testing.assert_close(SmoothL1Loss(beta=0.0)(pred, ANCHORS, GT, coder), l1)


def test_giou_on_decoded_boxes_matches_torchvision():
    coder = BoxCoder()
    pred = torch.tensor([[0.1, -0.1, 0.2, 0.0], [0.3, 0.1, -0.2, 0.1]])
    ours = GIoULoss()(pred, ANCHORS, GT, coder)
    ref = generalized_box_iou_loss(coder.decode(pred, ANCHORS), GT, reduction="none")
    torch.testing.assert_close(ours, ref)
    perfect = GIoULoss()(coder.encode(ANCHORS, GT), ANCHORS, GT, coder)
    assert perfect.abs().max().item() == pytest.approx(0.0, abs=1e-5)
