"""Loss path: matching, classification loss and box loss, forward and backward, on fixed head
outputs (640 px, batch 4), against torchvision's ``compute_loss``."""
from typing import List

import torch

from benchmarks.common import alternate, assert_close, build_pair, head_outputs, random_targets, row


def _ours_loss(ours, logits, deltas, anchors, targets):
    level_sizes = ours.anchor_generator.level_sizes([(640 // s, 640 // s) for s in (8, 16, 32, 64, 128)])
    losses = ours.losses(logits, deltas, anchors, level_sizes, targets)
    return losses["loss_cls"], losses["loss_box"]


def _tv_loss(tv, logits, deltas, tv_anchors, targets):
    losses = tv.compute_loss(targets, {"cls_logits": logits, "bbox_regression": deltas}, tv_anchors)
    return losses["classification"], losses["bbox_regression"]


def run(args) -> List[dict]:
    n, size = 4, 640
    tv, ours = build_pair(size, size)
    logits, deltas, anchors, tv_anchors = head_outputs(tv, ours, n, size)
    targets = random_targets(n, size, size, boxes_per_image=8)

    # Same numbers, image by image (torchvision divides each image's loss by its own
    # foreground count and averages; ours divides the batch's sum by the batch's count,
    # so the two agree exactly for one image), with the gradients of the first image.
    checks = []
    for i in range(n):
        x1, d1 = logits[i:i + 1].clone().requires_grad_(), deltas[i:i + 1].clone().requires_grad_()
        x2, d2 = logits[i:i + 1].clone().requires_grad_(), deltas[i:i + 1].clone().requires_grad_()
        cls1, box1 = _ours_loss(ours, x1, d1, anchors, targets[i:i + 1])
        cls2, box2 = _tv_loss(tv, x2, d2, tv_anchors[i:i + 1], targets[i:i + 1])
        checks.append(assert_close(f"image {i} losses", torch.stack([cls1, box1]),
                                   torch.stack([cls2, box2]), 1e-4, 0))
        if i == 0:
            (cls1 + box1).backward()
            (cls2 + box2).backward()
            assert_close("logit gradients", x1.grad, x2.grad, 1e-4, 1e-9)
            assert_close("delta gradients", d1.grad, d2.grad, 1e-4, 1e-9)

    x1, d1 = logits.clone().requires_grad_(), deltas.clone().requires_grad_()
    x2, d2 = logits.clone().requires_grad_(), deltas.clone().requires_grad_()

    def run_ours():
        x1.grad = d1.grad = None
        sum(_ours_loss(ours, x1, d1, anchors, targets)).backward()

    def run_tv():
        x2.grad = d2.grad = None
        sum(_tv_loss(tv, x2, d2, tv_anchors, targets)).backward()

    t = alternate({"ours": run_ours, "tv": run_tv}, args.repeats * 3)
    setting = f"R50-FPN {size}x{size}, batch {n}, 91 classes, 8 boxes/img, fwd+bwd"
    return [row("loss path", setting, t["ours"], t["tv"], 4.0,
                check=f"per-image losses and gradients equal (rtol 1e-4), {len(checks)} images")]
