"""COCO evaluation of 5000 synthetic images: hotcoco and faster-coco-eval against pycocotools,
the same evaluator on each backend."""
import time
from typing import List

import numpy as np

from benchmarks.common import CheckFailed, row


def synthetic_coco(num_images: int, dets_per_image: int = 100, num_classes: int = 80, seed: int = 0):
    """A COCO ground-truth dict and results list: 1..15 objects per image of all sizes,
    detections that are noisy copies of them (some with the wrong class) plus clutter."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = 640, 480
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        count = int(rng.integers(1, 16))
        wh = np.exp(rng.uniform(np.log(8), np.log(400), (count, 2)))
        xy = rng.uniform(0, 1, (count, 2)) * (np.array([width, height]) - wh).clip(min=1)
        labels = rng.integers(1, num_classes + 1, count)
        for (x, y), (w, h), c in zip(xy, wh, labels):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c),
                                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                                "iscrowd": int(rng.random() < 0.02)})
        source = rng.integers(0, count, dets_per_image)
        noise = rng.normal(0, 0.1, (dets_per_image, 4)) * np.repeat(wh[source], 2, axis=1)
        boxes = np.concatenate([xy[source], wh[source]], 1) + noise
        boxes[:, 2:] = boxes[:, 2:].clip(min=1)
        clutter = rng.random(dets_per_image) < 0.3
        wrong_class = rng.integers(1, num_classes + 1, dets_per_image)
        cats = np.where(rng.random(dets_per_image) < 0.8, labels[source], wrong_class)
        scores = rng.random(dets_per_image) * np.where(clutter, 0.5, 1.0)
        for box, c, score in zip(boxes, cats, scores):
            results.append({"image_id": image_id, "category_id": int(c), "score": round(float(score), 5),
                            "bbox": [round(float(v), 2) for v in box]})
    categories = [{"id": i, "name": f"class_{i}"} for i in range(1, num_classes + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def run(args) -> List[dict]:
    from detector.evaluation.coco_eval import STAT_NAMES, evaluate_coco

    num_images = args.coco_images
    gt, results = synthetic_coco(num_images)
    # The same evaluator on every backend, so only the backend differs (the error analysis,
    # the same hotcoco pass for all, is timed on its own); that its pycocotools backend equals
    # a direct COCOeval call is checked by tests/evaluation/test_coco_eval.py. pycocotools
    # takes over a minute here: one timed call per backend instead of a median.
    stats, seconds = {}, {}
    for backend in ("hotcoco", "faster_coco_eval", "pycocotools"):
        start = time.perf_counter()
        stats[backend] = evaluate_coco(gt, results, backend=backend, analysis=False)
        seconds[backend] = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_coco(gt, results, backend="hotcoco")
    analysis_s = time.perf_counter() - start - seconds["hotcoco"]
    reference = [stats["pycocotools"][name] for name in STAT_NAMES]
    rows = []
    for backend, target in (("faster_coco_eval", 3.0), ("hotcoco", None)):
        ours_stats = [stats[backend][name] for name in STAT_NAMES]
        if ours_stats != reference:
            raise CheckFailed(f"COCO stats differ:\n {backend} {ours_stats}\n pycocotools {reference}")
        check = f"all 12 stats identical (AP {100 * stats[backend]['AP']:.2f})"
        if backend == "hotcoco":
            check += f"; the TIDE + calibration analysis every evaluation adds: {analysis_s:.1f} s"
        setting = f"{num_images} synthetic images x 100 detections, 80 classes, one call each, backend {backend}"
        rows.append(row("COCO evaluation", setting, seconds[backend], seconds["pycocotools"], target,
                        reference="pycocotools", check=check))
    return rows
