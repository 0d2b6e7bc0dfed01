import torch
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import generalized_box_iou

from detector.structures import (
    box_area,
    box_iou,
    clip_boxes,
    generalized_box_iou_pairwise,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_xywh_round_trip():
    b = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    torch.testing.assert_close(xywh_to_xyxy(b), torch.tensor([[1.0, 2.0, 4.0, 6.0]]))
    torch.testing.assert_close(xyxy_to_xywh(xywh_to_xyxy(b)), b)


def test_iou_hand_computed_and_against_torchvision():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[50 / 150, 0.0, 1.0]]))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 2, generator=g) * 50
    boxes1 = torch.cat([x, x + torch.rand(7, 2, generator=g) * 30 + 1], 1)
    y = torch.rand(9, 2, generator=g) * 50
    boxes2 = torch.cat([y, y + torch.rand(9, 2, generator=g) * 30 + 1], 1)
    torch.testing.assert_close(box_iou(boxes1, boxes2), tv_box_iou(boxes1, boxes2))
    # batched over a leading dimension
    batched = box_iou(torch.stack([boxes1, boxes1.flip(0)]), boxes2[None].expand(2, -1, -1))
    torch.testing.assert_close(batched[1], tv_box_iou(boxes1.flip(0), boxes2))
    diag = generalized_box_iou_pairwise(boxes1, boxes2[:7])
    torch.testing.assert_close(diag, generalized_box_iou(boxes1, boxes2[:7]).diagonal(), rtol=1e-5, atol=1e-6)


def test_degenerate_boxes_have_zero_area_and_iou():
    degenerate = torch.tensor([[5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 3.0, 3.0]])
    torch.testing.assert_close(box_area(degenerate), torch.zeros(2))
    iou = box_iou(degenerate, degenerate)
    assert torch.isfinite(iou).all() and (iou == 0).all()


def test_clip():
    boxes = torch.tensor([[-5.0, -1.0, 120.0, 40.0]])
    torch.testing.assert_close(clip_boxes(boxes, 30, 100), torch.tensor([[0.0, 0.0, 100.0, 30.0]]))
