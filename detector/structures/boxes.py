"""Box utilities. Boxes are ``[..., 4]`` tensors in xyxy absolute pixels unless a name says
otherwise; COCO's xywh appears only at the json edges."""
import torch
from torch import Tensor


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x, y, w, h) -> (x1, y1, x2, y2)."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x1, y1, x2, y2) -> (x, y, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` -> ``[...]``; degenerate boxes have area 0, never negative."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def clip_boxes(boxes: Tensor, height, width) -> Tensor:
    """Clip ``[..., 4]`` boxes to an image of ``height`` x ``width`` pixels."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], dim=-1
    )


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU, batched over leading dimensions.

    Args:
        boxes1: ``[..., N, 4]``; boxes2: ``[..., M, 4]`` (same leading dimensions).
    Returns:
        ``[..., N, M]``. A pair whose union is empty has IoU 0.
    """
    area1 = box_area(boxes1)[..., :, None]
    area2 = box_area(boxes2)[..., None, :]
    # One coordinate at a time on contiguous [..., N, M] planes: the broadcast over
    # [..., N, M, 2] runs several times slower on the CPU for the anchors' large M.
    a = [c.contiguous()[..., :, None] for c in boxes1.unbind(-1)]
    b = [c.contiguous()[..., None, :] for c in boxes2.unbind(-1)]
    inter = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp_(min=0)
    inter *= (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp_(min=0)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def box_iou_aligned(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matching pairs: ``[..., 4]`` and ``[..., 4]`` -> ``[...]`` (0 for an empty union)."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def generalized_box_iou_pairwise(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """GIoU of matching pairs: ``[..., 4]`` and ``[..., 4]`` -> ``[...]``."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    iou = inter / (union + eps)
    enclose_wh = (
        torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    ).clamp(min=0)
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]
    return iou - (enclose - union) / (enclose + eps)
