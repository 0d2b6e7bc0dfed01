"""Box regression losses.

Each is called as ``loss(pred_deltas, anchors, gt_boxes, box_coder)`` with ``[..., 4]``
tensors (deltas in the box coder's parameterisation, anchors and matched ground truth xyxy
in pixels) and returns the loss per anchor, ``[...]``, in float32 (float64 for float64 input);
the model sums it over the foreground anchors. Smooth L1 and L1 compare deltas; GIoU compares
decoded boxes.
"""
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..config import NOT_NEGATIVE, BoxLossConfig, param
from ..registry import REGISTRY
from ..structures import generalized_box_iou_pairwise
from .targets import at_least_float32


@dataclass
class SmoothL1Config(BoxLossConfig):
    """``loss.box`` of ``smooth_l1``: beta 0.1 (the paper's RetinaNet)."""

    beta: float = param(0.1, **NOT_NEGATIVE)


class SmoothL1Loss:
    def __init__(self, beta: float = SmoothL1Config.beta) -> None:
        self.beta = beta

    def __call__(self, pred_deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, box_coder) -> Tensor:
        target = box_coder.encode(anchors, gt_boxes)
        loss = F.smooth_l1_loss(at_least_float32(pred_deltas), target, beta=self.beta, reduction="none")
        return loss.sum(-1)


class L1Loss:
    def __call__(self, pred_deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, box_coder) -> Tensor:
        target = box_coder.encode(anchors, gt_boxes)
        return F.l1_loss(at_least_float32(pred_deltas), target, reduction="none").sum(-1)


class GIoULoss:
    def __call__(self, pred_deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, box_coder) -> Tensor:
        pred_boxes = box_coder.decode(at_least_float32(pred_deltas), anchors)
        return 1.0 - generalized_box_iou_pairwise(pred_boxes, gt_boxes)


@REGISTRY.register("box_loss", "smooth_l1", config=SmoothL1Config)
def _build_smooth_l1(cfg: SmoothL1Config) -> SmoothL1Loss:
    return SmoothL1Loss(beta=cfg.beta)


@REGISTRY.register("box_loss", "l1", config=BoxLossConfig)
def _build_l1(cfg: BoxLossConfig) -> L1Loss:
    return L1Loss()


@REGISTRY.register("box_loss", "giou", config=BoxLossConfig)
def _build_giou(cfg: BoxLossConfig) -> GIoULoss:
    return GIoULoss()
