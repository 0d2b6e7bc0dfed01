from .boxes import (
    box_area,
    box_iou,
    box_iou_aligned,
    clip_boxes,
    generalized_box_iou_pairwise,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

__all__ = [
    "box_area",
    "box_iou",
    "box_iou_aligned",
    "clip_boxes",
    "generalized_box_iou_pairwise",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
