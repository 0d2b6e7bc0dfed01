"""COCO-format detection data on pycocotools, checked when the dataset is built."""
import contextlib
import io
import json
import logging
import os
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import UnidentifiedImageError
from pycocotools.coco import COCO

from ..errors import UserError
from ..progress import progress as progress_bar
from .image import DEFAULT_MAX_PIXELS, ImageTooLarge, read_image, upright_size

logger = logging.getLogger(__name__)

MIN_BOX_SIDE = 1.0  # boxes with w or h <= 1 px after clipping are dropped (and counted)
# COCO's area ranges (in pixels^2) for small / medium / large objects
AREA_RANGES = {"small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, float("inf"))}


def size_bucket(area: float) -> str:
    """COCO's name for a box of ``area`` px^2: small, medium or large."""
    return next(k for k, (lo, hi) in AREA_RANGES.items() if lo <= area < hi)


class DatasetError(UserError):
    """Bad input data; the message names the file and the offending id or key."""


def _load_json(ann_file: str) -> Dict[str, Any]:
    if os.path.isdir(ann_file):
        raise DatasetError(f"{ann_file} is a directory; data.*.ann_file names the COCO-format json file in it")
    if not os.path.isfile(ann_file):
        raise DatasetError(f"annotation file not found: {ann_file}")
    try:
        # utf-8-sig: tools on Windows write a byte-order mark, which json.load refuses
        with open(ann_file, encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{ann_file}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            "is the file truncated?"
        ) from None
    except UnicodeDecodeError:
        raise DatasetError(f"{ann_file}: not a text file (expected COCO-format JSON)") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file}: the top level must be an object with 'images', "
                           f"'annotations' and 'categories'")
    return data


def validate_coco(data: Dict[str, Any], ann_file: str) -> None:
    """Raise :class:`DatasetError` for the first structural problem found."""
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{ann_file}: missing required key '{key}'")
        if not isinstance(data[key], list):
            raise DatasetError(f"{ann_file}: '{key}' must be a list")
    required = {"images": ("id", "file_name"), "annotations": ("id", "image_id", "category_id", "bbox"),
                "categories": ("id", "name")}
    singular = {"images": "image", "annotations": "annotation", "categories": "category"}
    for key, fields in required.items():
        seen = set()
        for index, entry in enumerate(data[key]):
            if not isinstance(entry, dict):
                raise DatasetError(f"{ann_file}: {key}[{index}] is not an object")
            for name in fields:
                if name not in entry:
                    raise DatasetError(f"{ann_file}: {key}[{index}] (id {entry.get('id')}) "
                                       f"is missing required key '{name}'")
            if entry["id"] in seen:
                raise DatasetError(f"{ann_file}: duplicate {singular[key]} id {entry['id']}")
            seen.add(entry["id"])
    if not data["categories"]:
        raise DatasetError(f"{ann_file}: 'categories' is empty")
    for index, image in enumerate(data["images"]):
        if not isinstance(image["file_name"], str) or not image["file_name"].strip():
            raise DatasetError(f"{ann_file}: images[{index}] (id {image['id']}) has file_name {image['file_name']!r}; "
                               "expected the image's path relative to data.*.img_dir")
        for key in ("width", "height"):
            value = image.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise DatasetError(f"{ann_file}: images[{index}] (id {image['id']}) has {key} {value!r}; expected a "
                                   "positive number of pixels (or no such key: the image's own size is used)")
    image_ids = {im["id"] for im in data["images"]}
    category_ids = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{ann_file}: annotation {ann['id']} points at unknown image id {ann['image_id']}")
        if ann["category_id"] not in category_ids:
            raise DatasetError(f"{ann_file}: annotation {ann['id']} has unknown category id "
                               f"{ann['category_id']} (known: {sorted(category_ids)})")
        bbox = ann["bbox"]
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in bbox)):
            raise DatasetError(f"{ann_file}: annotation {ann['id']} has a malformed bbox {bbox!r} "
                               "(expected [x, y, width, height] numbers)")


def label_map(categories: List[Dict[str, Any]], ann_file: str,
              category_ids_as_labels: bool = False) -> Tuple[Dict[int, int], List[str]]:
    """COCO categories -> ({category id: label}, class name per label). Labels are the positions
    of the sorted ids (0..K-1), or with ``category_ids_as_labels`` the ids themselves
    (torchvision's COCO models: 91 slots, the unused ones named ``unused_<i>``)."""
    category_ids = sorted(c["id"] for c in categories)
    names = {c["id"]: c["name"] for c in categories}
    if category_ids_as_labels:
        if category_ids[0] < 0:
            raise DatasetError(f"{ann_file}: category id {category_ids[0]} cannot be a label")
        return {cid: cid for cid in category_ids}, [names.get(i, f"unused_{i}") for i in range(category_ids[-1] + 1)]
    return {cid: i for i, cid in enumerate(category_ids)}, [names[cid] for cid in category_ids]


