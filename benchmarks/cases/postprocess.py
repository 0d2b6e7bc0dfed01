"""Post-processing: scores, threshold, top-k per level, decode, NMS for a batch of 4 at
640 px, against torchvision's ``postprocess_detections``."""
from typing import List

import torch

from benchmarks.common import alternate, build_pair, head_outputs, row, same_detections
from detector.modeling.postprocess import postprocess_detections


def run(args) -> List[dict]:
    n, size = 4, 640
    tv, ours = build_pair(size, size)
    tv.eval()
    ours.eval()
    logits, deltas, anchors, tv_anchors = head_outputs(tv, ours, n, size)
    logits -= 1.4  # about 8,000 candidates over the 0.05 threshold per image, most of them background
    shapes = [(size // s, size // s) for s in (8, 16, 32, 64, 128)]
    level_sizes = ours.anchor_generator.level_sizes(shapes)
    image_sizes = [(size, size)] * n

    def run_ours():
        return postprocess_detections(
            logits, ours.class_scores, deltas, anchors, level_sizes, image_sizes, ours.box_coder,
            ours.score_thresh, ours.topk_candidates, ours.nms_thresh, ours.max_detections_per_image,
            ours.min_logit(ours.score_thresh))

    def run_tv():  # what torchvision's RetinaNet.forward does between the head and the resize back
        outputs = {"cls_logits": logits, "bbox_regression": deltas}
        split = {k: list(v.split(level_sizes, dim=1)) for k, v in outputs.items()}
        split_anchors = [list(a.split(level_sizes)) for a in tv_anchors]
        return tv.postprocess_detections(split, split_anchors, image_sizes)

    with torch.inference_mode():
        check = same_detections(run_tv(), run_ours())
        t = alternate({"ours": run_ours, "tv": run_tv}, args.repeats * 3)
    setting = f"R50-FPN {size}x{size}, batch {n}, 91 classes, eval"
    return [row("post-processing", setting, t["ours"], t["tv"], 2.0, check=check)]
