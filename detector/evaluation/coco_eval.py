"""COCO box evaluation: detections -> results json -> COCOeval -> the 12 stats by name.

The backend is pycocotools, or faster-coco-eval when it is installed and selected
(``eval.backend: auto | pycocotools | faster_coco_eval``); both compute the same numbers.
"""
import contextlib
import copy
import io
import json
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import UserError

logger = logging.getLogger(__name__)
logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it logs every COCOeval line at INFO

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS = ("auto", "pycocotools", "faster_coco_eval")


def _faster_coco_eval_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"eval.backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if backend == "auto":
        return "faster_coco_eval" if _faster_coco_eval_available() else "pycocotools"
    if backend == "faster_coco_eval" and not _faster_coco_eval_available():
        raise UserError("eval.backend=faster_coco_eval but faster-coco-eval is not installed: "
                        "pip install faster-coco-eval (or the project's 'fast' extra)")
    return backend


def _api(backend: str):
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def evaluate_coco(gt: Dict[str, Any], results: List[Dict[str, Any]], backend: str = "auto",
                  class_names: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
    """COCO box evaluation of ``results`` (COCO results format) against the ``gt`` dataset dict.

    Returns ``{"AP": .., ..., "ARl": .., "per_class_AP": {name: AP}, "precision": array}``
    where ``precision`` is COCOeval's ``[T, R, K, A, M]`` array (for the PR-curve plot).
    With no detections at all every stat is 0.
    """
    backend = resolve_backend(backend)
    COCO, COCOeval = _api(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
    category_ids = sorted(c["id"] for c in gt["categories"])
    names = class_names or {c["id"]: c["name"] for c in gt["categories"]}
    if not results:
        stats = dict.fromkeys(STAT_NAMES, 0.0)
        stats["per_class_AP"] = {names[c]: 0.0 for c in category_ids}
        stats["precision"] = None
        return stats
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats: Dict[str, Any] = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
    precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]
    per_class = {}
    for k, cid in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]  # all areas, maxDets 100
        p = p[p > -1]
        per_class[names[cid]] = float(p.mean()) if p.size else float("nan")
    stats["per_class_AP"] = per_class
    stats["precision"] = precision
    return stats


def detections_to_coco_results(detections: List[Dict[str, Any]], image_ids: List[int],
                               label_to_category_id: Dict[int, int]) -> List[Dict[str, Any]]:
    """Model outputs (boxes xyxy px, labels 0..K-1) -> COCO results (xywh, category ids)."""
    results = []
    for det, image_id in zip(detections, image_ids):
        boxes = det["boxes"].detach().cpu().numpy().astype(np.float64)
        scores = det["scores"].detach().cpu().numpy().astype(np.float64)
        labels = det["labels"].detach().cpu().numpy()
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
            results.append({
                "image_id": int(image_id),
                "category_id": int(label_to_category_id[int(label)]),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(float(score), 5),
            })
    return results


def format_table(stats: Dict[str, Any]) -> str:
    """The 12 stats and per-class AP as a small fixed-width table (values in %)."""
    lines = ["| " + " | ".join(f"{n:>5}" for n in STAT_NAMES) + " |",
             "|" + "|".join(["-------"] * len(STAT_NAMES)) + "|",
             "| " + " | ".join(_percent(stats[n]) for n in STAT_NAMES) + " |"]
    per_class = stats.get("per_class_AP") or {}
    if per_class:
        width = max(len(n) for n in per_class)
        lines += ["", f"{'class':<{width}} | AP"]
        lines += [f"{name:<{width}} | {_percent(ap)}" for name, ap in per_class.items()]
    return "\n".join(lines)


def _percent(value: float) -> str:
    """COCOeval reports -1 where a stat has no ground truth (e.g. no large objects)."""
    return "    -" if value < 0 or value != value else f"{100 * value:5.1f}"


def write_metrics(stats: Dict[str, Any], output_dir: str) -> str:
    path = os.path.join(output_dir, "metrics.json")
    with open(path, "w") as f:
        json.dump({k: v for k, v in stats.items() if k != "precision"}, f, indent=2)
    return path
