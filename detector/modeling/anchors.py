"""Anchors: A = len(sizes) x len(aspect_ratios) boxes at every cell of every pyramid level."""
from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import UserError

STRIDE_MODES = ("nominal", "input_over_feature")


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float],
                 round_to_int: bool = False) -> Tensor:
    """``[A, 4]`` anchors centred at (0, 0), xyxy, ordered ratio-major (torchvision's order).

    An anchor of size s and aspect ratio r (= height / width) has area s^2: width s/sqrt(r),
    height s*sqrt(r).
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=torch.float32))
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    base = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
    return base.round() if round_to_int else base


class AnchorGenerator(nn.Module):
    """Anchors for all levels, concatenated level by level, then cell by cell (row-major),
    then anchor by anchor: the order in which the head emits its predictions.

    Results are cached per (input size, feature shapes, device): a fixed-size training run
    generates its anchors once.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        round_to_int: bool = False,
        stride_mode: str = "nominal",
        cache_size: int = 16,
    ) -> None:
        super().__init__()
        if len(sizes) != len(strides):
            raise UserError(f"model.anchors: {len(sizes)} size lists for {len(strides)} pyramid levels")
        if stride_mode not in STRIDE_MODES:
            raise UserError(f"model.anchors.stride_mode must be one of {STRIDE_MODES}, got '{stride_mode}'")
        self.strides = list(strides)
        self.stride_mode = stride_mode
        self.cell_anchors = [cell_anchors(s, aspect_ratios, round_to_int) for s in sizes]
        self.num_anchors = self.cell_anchors[0].shape[0]
        if any(c.shape[0] != self.num_anchors for c in self.cell_anchors):
            raise UserError("model.anchors: every level needs the same number of anchors per cell")
        self.cache_size = cache_size
        self._cache: "OrderedDict[tuple, Tensor]" = OrderedDict()

    def forward(self, image_size: Tuple[int, int], feature_shapes: List[Tuple[int, int]],
                device: torch.device) -> Tensor:
        """Anchors ``[sum_l H_l * W_l * A, 4]`` for a padded batch of ``image_size`` (H, W)."""
        if torch.jit.is_tracing():  # traced sizes: computed in the graph, for every input size
            return torch.cat([self.grid_anchors(image_size, shape, level, device)
                              for level, shape in enumerate(feature_shapes)])
        shapes = tuple(tuple(int(v) for v in s) for s in feature_shapes)
        key = (tuple(image_size) if self.stride_mode == "input_over_feature" else None, shapes, str(device))
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = torch.cat(
                [self.grid_anchors(image_size, shape, level, device) for level, shape in enumerate(shapes)]
            )
            self._cache[key] = anchors
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return anchors

    def level_sizes(self, feature_shapes: List[Tuple[int, int]]) -> List[int]:
        """Number of anchors per level, to split the concatenated anchors (traced 0-d tensors
        while tracing)."""
        return [h * w * self.num_anchors for h, w in feature_shapes]

    def grid_anchors(self, image_size, shape, level: int, device) -> Tensor:
        """``[H_l * W_l * A, 4]`` anchors of one level, uncached."""
        height, width = shape
        if self.stride_mode == "nominal":
            stride_y = stride_x = self.strides[level]
        else:  # torchvision: integer division of the padded input size by the feature size
            stride_y, stride_x = image_size[0] // height, image_size[1] // width
        shift_x = torch.arange(width, dtype=torch.float32, device=device) * stride_x
        shift_y = torch.arange(height, dtype=torch.float32, device=device) * stride_y
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        return (shifts + self.cell_anchors[level].to(device)[None]).reshape(-1, 4)
