"""``detector visualize``: pictures of what the model is given and of what it gets wrong.

``--data`` draws the training images as the model sees them: after the train transforms
(augmentation) and the model's resize, with their ground truth. ``--predictions RUN_DIR``
draws a run's ``detections.json`` over the val images, each box coloured by what it is
(:mod:`detector.evaluation.error_types`: correct, or the TIDE error it makes) and each missed
ground-truth box dashed; ``--errors TYPE`` keeps the images where that error is most frequent.
Images go on contact sheets of ``per_sheet`` (and one file each with ``single``).
"""
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import Config, resize_in_training
from .data import CocoDetection, build_dataset
from .errors import UserError
from .evaluation.error_types import ERROR_TYPES, classify_detections
from .evaluation.evaluator import ground_truth_and_detections

COLOURS = {"correct": "#2ca02c", "classification": "#ff7f0e", "localization": "#e6c700", "both": "#9467bd",
           "duplicate": "#17becf", "background": "#d62728", "missed": "#ff00ff", "ground truth": "#2ca02c"}
Box = Tuple[np.ndarray, str, str, bool]  # xyxy, caption, kind (a COLOURS key), dashed


def visualize(cfg: Config, output_dir: str, data: bool = False, predictions: Optional[str] = None,
              errors: Optional[str] = None, per_sheet: int = 16, max_images: int = 64, single: bool = False,
              score_thresh: float = 0.3) -> List[str]:
    """Draw ``max_images`` images in one of the two modes; returns the files written."""
    if errors is not None and errors not in ERROR_TYPES:
        raise UserError(f"--errors {errors}: valid types are {', '.join(ERROR_TYPES)}")
    if errors is not None and predictions is None:
        raise UserError("--errors goes with --predictions RUN_DIR")
    os.makedirs(output_dir, exist_ok=True)
    if data:
        pictures = _training_view(cfg, max_images)
        title = "train split as the model sees it (transforms and resize)"
    else:
        pictures = _prediction_view(cfg, predictions, errors, max_images, score_thresh)
        title = f"{predictions}: detections with score >= {score_thresh:g}" + (f", images with {errors} errors"
                                                                               if errors else "")
    if not pictures:
        raise UserError(f"no image to draw (no image has a {errors} error)" if errors else "no image to draw")
    written = []
    for start in range(0, len(pictures), per_sheet):
        path = os.path.join(output_dir, f"sheet_{start // per_sheet:03d}.png")
        written.append(_sheet(pictures[start:start + per_sheet], title, path, legend=not data))
    if single:
        for name, image, boxes in pictures:
            written.append(_sheet([(name, image, boxes)], title, os.path.join(output_dir, f"{name}.png"),
                                  legend=not data))
    return written


def _training_view(cfg: Config, count: int) -> List[Tuple[str, np.ndarray, List[Box]]]:
    """Images of the train split after its transforms (each with the augmentation seed the
    first epoch of training would draw for it) and, where the model resizes training images,
    the model's resize."""
    from .modeling.preprocess import resized_size

    dataset = build_dataset(cfg, "train", training=True)
    pictures = []
    for index in range(min(count, len(dataset))):
        image, target = dataset[(index, index)]
        array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        boxes = target["boxes"].numpy()
        if resize_in_training(cfg):
            from PIL import Image

            h, w = array.shape[:2]
            rh, rw = resized_size(h, w, cfg.input.min_size, cfg.input.max_size)
            array = np.asarray(Image.fromarray(array).resize((rw, rh), Image.BILINEAR))
            boxes = boxes * np.array([rw / w, rh / h, rw / w, rh / h], dtype=np.float32)
        drawn = [(b, dataset.class_names[int(c)], "ground truth", False) for b, c in zip(boxes, target["labels"])]
        pictures.append((f"train_{dataset.ids[index]}", array, drawn))
    return pictures


def _prediction_view(cfg: Config, run_dir: str, errors: Optional[str], count: int,
                     score_thresh: float) -> List[Tuple[str, np.ndarray, List[Box]]]:
    path = os.path.join(run_dir, "detections.json") if os.path.isdir(run_dir) else run_dir
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no detections.json in {run_dir}: point --predictions at a run or eval directory")
    with open(path) as f:
        results = json.load(f)
    dataset = build_dataset(cfg, "val", training=False)
    gt, dets = ground_truth_and_detections(dataset, results)
    found = []
    for index, ((gt_boxes, gt_labels), det) in enumerate(zip(gt, dets)):
        keep = det["scores"] >= score_thresh
        det = {k: v[keep] for k, v in det.items()}
        types, related, missed = classify_detections(gt_boxes, gt_labels, det["boxes"], det["scores"],
                                                     det["labels"])
        if errors is not None:
            hits = int(missed.sum()) if errors == "missed" else types.count(errors)
            if not hits:
                continue
            found.append((-hits, index, gt_boxes, gt_labels, det, types, related, missed))
        else:
            found.append((0, index, gt_boxes, gt_labels, det, types, related, missed))
        if errors is None and len(found) >= count:
            break
    found.sort(key=lambda item: item[:2])  # most errors of the type first, then in image order
    return [_prediction_picture(dataset, *item[1:]) for item in found[:count]]


def _prediction_picture(dataset: CocoDetection, index: int, gt_boxes, gt_labels, det: Dict[str, np.ndarray],
                        types: Sequence[str], related: np.ndarray,
                        missed: np.ndarray) -> Tuple[str, np.ndarray, List[Box]]:
    names = dataset.class_names
    boxes: List[Box] = [(b, f"{names[int(c)]} missed", "missed", True)
                        for b, c, m in zip(gt_boxes, gt_labels, missed) if m]
    for b, s, c, kind, g in zip(det["boxes"], det["scores"], det["labels"], types, related):
        truth = f" (is {names[int(gt_labels[g])]})" if kind in ("classification", "both") else ""
        boxes.append((b, f"{names[int(c)]} {s:.2f}{truth}", kind, False))
    return f"val_{dataset.ids[index]}", dataset.load_image(index), boxes


def _sheet(pictures, title: str, path: str, legend: bool) -> str:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from .figures import subplots

    columns = min(4, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    # at least 8 inches wide, so that the title and the legend fit beside a single image
    fig, axes = subplots(rows, columns, figsize=(max(4 * columns, 8), 4 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, image, boxes) in zip(axes.flat, pictures):
        ax.imshow(image)
        ax.set_title(name, fontsize=8)
        for (x1, y1, x2, y2), caption, kind, dashed in boxes:
            colour = COLOURS[kind]
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5,
                                   linestyle="--" if dashed else "-"))
            ax.text(x1, y1, caption, fontsize=6, color="black", va="bottom",
                    bbox={"facecolor": colour, "alpha": 0.75, "pad": 0.5, "linewidth": 0})
    if legend:
        handles = [Line2D([], [], color=COLOURS[k], lw=2, linestyle="--" if k == "missed" else "-", label=k)
                   for k in ("correct",) + ERROR_TYPES]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if legend else 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    return path
