"""``detector predict``: detections for image files, as JSON and as drawn images."""
import json
import os
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes
from tqdm import tqdm

from .data.image import DEFAULT_MAX_PIXELS, read_image
from .errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_images(inputs: Sequence[str]) -> List[str]:
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in directory {item}")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"no such image or directory: {item}")
    return paths


def _read(path: str, max_pixels: int) -> np.ndarray:
    try:
        return read_image(path, max_pixels)
    except (OSError, SyntaxError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def predict(detect: Callable[[np.ndarray], Dict[str, np.ndarray]], paths: Sequence[str],
            class_names: Sequence[str], output_dir: str, score_thresh: float = 0.3,
            progress: bool = True, max_image_pixels: int = DEFAULT_MAX_PIXELS) -> List[Dict]:
    """Write ``output_dir/predictions.json`` and a drawn copy of each image; return the records.

    ``detect`` maps a ``[H, W, 3]`` uint8 RGB image to ``{"boxes" [D, 4] xyxy px, "scores" [D],
    "labels" [D]}`` numpy arrays: the eager model (``export.torch_detector``) or an exported
    graph in ONNX Runtime (``export.OnnxDetector``), with the same outputs and drawings.
    """
    os.makedirs(output_dir, exist_ok=True)
    records = []
    for path in tqdm(paths, desc="predicting", unit="img", disable=not progress):
        array = _read(path, max_image_pixels)
        det = detect(array)
        keep = det["scores"] >= score_thresh
        boxes, scores, labels = (torch.as_tensor(det[k][keep]) for k in ("boxes", "scores", "labels"))
        names = [class_names[int(c)] for c in labels]
        records.append({"file_name": os.path.basename(path), "path": path, "boxes": boxes.tolist(),
                        "scores": scores.tolist(), "labels": labels.tolist(), "category_names": names})
        image = torch.from_numpy(array.copy()).permute(2, 0, 1)
        # small images are drawn enlarged, so that the captions stay readable
        scale = max(1, int(np.ceil(400 / min(image.shape[1:]))))
        drawn = torch.nn.functional.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
        if len(boxes):
            captions = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())]
            drawn = draw_bounding_boxes(drawn, boxes * scale, labels=captions,
                                        width=max(1, round(min(drawn.shape[1:]) / 200)))
        stem = os.path.splitext(os.path.basename(path))[0]
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(os.path.join(output_dir, f"{stem}_pred.png"))
    with open(os.path.join(output_dir, "predictions.json"), "w") as f:
        json.dump(records, f, indent=1)
    return records
