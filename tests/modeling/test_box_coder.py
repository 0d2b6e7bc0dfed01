import math

import torch
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from detector.modeling.box_coder import BoxCoder


def test_encode_hand_computed():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    box = torch.tensor([[5.0, 0.0, 25.0, 20.0]])
    # centres (5, 10) -> (15, 10); sizes (10, 20) -> (20, 20)
    expected = torch.tensor([[10 / 10, 0.0, math.log(2.0), 0.0]])
    torch.testing.assert_close(BoxCoder().encode(anchor, box), expected)
    weighted = BoxCoder((10, 10, 5, 5)).encode(anchor, box)
    torch.testing.assert_close(weighted, expected * torch.tensor([10, 10, 5, 5]))


def test_round_trip_and_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    anchors = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    xy = torch.rand(50, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        deltas = coder.encode(anchors, boxes)
        torch.testing.assert_close(coder.decode(deltas, anchors), boxes, rtol=1e-5, atol=1e-4)
        tv = TVBoxCoder(weights)
        torch.testing.assert_close(deltas, tv.encode_single(boxes, anchors))
        torch.testing.assert_close(coder.decode(deltas, anchors), tv.decode_single(deltas, anchors))


def test_scale_clamp_keeps_decoding_finite():
    anchor = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    boxes = BoxCoder().decode(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), anchor)
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[0, 2] - boxes[0, 0], torch.tensor(1000.0))
