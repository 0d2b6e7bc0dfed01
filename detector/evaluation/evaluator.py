"""Inference over a dataset split and its COCO evaluation, with the files a run writes."""
import json
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import comm
from ..data import CocoDetection, batches, build_eval_loader
from ..figures import plot_confusion_matrix, plot_pr_curves
from ..progress import progress as progress_bar
from .coco_eval import detections_to_coco_results, evaluate_coco, format_table, write_metrics
from .error_types import confusion_matrix

logger = logging.getLogger(__name__)


@torch.no_grad()
def run_inference(model, loader, device: torch.device, desc: str = "inference",
                  progress: bool = True) -> (List[Dict[str, Any]], List[int]):
    """Detections for every image of ``loader`` (on the CPU), with the images' ids."""
    was_training = model.training
    model.eval()
    detections, image_ids = [], []
    with batches(loader) as loaded:
        for images, targets in progress_bar(loaded, total=len(loader), desc=desc, unit="batch",
                                            disable=not progress, leave=False):
            outputs = model([im.to(device, non_blocking=True) for im in images])
            detections += [{k: v.cpu() for k, v in out.items()} for out in outputs]
            image_ids += [t["image_id"] for t in targets]
    model.train(was_training)
    return detections, image_ids


def evaluate(model, cfg, dataset: CocoDetection, output_dir: Optional[str], device: torch.device,
             progress: bool = True) -> Dict[str, Any]:
    """Infer on ``dataset``, then write ``detections.json``, ``metrics.json`` and the plots
    (``pr_curves.png``, ``confusion_matrix.png``; their paths in ``stats["plots"]``) to
    ``output_dir`` (when given) and log the COCO table.

    Under DDP each rank infers on every world_size-th image; rank 0 gathers the detections,
    evaluates and returns the stats, the other ranks return ``{}``.
    """
    rank, world_size = comm.get_rank(), comm.get_world_size()
    indices = list(range(rank, len(dataset), world_size))
    loader = build_eval_loader(cfg, dataset, indices if world_size > 1 else None, pin_memory=device.type == "cuda")
    detections, image_ids = run_inference(model, loader, device, "evaluating", progress)
    results = detections_to_coco_results(detections, image_ids, dataset.label_to_category_id)
    results = [r for part in comm.all_gather_objects(results) for r in part]
    if rank != 0:
        return {}
    stats = evaluate_coco(dataset.coco.dataset, results, cfg.eval.backend)
    stats["plots"] = []
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "detections.json"), "w") as f:
            json.dump(results, f)
        write_metrics(stats, output_dir)
        if stats.get("precision") is not None:
            stats["plots"].append(plot_pr_curves(stats["precision"], dataset.class_names,
                                                 os.path.join(output_dir, "pr_curves.png")))
        matrix = confusion_matrix(*ground_truth_and_detections(dataset, results), dataset.num_classes,
                                  cfg.eval.confusion_score_thresh)
        stats["plots"].append(plot_confusion_matrix(matrix, dataset.class_names, cfg.eval.confusion_score_thresh,
                                                    os.path.join(output_dir, "confusion_matrix.png")))
    logger.info("COCO box evaluation on %s (%d images):\n%s", dataset.ann_file, len(dataset), format_table(stats))
    return stats


def ground_truth_and_detections(dataset: CocoDetection, results: List[Dict[str, Any]]):
    """Per image of ``dataset``: its (boxes, labels) and its detections from COCO-format
    ``results`` as ``{"boxes" xyxy, "scores", "labels"}`` numpy arrays, in label space."""
    by_image: Dict[int, list] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    gt, dets = [], []
    for index, image_id in enumerate(dataset.ids):
        gt.append(dataset.annotations(index))
        rows = by_image.get(image_id, [])
        xywh = np.asarray([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
        dets.append({"boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                     "scores": np.asarray([r["score"] for r in rows], dtype=np.float64),
                     "labels": np.asarray([dataset.category_id_to_label[r["category_id"]] for r in rows],
                                          dtype=np.int64)})
    return gt, dets
