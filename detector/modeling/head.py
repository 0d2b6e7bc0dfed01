"""The RetinaNet head: a classification subnet and a box subnet shared across levels."""
import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

from .norm import group_norm


def _subnet(channels: int, num_convs: int, norm: str) -> nn.ModuleList:
    """``num_convs`` blocks of 3x3 conv (+ GroupNorm) + ReLU. Each block is a Sequential whose
    first entry is the conv, as in torchvision's head, so weights map one to one."""
    blocks = []
    for _ in range(num_convs):
        layers = [nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none")]
        if norm == "gn":
            layers.append(group_norm(channels))
        layers.append(nn.ReLU(inplace=True))
        blocks.append(nn.Sequential(*layers))
    return nn.ModuleList(blocks)


class RetinaNetHead(nn.Module):
    """Per level: ``num_convs`` 3x3 convs then a 3x3 conv to A*C class logits (C = K, or K+1
    for a softmax head), and the same for A*4 box deltas. Convs start from N(0, 0.01); the
    class bias starts at -log((1 - pi) / pi) so that every anchor begins with foreground
    probability pi, which keeps the background's loss from swamping the first iterations."""

    def __init__(self, in_channels: int, num_anchors: int, num_logits: int, num_convs: int = 4,
                 norm: str = "none", prior_prob: float = 0.01) -> None:
        super().__init__()
        self.num_logits = num_logits
        self.cls_subnet = _subnet(in_channels, num_convs, norm)
        self.box_subnet = _subnet(in_channels, num_convs, norm)
        self.cls_score = nn.Conv2d(in_channels, num_anchors * num_logits, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """``[P3..P7]`` -> class logits ``[N, R, C]`` and box deltas ``[N, R, 4]``, where R is the
        total number of anchors, ordered level, then cell (row-major), then anchor."""
        logits, deltas = [], []
        for x in features:
            cls, box = x, x
            for block in self.cls_subnet:
                cls = block(cls)
            for block in self.box_subnet:
                box = block(box)
            logits.append(_flatten(self.cls_score(cls), self.num_logits))
            deltas.append(_flatten(self.bbox_pred(box), 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)


def _flatten(x: Tensor, channels: int) -> Tensor:
    """``[N, A*C, H, W]`` -> ``[N, H*W*A, C]``."""
    n, _, h, w = x.shape
    return x.view(n, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, channels)
