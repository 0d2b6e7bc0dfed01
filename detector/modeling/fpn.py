"""Feature pyramid network: C3..C5 -> P3..P7 (the paper's section 4)."""
from typing import List

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

P6_SOURCES = ("c5", "p5")


class FPN(nn.Module):
    """Lateral 1x1 and output 3x3 convs on C3..C5, top-down nearest upsampling, and P6, P7 by
    stride-2 3x3 convs (P7 after a ReLU). P6 comes from C5 (the paper, detectron2) or from P5
    (torchvision's retinanet_resnet50_fpn)."""

    def __init__(self, in_channels: List[int], out_channels: int = 256, p6_from: str = "c5") -> None:
        super().__init__()
        if p6_from not in P6_SOURCES:
            raise UserError(f"model.fpn.p6_from must be one of {P6_SOURCES}, got '{p6_from}'")
        self.p6_from = p6_from
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        p6_in = in_channels[-1] if p6_from == "c5" else out_channels
        self.p6 = nn.Conv2d(p6_in, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, P4, P5, P6, P7]``, each ``[N, out_channels, H_l, W_l]``."""
        inner = self.lateral_convs[-1](features[-1])
        outputs = [self.output_convs[-1](inner)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral_convs[i](features[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.output_convs[i](inner))
        p6 = self.p6(features[-1] if self.p6_from == "c5" else outputs[-1])
        p7 = self.p7(F.relu(p6))
        return outputs + [p6, p7]
