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


# albumentations transforms that rescale the image: a pipeline with one of them sets the
# training scale; without one, images would train at their native sizes.
RESCALING_TRANSFORMS = ("Resize", "SmallestMaxSize", "LongestMaxSize", "RandomScale", "RandomResizedCrop",
                        "RandomSizedCrop", "RandomSizedBBoxSafeCrop", "Affine", "ShiftScaleRotate")


def rescales(specs: Sequence[Dict[str, Any]]) -> bool:
    """Whether a transform list rescales its images (one of :data:`RESCALING_TRANSFORMS`)."""
    return any(spec.get("name") in RESCALING_TRANSFORMS for spec in specs)


def resize_in_training(cfg) -> bool:
    """``input.resize_in_training``, with null (auto) resolved: the model resizes training
    images like test images exactly when the train transforms do not rescale them."""
    if cfg.input.resize_in_training is not None:
        return cfg.input.resize_in_training
    return not rescales(cfg.data.train.transforms)


def training_scale_note(cfg) -> str:
    """One line on how training images are scaled, against the test scale; says what to set
    when training would see the images' native sizes while testing resizes them."""
    test = f"input.min_size={cfg.input.min_size}, input.max_size={cfg.input.max_size}"
    if resize_in_training(cfg):
        why = "" if cfg.input.resize_in_training else " (auto: the train transforms do not rescale)"
        return f"train images are resized by the model like test images ({test}){why}"
    if rescales(cfg.data.train.transforms):
        return f"train images are rescaled by the train transforms; test images by the model ({test})"
    return (f"WARNING: train images keep their native sizes (input.resize_in_training=false and no rescaling "
            f"transform) while test images are resized ({test}); set input.resize_in_training=true or add "
            "a SmallestMaxSize/LongestMaxSize transform")


def build_transforms(specs: List[Dict[str, Any]], seed: Optional[int] = None) -> Optional[BoxTransform]:
    """``None`` for an empty list (the model resizes and normalises by itself)."""
    return BoxTransform(specs, seed) if specs else None
