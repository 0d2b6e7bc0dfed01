"""Input handling inside the model, as torchvision's GeneralizedRCNNTransform does it:
normalise, resize so that the short side is ``min_size`` (the long side at most
``max_size``), and pad the batch to a multiple of ``size_divisible``. In training mode the
resize is skipped unless ``resize_in_training``: the train transforms set the size there.

The same code runs eagerly and under the ONNX tracer (``detector export``). Traced, a
tensor's sizes are 0-d tensors rather than ints, so the arithmetic on sizes is written to
work on both; where it cannot be (``min``, ``floor``, host-side ratios), a branch on
``isinstance(size, Tensor)`` says so, as torchvision's ``transform.py`` branches on tracing.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Size = Union[int, Tensor]  # an int eagerly, a 0-d int64 tensor while tracing


def resized_size(height: Size, width: Size, min_size: int, max_size: int) -> Tuple[Size, Size]:
    """The (height, width) an image is resized to: the short side to ``min_size`` unless the
    long side would pass ``max_size``. Each side is ``floor(side * s)`` with ``s`` in double
    precision, what ``F.interpolate(scale_factor=s, recompute_scale_factor=True)`` computes."""
    if isinstance(height, Tensor):
        h, w = height.to(torch.float64), width.to(torch.float64)
        scale = torch.minimum(min_size / torch.minimum(h, w), max_size / torch.maximum(h, w))
        return torch.floor(h * scale).to(torch.int64), torch.floor(w * scale).to(torch.int64)
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


def padded_size(height: Size, width: Size, size_divisible: int) -> Tuple[Size, Size]:
    """Both sides rounded up to a multiple of ``size_divisible`` (integer arithmetic, so that
    it also runs on traced sizes)."""
    return ((height + size_divisible - 1) // size_divisible * size_divisible,
            (width + size_divisible - 1) // size_divisible * size_divisible)


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
    ) -> Tuple[Tensor, List[Tuple[Size, Size]], Optional[List[Dict[str, Tensor]]]]:
        """
        Args:
            images: list of ``[3, H_i, W_i]`` float tensors with values in 0..1, or uint8 tensors
                (0..255, what the data loaders give: they cross to the GPU at a quarter of the bytes).
            targets: optional list of dicts with ``boxes`` ``[G_i, 4]`` xyxy in input pixels.
        Returns:
            the padded batch ``[N, 3, H, W]``, each image's size after resizing, and the
            targets with boxes scaled to the resized images (new dicts; inputs are not changed).
        """
        resized, sizes, scaled_targets = [], [], [] if targets is not None else None
        for i, image in enumerate(images):
            if not torch.jit.is_tracing() and (image.dim() != 3 or image.shape[0] != 3 or not (
                    image.is_floating_point() or image.dtype == torch.uint8)):
                raise ValueError(f"image {i}: expected a float [3, H, W] tensor with values in 0..1 (or uint8 "
                                 f"0..255), got {tuple(image.shape)} {image.dtype}")
            h, w = image.shape[-2:]
            if image.dtype == torch.uint8:  # the loaders' images: converted here, on the model's device
                image = image.float().div_(255)
            image = (image - self.pixel_mean) / self.pixel_std
            if self.resize_in_training or not self.training:
                size = resized_size(h, w, self.min_size, self.max_size)
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            resized.append(image)
            sizes.append((image.shape[-2], image.shape[-1]))
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = rescale_boxes(target["boxes"], (h, w), sizes[-1])
                scaled_targets.append(target)
        return self._pad(resized), sizes, scaled_targets

    def _pad(self, images: List[Tensor]) -> Tensor:
        """``[N, 3, H, W]``: each image padded with zeros at the bottom and right to the batch's
        largest size, rounded up to a multiple of ``size_divisible``."""
        height, width = padded_size(max(im.shape[-2] for im in images), max(im.shape[-1] for im in images),
                                    self.size_divisible)
        if torch.jit.is_tracing():  # one image, and no in-place copy into a slice: neither exports
            return F.pad(images[0], (0, width - images[0].shape[-1], 0, height - images[0].shape[-2]))[None]
        batch = images[0].new_zeros(len(images), 3, height, width)
        for i, image in enumerate(images):
            batch[i, :, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch


def rescale_boxes(boxes: Tensor, from_size: Tuple[Size, Size], to_size: Tuple[Size, Size]) -> Tensor:
    """Scale ``[..., 4]`` xyxy boxes from an image of ``from_size`` (H, W) to ``to_size``.

    The ratios are float32 quotients, as torchvision computes them. Eagerly they are taken on
    the host and passed as scalars: no tensor is copied to the GPU, so no host-device sync.
    """
    if isinstance(from_size[0], Tensor):  # traced: the sizes are tensors
        ratio_h = to_size[0].to(torch.float32) / from_size[0].to(torch.float32)
        ratio_w = to_size[1].to(torch.float32) / from_size[1].to(torch.float32)
    else:
        ratio_h = float(np.float32(to_size[0]) / np.float32(from_size[0]))
        ratio_w = float(np.float32(to_size[1]) / np.float32(from_size[1]))
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h], dim=-1)
