"""Box-delta parameterisation (R-CNN): centre offsets in units of the anchor size, log sizes."""
import math
from typing import Sequence

import torch
from torch import Tensor


class BoxCoder:
    """``encode(anchors, boxes)`` -> deltas and ``decode(deltas, anchors)`` -> boxes, on
    ``[..., 4]`` tensors (boxes xyxy in pixels). ``weights`` scale (dx, dy, dw, dh);
    ``scale_clamp`` bounds dw, dh before ``exp`` so that a wild prediction stays finite."""

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = math.log(1000.0 / 16)) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        wx, wy, ww, wh = self.weights
        ax, ay, aw, ah = _centers_and_sizes(anchors.to(boxes.dtype))
        bx, by, bw, bh = _centers_and_sizes(boxes)
        return torch.stack(
            [wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)],
            dim=-1,
        )

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        wx, wy, ww, wh = self.weights
        ax, ay, aw, ah = _centers_and_sizes(anchors.to(deltas.dtype))
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)
        cx = dx * aw + ax
        cy = dy * ah + ay
        half_w = 0.5 * torch.exp(dw) * aw
        half_h = 0.5 * torch.exp(dh) * ah
        return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def _centers_and_sizes(boxes: Tensor):
    """xyxy ``[..., 4]`` -> centre x, centre y, width, height, each ``[...]``."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h
