import math

import pytest
import torch

from detector.modeling.head import RetinaNetHead


def test_prior_probability_bias_and_output_layout():
    head = RetinaNetHead(in_channels=32, num_anchors=9, num_logits=3, num_convs=2, norm="gn")
    bias = head.cls_score.bias
    torch.testing.assert_close(bias, torch.full_like(bias, -math.log(0.99 / 0.01)))
    assert torch.sigmoid(bias[0]).item() == pytest.approx(0.01)
    assert head.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.1)
    feats = [torch.randn(2, 32, 4, 6), torch.randn(2, 32, 2, 3)]
    logits, deltas = head(feats)
    assert logits.shape == (2, (24 + 6) * 9, 3)
    assert deltas.shape == (2, (24 + 6) * 9, 4)
    # entry (cell (0, 1), anchor 2, class 1) of level 0 comes from channel 2 * 3 + 1
    x = feats[0]
    for block in head.cls_subnet:
        x = block(x)
    raw = head.cls_score(x)
    torch.testing.assert_close(logits[:, (0 * 6 + 1) * 9 + 2, 1], raw[:, 2 * 3 + 1, 0, 1])
