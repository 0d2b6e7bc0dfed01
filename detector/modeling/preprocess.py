"""Input handling inside the model, as torchvision's GeneralizedRCNNTransform does it:
normalise, resize so that the short side is ``min_size`` (the long side at most
``max_size``), and pad the batch to a multiple of ``size_divisible``. In training mode the
resize is skipped unless ``resize_in_training``: the train transforms set the size there."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Preprocessor(nn.Module):
    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float], min_size: int = 800,
                 max_size: int = 1333, size_divisible: int = 32, resize_in_training: bool = False) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.min_size = min_size
        self.max_size = max_size
        self.size_divisible = size_divisible
        self.resize_in_training = resize_in_training

    def forward(
        self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None
    ) -> Tuple[Tensor, List[Tuple[int, int]], Optional[List[Dict[str, Tensor]]]]:
        """
        Args:
            images: list of ``[3, H_i, W_i]`` float tensors with values in 0..1.
            targets: optional list of dicts with ``boxes`` ``[G_i, 4]`` xyxy in input pixels.
        Returns:
            the padded batch ``[N, 3, H, W]``, each image's size after resizing, and the
            targets with boxes scaled to the resized images (new dicts; inputs are not changed).
        """
        resized, sizes, scaled_targets = [], [], [] if targets is not None else None
        for i, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
                raise ValueError(
                    f"image {i}: expected a float [3, H, W] tensor with values in 0..1, "
                    f"got {tuple(image.shape)} {image.dtype}"
                )
            h, w = image.shape[-2:]
            image = (image - self.pixel_mean) / self.pixel_std
            if self.resize_in_training or not self.training:
                scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
                image = F.interpolate(image[None], scale_factor=scale, mode="bilinear",
                                      recompute_scale_factor=True, align_corners=False)[0]
            resized.append(image)
            sizes.append((image.shape[-2], image.shape[-1]))
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = rescale_boxes(target["boxes"], (h, w), sizes[-1])
                scaled_targets.append(target)
        return self._pad(resized), sizes, scaled_targets

    def _pad(self, images: List[Tensor]) -> Tensor:
        stride = self.size_divisible
        height = int(math.ceil(max(im.shape[-2] for im in images) / stride) * stride)
        width = int(math.ceil(max(im.shape[-1] for im in images) / stride) * stride)
        batch = images[0].new_zeros(len(images), 3, height, width)
        for i, image in enumerate(images):
            batch[i, :, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch


def rescale_boxes(boxes: Tensor, from_size: Tuple[int, int], to_size: Tuple[int, int]) -> Tensor:
    """Scale ``[..., 4]`` xyxy boxes from an image of ``from_size`` (H, W) to ``to_size``.

    The ratios are float32 quotients, as torchvision computes them, but taken on the host and
    passed as scalars: no tensor is copied to the GPU, so no host-device sync.
    """
    ratio_h = float(np.float32(to_size[0]) / np.float32(from_size[0]))
    ratio_w = float(np.float32(to_size[1]) / np.float32(from_size[1]))
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h], dim=-1)
