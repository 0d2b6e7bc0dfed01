"""COCO evaluation (hotcoco, faster-coco-eval or pycocotools), with TIDE error analysis and calibration."""
from .coco_eval import STAT_NAMES, detections_to_coco_results, evaluate_coco, format_table, write_metrics
from .evaluator import evaluate, run_inference

__all__ = ["STAT_NAMES", "detections_to_coco_results", "evaluate", "evaluate_coco", "format_table",
           "run_inference", "write_metrics"]
