"""A synthetic COCO-format detection dataset, deterministic for a seed.

Shapes of four classes (circle, square, triangle, cross) with a long-tailed frequency, many
of them small, on textured backgrounds with unlabeled clutter (lines, arcs, dots, blobs
and half-drawn shape outlines). Almost every anchor sees easy background, a few see
clutter that looks like an object: the class imbalance the focal loss is about.

Three presets (:data:`PRESETS`): ``shapes``, the demo's set (128 px, up to 6 objects: about
1:150 foreground:background with the demo's anchors, a mild imbalance); ``sparse``, larger
images (256 px) with at most two objects and unlabeled decoys (hollow outlines of the same
shapes, hard negatives), about 1:1300; and ``rare``, the paper's regime at the demo's cost per
image: 128 px, at most one small object (10 to 24 px, half the images have none) and up to
two decoys, about 1:1200 with the demo's anchors (``detector check-data`` measures it: 1:1194 on 3000 train images).
"""
import json
import math
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..progress import progress

CLASSES = ("circle", "square", "triangle", "cross")
CLASS_FREQUENCY = (0.5, 0.25, 0.15, 0.10)  # long tail: the rare classes are the hard ones
SPLITS = ("train", "val")
PRESETS = {
    "shapes": {"image_size": 128, "min_object": 12.0, "max_object": 48.0, "max_objects": 6, "decoys": 0},
    "sparse": {"image_size": 256, "min_object": 20.0, "max_object": 48.0, "max_objects": 2, "decoys": 4},
    "rare": {"image_size": 128, "min_object": 10.0, "max_object": 24.0, "max_objects": 1, "decoys": 2},
}


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth colour field + fine noise + (sometimes) stripes."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    field = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.float32)
    pixels += rng.normal(0, rng.uniform(4, 16), size=pixels.shape)
    if rng.random() < 0.5:
        period = rng.uniform(6, 20)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:size, 0:size]
        stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        pixels += (stripes * rng.uniform(8, 25))[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    for _ in range(rng.integers(3, 10)):
        kind = rng.integers(0, 4)
        x0, y0 = rng.uniform(0, size, 2)
        if kind == 0:  # a line
            x1, y1 = x0 + rng.normal(0, size / 3), y0 + rng.normal(0, size / 3)
            draw.line([x0, y0, x1, y1], fill=_colour(rng), width=int(rng.integers(1, 4)))
        elif kind == 1:  # an arc
            r = rng.uniform(5, 30)
            start = rng.uniform(0, 360)
            draw.arc([x0 - r, y0 - r, x0 + r, y0 + r], start, start + rng.uniform(40, 200),
                     fill=_colour(rng), width=int(rng.integers(1, 3)))
        elif kind == 2:  # dots
            for _ in range(rng.integers(2, 8)):
                x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1, 3)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=_colour(rng))
        else:  # an open polyline: shape-like edges that are not an object
            points = [(x0 + rng.normal(0, 10), y0 + rng.normal(0, 10)) for _ in range(3)]
            draw.line(points, fill=_colour(rng), width=int(rng.integers(1, 3)))


def _draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, label: int,
                box: Tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    fill = _colour(rng)
    outline = _colour(rng) if rng.random() < 0.5 else None
    if CLASSES[label] == "circle":
        draw.ellipse(box, fill=fill, outline=outline)
    elif CLASSES[label] == "square":
        draw.rectangle(box, fill=fill, outline=outline)
    elif CLASSES[label] == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill, outline=outline)
    else:  # cross: a plus sign whose arms span the box
        t = (x1 - x0) / 3
        draw.rectangle([x0, y0 + t, x1, y1 - t], fill=fill)
        draw.rectangle([x0 + t, y0, x1 - t, y1], fill=fill)


def _draw_decoy(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: Tuple[float, float, float, float]) -> None:
    """An unlabeled hollow outline of one of the shapes: object-like edges, no object."""
    x0, y0, x1, y1 = box
    colour, width = _colour(rng), int(rng.integers(1, 3))
    kind = CLASSES[int(rng.integers(0, len(CLASSES)))]
    if kind == "circle":
        draw.ellipse(box, outline=colour, width=width)
    elif kind == "square":
        draw.rectangle(box, outline=colour, width=width)
    elif kind == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], outline=colour, width=width)
    else:
        t = (x1 - x0) / 3
        draw.line([(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)], fill=colour, width=width)
        draw.line([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)], fill=colour, width=max(1, round(t / 4)))


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _make_image(rng: np.random.Generator, size: int, min_obj: float, max_obj: float, max_objects: int = 6,
                decoys: int = 0):
    image = _background(rng, size)
    draw = ImageDraw.Draw(image)
    _draw_clutter(draw, rng, size)
    for _ in range(int(rng.integers(0, decoys + 1)) if decoys else 0):
        side = float(np.exp(rng.uniform(math.log(min_obj), math.log(max_obj))))
        x0, y0 = rng.uniform(0, size - side, 2)
        _draw_decoy(draw, rng, (round(x0), round(y0), round(x0 + side), round(y0 + side)))
    objects: List[Tuple[int, Tuple[float, float, float, float]]] = []
    for _ in range(int(rng.integers(0, max_objects + 1))):  # some images have no object at all
        side = float(np.exp(rng.uniform(math.log(min_obj), math.log(max_obj))))  # many small ones
        x0, y0 = rng.uniform(0, size - side, 2)
        box = (round(x0), round(y0), round(x0 + side), round(y0 + side))
        if any(_iou(box, other) > 0.1 for _, other in objects):
            continue
        label = int(rng.choice(len(CLASSES), p=CLASS_FREQUENCY))
        _draw_shape(draw, rng, label, box)
        objects.append((label, box))
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.6))))
    return image, objects


def make_synthetic_dataset(out_dir: str, num_train: int = 2000, num_val: int = 300, seed: int = 0,
                           image_size: int = 128, min_object: float = 12.0, max_object: float = 48.0,
                           max_objects: int = 6, decoys: int = 0) -> Dict[str, str]:
    """Write ``OUT_DIR/{train,val}/*.png`` and ``OUT_DIR/annotations/instances_{split}.json``.

    Each image has 0..``max_objects`` shapes (fewer when they would overlap) and
    0..``decoys`` unlabeled hollow outlines. Each split draws from its own random stream, so
    the val split does not depend on ``num_train``. Boxes are the shapes' tight boxes;
    category ids are 1..4. :data:`PRESETS` name the built-in settings. Returns the
    annotation file of each split.
    """
    ann_dir = os.path.join(out_dir, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    written = {}
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        rng = np.random.default_rng([seed, split_index])
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for image_id in progress(range(1, count + 1), desc=f"synthetic {split}", unit="img", leave=False):
            image, objects = _make_image(rng, image_size, min_object, max_object, max_objects, decoys)
            file_name = f"{image_id:06d}.png"
            image.save(os.path.join(out_dir, split, file_name))
            images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
            for label, (x0, y0, x1, y1) in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0,
                })
        coco = {
            "info": {"description": f"detector synthetic shapes, seed {seed}"},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                           for i, name in enumerate(CLASSES)],
        }
        path = os.path.join(ann_dir, f"instances_{split}.json")
        with open(path, "w") as f:
            json.dump(coco, f)
        written[split] = path
    return written
