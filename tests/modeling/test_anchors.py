import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from detector.modeling.anchors import AnchorGenerator, cell_anchors


def test_cell_anchors_hand_computed():
    # size 32, ratio 1: 32x32 centred at 0; ratio 0.5 (h/w): w = 32/sqrt(.5) = 45.2548, h = 22.6274
    a = cell_anchors([32.0], [0.5, 1.0, 2.0])
    w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)
    expected = torch.tensor([
        [-w / 2, -h / 2, w / 2, h / 2],
        [-16.0, -16.0, 16.0, 16.0],
        [-h / 2, -w / 2, h / 2, w / 2],
    ])
    torch.testing.assert_close(a, expected)
    areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    torch.testing.assert_close(areas, torch.full((3,), 32.0 ** 2))
    torch.testing.assert_close(cell_anchors([32.0], [0.5], round_to_int=True),
                               torch.tensor([[-23.0, -11.0, 23.0, 11.0]]))


def test_grid_layout_level_then_cell_then_anchor():
    gen = AnchorGenerator([[8.0, 16.0], [32.0, 64.0]], aspect_ratios=[1.0], strides=[8, 16])
    anchors = gen((32, 32), [(2, 3), (1, 1)], torch.device("cpu"))
    assert anchors.shape == (2 * 3 * 2 + 1 * 1 * 2, 4)
    # level 0, cell (row 0, col 1): centre (8, 0); its two anchors of size 8 and 16
    torch.testing.assert_close(anchors[2], torch.tensor([4.0, -4.0, 12.0, 4.0]))
    torch.testing.assert_close(anchors[3], torch.tensor([0.0, -8.0, 16.0, 8.0]))
    # level 0, cell (row 1, col 0): centre (0, 8)
    torch.testing.assert_close(anchors[6], torch.tensor([-4.0, 4.0, 4.0, 12.0]))
    # level 1 starts after 12 anchors, centre (0, 0)
    torch.testing.assert_close(anchors[12], torch.tensor([-16.0, -16.0, 16.0, 16.0]))
    assert gen.level_sizes([(2, 3), (1, 1)]) == [12, 2]


def test_cached_per_shape():
    gen = AnchorGenerator([[32.0]] * 5)
    shapes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    a = gen((64, 64), shapes, torch.device("cpu"))
    assert gen((64, 64), shapes, torch.device("cpu")) is a
    assert gen((64, 64), [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)], torch.device("cpu")) is not a


def test_torchvision_conventions_match_torchvision():
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
    tv = TVAnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    ours = AnchorGenerator([list(s) for s in sizes], round_to_int=True, stride_mode="input_over_feature")
    image_size = (800, 1056)
    shapes = [(100, 132), (50, 66), (25, 33), (13, 17), (7, 9)]
    feats = [torch.zeros(1, 1, h, w) for h, w in shapes]
    ref = tv(ImageList(torch.zeros(1, 3, *image_size), [image_size]), feats)[0]
    torch.testing.assert_close(ours(image_size, shapes, torch.device("cpu")), ref, rtol=0, atol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride_mode"):
        AnchorGenerator([[32.0]] * 5, stride_mode="bogus")
    with pytest.raises(ValueError, match="size lists"):
        AnchorGenerator([[32.0]] * 4)
