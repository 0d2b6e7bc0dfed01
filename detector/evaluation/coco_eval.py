"""COCO box evaluation: detections -> results json -> COCOeval -> the 12 stats by name, plus
the error analysis of every evaluation.

The backend (``eval.backend``) is hotcoco (a Rust COCOeval), faster-coco-eval or pycocotools,
the reference; ``auto`` takes the first of them that is installed. All three give the same 12
numbers (the tests check it). hotcoco, a dependency, also decomposes the errors as TIDE does
(the AP that fixing classification, localisation, both, duplicate, background and missed
errors would add) and measures the calibration of the scores (expected calibration error):
what a loss does to background false positives, the focal loss's claim, shows there.
"""
import contextlib
import copy
import importlib.util
import io
import json
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np

from ..config import EVAL_BACKENDS
from ..errors import require

logger = logging.getLogger(__name__)
logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it logs every COCOeval line at INFO

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS = EVAL_BACKENDS  # declared with the config; a backend is named as its module
TIDE_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def resolve_backend(backend: str) -> str:
    """``eval.backend`` -> the module that evaluates: ``auto`` is the first one installed."""
    if backend == "auto":
        return next(b for b in BACKENDS[1:] if _installed(b))
    if backend == "faster_coco_eval":  # the one backend that is not a dependency
        require(backend, "fast", "eval.backend=faster_coco_eval")
    return backend


def _coco_and_eval(backend: str, gt: Dict[str, Any]):
    """The backend's ground-truth COCO object for ``gt`` and its COCOeval class."""
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "hotcoco":
            from hotcoco import COCO, COCOeval

            return COCO(copy.deepcopy(gt)), COCOeval
        if backend == "faster_coco_eval":
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
    return coco_gt, COCOeval


def error_analysis(evaluator) -> Dict[str, Any]:
    """TIDE's error decomposition and the score calibration of an evaluated hotcoco COCOeval:
    ``{"tide": {"delta_ap": {type: AP gained if fixed}, "counts": {type: n}, "ap50": base},
    "calibration": {"ece", "mce", "num_detections"}}``, at IoU 0.5, APs as fractions."""
    with contextlib.redirect_stdout(io.StringIO()):
        tide = evaluator.tide_errors(pos_thr=0.5, bg_thr=0.1)
        calibration = evaluator.calibration(n_bins=10, iou_threshold=0.5)
    return {
        "tide": {"delta_ap": {k: float(tide["delta_ap"][k]) for k in TIDE_ERRORS},
                 "counts": {k: int(tide["counts"][k]) for k in TIDE_ERRORS}, "ap50": float(tide["ap_base"])},
        "calibration": {"ece": float(calibration["ece"]), "mce": float(calibration["mce"]),
                        "num_detections": int(calibration["num_detections"])},
    }


def evaluate_coco(gt: Dict[str, Any], results: List[Dict[str, Any]], backend: str = "auto",
                  class_names: Optional[Dict[int, str]] = None, analysis: bool = True) -> Dict[str, Any]:
    """COCO box evaluation of ``results`` (COCO results format) against the ``gt`` dataset dict.

    Returns ``{"AP": .., ..., "ARl": .., "per_class_AP": {name: AP}, "tide": .., "calibration": ..,
    "precision": array}`` where ``precision`` is COCOeval's ``[T, R, K, A, M]`` array (for the
    PR-curve plot) and ``tide`` / ``calibration`` come from :func:`error_analysis` (when
    hotcoco is installed and ``analysis``). With no detections at all every stat is 0.
    """
    backend = resolve_backend(backend)
    coco_gt, COCOeval = _coco_and_eval(backend, gt)
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
    if analysis and _installed("hotcoco"):
        if backend != "hotcoco":  # the decomposition needs hotcoco's own matching of the results
            hot_gt, HotEval = _coco_and_eval("hotcoco", gt)
            evaluator = HotEval(hot_gt, hot_gt.loadRes(copy.deepcopy(results)), "bbox")
            with contextlib.redirect_stdout(io.StringIO()):
                evaluator.evaluate()
        stats.update(error_analysis(evaluator))
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
    if "tide" in stats:
        delta = stats["tide"]["delta_ap"]
        lines += ["", "errors (TIDE, IoU 0.5): AP50 gained if each kind were fixed",
                  "| " + " | ".join(f"{k:>5}" for k in TIDE_ERRORS) + " |   ECE |",
                  "| " + " | ".join(_percent(delta[k]) for k in TIDE_ERRORS)
                  + f" | {stats['calibration']['ece']:.3f} |"]
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
        json.dump({k: v for k, v in stats.items() if k not in ("precision", "plots")}, f, indent=2)
    return path