def load_categories(ann_file: str) -> List[Dict[str, Any]]:
    """A COCO annotation file's categories (for :func:`label_map`)."""
    data = _load_json(ann_file)
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        raise DatasetError(f"{ann_file}: no 'categories' list")
    return data["categories"]


class CocoDetection(torch.utils.data.Dataset):
    """Item ``i`` is ``(image [3, H, W] uint8, target)`` with target
    ``{"boxes": [G, 4] xyxy px, "labels": [G] int64 0..K-1, "image_id": int}``.

    Category ids map to contiguous labels in the order of their ids (or, with
    ``category_ids_as_labels``, are the labels), and back through :attr:`label_to_category_id`. Boxes are clipped to the image; boxes with a side
    <= 1 px after clipping are dropped and counted in :attr:`num_degenerate`; crowd boxes
    are left out of the targets (counted in :attr:`num_crowd`).
    """

    def __init__(self, ann_file: str, img_dir: str, transforms: Optional[Callable] = None,
                 filter_empty: bool = False, category_ids_as_labels: bool = False,
                 max_image_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        data = _load_json(ann_file)
        validate_coco(data, ann_file)
        if not os.path.isdir(img_dir):
            raise DatasetError(f"image directory not found: {img_dir} (for {ann_file})")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.ann_file = ann_file
        self.img_dir = img_dir
        self.transforms = transforms
        self.max_image_pixels = max_image_pixels
        self.category_id_to_label, self.class_names = label_map(data["categories"], ann_file, category_ids_as_labels)
        self.num_classes = len(self.class_names)
        self.label_to_category_id = {i: cid for cid, i in self.category_id_to_label.items()}
        self.num_degenerate = 0
        self.num_crowd = 0
        self._targets: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        for image_id in sorted(self.coco.imgs):
            self._targets[image_id] = self._load_target(image_id)
        ids = sorted(self.coco.imgs)
        if filter_empty:
            ids = [i for i in ids if len(self._targets[i][1])]
        if not ids:
            raise DatasetError(f"{ann_file}: no images{' with annotations' if filter_empty else ''}")
        self.ids = ids
        if self.num_degenerate or self.num_crowd:
            logger.info("%s: skipped %d degenerate boxes (side <= %g px after clipping) and "
                        "%d crowd boxes", ann_file, self.num_degenerate, MIN_BOX_SIDE, self.num_crowd)

    def _load_target(self, image_id: int) -> Tuple[np.ndarray, np.ndarray]:
        info = self.coco.imgs[image_id]
        width, height = info.get("width"), info.get("height")
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                self.num_crowd += 1
                continue
            x, y, w, h = ann["bbox"]
            x1, y1, x2, y2 = x, y, x + w, y + h
            if width is not None and height is not None:
                x1, x2 = min(max(x1, 0), width), min(max(x2, 0), width)
                y1, y2 = min(max(y1, 0), height), min(max(y2, 0), height)
            if x2 - x1 <= MIN_BOX_SIDE or y2 - y1 <= MIN_BOX_SIDE:
                self.num_degenerate += 1
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.category_id_to_label[ann["category_id"]])
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> str:
        """The image's file: ``img_dir/file_name``; a ``file_name`` written with Windows
        separators (``images\\0001.jpg``) is read with this system's, when only that exists."""
        file_name = self.coco.imgs[self.ids[index]]["file_name"]
        path = os.path.join(self.img_dir, file_name)
        if "\\" in file_name and os.sep == "/" and not os.path.exists(path):
            converted = os.path.join(self.img_dir, *file_name.split("\\"))
            if os.path.exists(converted):
                return converted
        return path

    def annotations(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The boxes (``[G, 4]`` xyxy px, clipped to the json's size) and labels (``[G]``) of
        image ``index``, as training sees them before augmentation; the image is not read."""
        return self._targets[self.ids[index]]

    def image_size(self, index: int) -> Tuple[int, int]:
        """(height, width) from the json, or from the file's header where the json has none."""
        info = self.coco.imgs[self.ids[index]]
        if info.get("height") and info.get("width"):
            return info["height"], info["width"]
        width, height = upright_size(self.image_path(index), self.max_image_pixels)
        return height, width

    def aspect_ratio(self, index: int) -> float:
        """height / width from the json (1.0 when the json does not say)."""
        info = self.coco.imgs[self.ids[index]]
        return info["height"] / info["width"] if info.get("width") and info.get("height") else 1.0

    def load_image(self, index: int) -> np.ndarray:
        """HWC uint8 RGB, upright (EXIF orientation applied), whatever the file's mode; its
        size must be the json's width and height where the json gives them."""
        image_id = self.ids[index]
        path = self.image_path(index)
        try:
            image = read_image(path, self.max_image_pixels)
        except FileNotFoundError:
            raise DatasetError(f"image file not found: {path} (image id {image_id} in {self.ann_file})") from None
        except ImageTooLarge as e:
            raise DatasetError(f"image {path} (image id {image_id} in {self.ann_file}): {e}") from None
        except PermissionError as e:
            raise DatasetError(f"cannot read image {path} (image id {image_id} in {self.ann_file}): "
                               f"{e.strerror}; check the file's permissions") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise DatasetError(f"cannot read image {path} (image id {image_id} in {self.ann_file}): "
                               f"{e}; the file is truncated or not an image") from None
        problem = self._size_problem(index, image.shape[1], image.shape[0])
        if problem:
            raise DatasetError(problem)
        return image

    def _size_problem(self, index: int, width: int, height: int) -> Optional[str]:
        """A message when the upright image is not the json's width x height (else None)."""
        info = self.coco.imgs[self.ids[index]]
        expected = (info.get("width"), info.get("height"))
        if None in expected or expected == (width, height):
            return None
        return (f"image {self.image_path(index)} (image id {self.ids[index]} in {self.ann_file}) is "
                f"{width}x{height} (width x height, upright after its EXIF orientation) but the json says "
                f"{expected[0]}x{expected[1]}: its boxes would land on the wrong pixels. Fix the json's "
                "width/height or the file")

    def __getitem__(self, item):
        """``item`` is an index, or ``(index, seed)`` to draw this sample's augmentation from
        ``seed`` (what the training sampler does, so that augmentation is reproducible)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = self.load_image(index)
        boxes, labels = self.annotations(index)
        height, width = image.shape[:2]
        boxes = boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)  # the json's size may be absent or wrong
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        if self.transforms is not None:
            if seed is not None:
                self.transforms.set_seed(seed)
            image, boxes, labels = self.transforms(image, boxes, labels)
        target = {
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64)),
            "image_id": self.ids[index],
        }
        # uint8 [3, H, W], contiguous: a quarter of float32's bytes to pin and send; the model
        # converts and normalises it on its device
        image = torch.from_numpy(np.ascontiguousarray(np.transpose(image, (2, 0, 1))))
        return image, target

    def statistics(self) -> Dict[str, Any]:
        """Counts for ``detector check-data``: images, boxes per class, sizes, problems."""
        boxes_per_class: Counter = Counter()
        sizes: Counter = Counter()
        empty = 0
        for image_id in self.ids:
            boxes, labels = self._targets[image_id]
            if not len(labels):
                empty += 1
            for label in labels:
                boxes_per_class[self.class_names[label]] += 1
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            for area in areas:
                sizes[size_bucket(area)] += 1
        return {
            "images": len(self.ids),
            "images_without_boxes": empty,
            "boxes": int(sum(boxes_per_class.values())),
            "boxes_per_class": {name: boxes_per_class.get(name, 0) for name in self.class_names},
            "box_sizes": {k: sizes.get(k, 0) for k in AREA_RANGES},
            "degenerate_boxes_skipped": self.num_degenerate,
            "crowd_boxes_skipped": self.num_crowd,
        }

    def check_files_exist(self, split: str) -> None:
        """Raise :class:`DatasetError` if image files are missing: one stat per image, no
        decode, so that a wrong ``img_dir`` is found before training starts, not mid-run."""
        missing = [i for i in range(len(self)) if not os.path.isfile(self.image_path(i))]
        if missing:
            first = missing[0]
            more = f" and {len(missing) - 1} more of {len(self)}" if len(missing) > 1 else ""
            raise DatasetError(
                f"image file not found: {self.image_path(first)} (image id {self.ids[first]} in "
                f"{self.ann_file}){more}; check data.{split}.img_dir (detector check-data lists every problem)")

    def check_images(self, progress: bool = True) -> List[str]:
        """Open every image; return one message per missing, unreadable or wrongly sized file
        (the size from the header and EXIF tag, compared with the json's)."""
        problems = []
        for index in progress_bar(range(len(self)), desc="checking images", unit="img", disable=not progress):
            try:
                size = upright_size(self.image_path(index), self.max_image_pixels)
            except (OSError, SyntaxError):
                size = None  # missing or not an image: load_image below names the problem
            problem = self._size_problem(index, *size) if size else None
            if problem:
                problems.append(problem)
                continue
            try:
                self.load_image(index)  # a full decode: finds truncated files
            except DatasetError as e:
                problems.append(str(e))
        return problems
