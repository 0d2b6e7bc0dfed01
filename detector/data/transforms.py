"""Bounding-box-aware augmentation with albumentations, built from the config.

A pipeline is a list of ``{"name": <albumentations class>, <keyword arguments>}``, e.g.
``[{name: HorizontalFlip, p: 0.5}, {name: SmallestMaxSize, max_size: [640, 800]}]``. Boxes
move with the image; a box pushed (mostly) out of the image is clipped or dropped
together with its label.
"""
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import albumentations as A
import numpy as np

from ..errors import UserError


class BoxTransform:
    """``(image HWC uint8, boxes [G, 4] xyxy px, labels [G]) -> the same, transformed``."""

    def __init__(self, specs: Sequence[Dict[str, Any]], seed: Optional[int] = None) -> None:
        self.specs = [dict(s) for s in specs]
        transforms = [_build_one(spec, i) for i, spec in enumerate(self.specs)]
        self.compose = A.Compose(
            transforms,
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3,
                                     min_width=1.0, min_height=1.0, clip=True),
            seed=seed,
        )

    def set_seed(self, seed: int) -> None:
        """Reseed the random augmentations (each data-loader worker gets its own seed)."""
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.compose(image=image, bboxes=boxes, labels=labels)
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        return out["image"], boxes, np.asarray(out["labels"], dtype=np.int64)


def _build_one(spec: Dict[str, Any], index: int):
    spec = dict(spec)
    name = spec.pop("name", None)
    if not isinstance(name, str) or not hasattr(A, name):
        raise UserError(f"transform {index}: '{name}' is not an albumentations transform "
                         "(e.g. HorizontalFlip, SmallestMaxSize, RandomSizedBBoxSafeCrop)")
    try:
        with warnings.catch_warnings():
            # albumentations only warns about unknown arguments; a typo must not pass silently
            warnings.filterwarnings("error", message=".*are not valid for transform")
            return getattr(A, name)(**spec)
    except (TypeError, ValueError, UserWarning) as e:
        raise UserError(f"transform {index} ({name}): bad arguments {spec}: {e}") from None


def build_transforms(specs: List[Dict[str, Any]], seed: Optional[int] = None) -> Optional[BoxTransform]:
    """``None`` for an empty list (the model resizes and normalises by itself)."""
    return BoxTransform(specs, seed) if specs else None
