"""Map torchvision's ``retinanet_resnet50_fpn`` state dict onto this package's RetinaNet.

Both the current layout (``head.*.conv.{i}.0.weight``) and the one of torchvision's
published COCO weights (``head.*.conv.{2i}.weight``) are understood. The result loads into
a model built from ``configs/retinanet/retinanet_r50_fpn_torchvision.yaml``.
"""
import re
from typing import Dict

import torch
from torch import Tensor

from ..errors import UserError

_RULES = [
    (r"^backbone\.body\.(.*)$", r"backbone.\1"),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.(weight|bias)$", r"fpn.lateral_convs.\1.\2"),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(weight|bias)$", r"fpn.lateral_convs.\1.\2"),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.(weight|bias)$", r"fpn.output_convs.\1.\2"),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(weight|bias)$", r"fpn.output_convs.\1.\2"),
    (r"^backbone\.fpn\.extra_blocks\.(p6|p7)\.(weight|bias)$", r"fpn.\1.\2"),
    (r"^head\.classification_head\.conv\.(\d+)\.(\d+)\.(.*)$", r"head.cls_subnet.\1.\2.\3"),
    (r"^head\.regression_head\.conv\.(\d+)\.(\d+)\.(.*)$", r"head.box_subnet.\1.\2.\3"),
    (r"^head\.classification_head\.cls_logits\.(weight|bias)$", r"head.cls_score.\1"),
    (r"^head\.regression_head\.bbox_reg\.(weight|bias)$", r"head.bbox_pred.\1"),
]
# torchvision < 0.13 layout: conv.0, conv.2, ... are the convs of a flat Sequential with ReLUs.
_OLD_HEAD = re.compile(r"^head\.(classification|regression)_head\.conv\.(\d+)\.(weight|bias)$")


def convert_torchvision_retinanet(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """torchvision RetinaNet state dict -> this package's state dict (same tensors)."""
    converted = {}
    for key, value in state.items():
        old = _OLD_HEAD.match(key)
        if old:
            kind, index, param = old.groups()
            key = f"head.{kind}_head.conv.{int(index) // 2}.0.{param}"
        for pattern, replacement in _RULES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                converted[new_key] = value
                break
        else:
            raise UserError(f"torchvision RetinaNet key '{key}' has no counterpart in this package")
    converted["fg_normalizer"] = torch.tensor(100.0)  # our loss-normaliser EMA, at its start value
    return converted
