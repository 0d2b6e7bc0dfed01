"""Inference end to end (800x1333, batch 1) against torchvision's, at a trained model's few
percent of candidates and at post-processing's worst case."""
import math
from typing import List, Optional, Sequence

import torch

from benchmarks.common import (
    OURS_OVERRIDES,
    TORCHVISION_PRESET,
    alternate,
    build_pair,
    random_images,
    row,
    same_detections,
)
from detector.config import load_config
from detector.modeling import build_model


def set_candidate_share(tv, ours, images, share: float) -> float:
    """Make the classifiers of both models score like a trained one: spread logits (random
    initial weights give nearly equal scores everywhere, so that float rounding alone decides
    among thousands of near-ties) with biases set so that ``share`` of the (anchor, class)
    pairs of ``images`` score over 0.05; returns the share measured."""
    threshold = math.log(0.05 / 0.95)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        ours.head.cls_score.weight.copy_(torch.randn(ours.head.cls_score.weight.shape, generator=g))
        ours.head.cls_score.bias.zero_()
        batch, _, _ = ours.preprocessor(images)
        logits, _ = ours.head(ours.fpn(ours.backbone(batch)))
        # logits linear in the weight: scale it for a logit spread of 1.5 (a top score near 0.9)
        spread = 1.5 / logits.flatten()[:: max(1, logits.numel() // 4_000_000)].float().std().item()
        ours.head.cls_score.weight.mul_(spread)
        tv.head.classification_head.cls_logits.weight.copy_(ours.head.cls_score.weight)
        flat = logits.flatten() * spread
        cut = flat[:: max(1, flat.numel() // 4_000_000)].float().quantile(1.0 - share).item()
        bias = threshold - cut
        ours.head.cls_score.bias.fill_(bias)
        tv.head.classification_head.cls_logits.bias.fill_(bias)
        return float((flat + bias > threshold).float().mean())


def _inferencerow(args, share: Optional[float], overrides: Sequence[str], switches: str) -> dict:
    """The check runs ours with the preset's defaults, the convolution kernels torchvision runs:
    with switches such as channels_last the NHWC kernels round differently, which reorders
    near-equal scores (with random weights, most of them) and so which boxes survive top-k
    and NMS. The timed model is the same weights with the switches on."""
    height, width = 800, 1333
    tv, ours = build_pair(height, width)
    timed = build_model(load_config(TORCHVISION_PRESET, [f"input.min_size={height}", f"input.max_size={width}",
                                                         *overrides])) if overrides else ours
    tv.eval()
    ours.eval()
    images = random_images(1, height, width)
    if share is None:  # almost every (anchor, class) a candidate: post-processing's worst case
        with torch.no_grad():
            tv.head.classification_head.cls_logits.bias.fill_(-2.0)
            ours.head.cls_score.bias.fill_(-2.0)
        measured = "98%"
    else:
        measured = f"{100 * set_candidate_share(tv, ours, images, share):.1f}%"
    if timed is not ours:
        timed.load_state_dict(ours.state_dict())
        timed.eval()
    with torch.inference_mode():
        check = same_detections(tv(images), ours(images), near_ties=True)
        if timed is not ours:
            check += f" (checked with the preset defaults; timed with {switches})"
        t = alternate({"ours": lambda: timed(images), "tv": lambda: tv(images)}, args.repeats)
    setting = (f"R50-FPN {height}x{width}, batch 1, end to end, {measured} of 18M (anchor, class) pairs over 0.05, "
               f"{switches}")
    return row("inference", setting, t["ours"], t["tv"], 1.2, check=check)


def run(args) -> List[dict]:
    """Three settings: the worst case for post-processing with our switch on (flatters us),
    and a trained model's few percent of candidates with the switch on and with the preset's
    defaults (the ordinary setting)."""
    return [_inferencerow(args, None, OURS_OVERRIDES, "ours channels_last"),
            _inferencerow(args, 0.03, OURS_OVERRIDES, "ours channels_last"),
            _inferencerow(args, 0.03, (), "preset defaults")]
