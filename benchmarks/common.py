"""What every benchmark case shares: the two models with the same weights, inputs, timing
and peak-memory measurement.

The torchvision model is built the way ``retinanet_resnet50_fpn`` builds it when it starts
from ImageNet weights (frozen BatchNorm, the stem and res2 frozen), without downloading
anything; ours is ``configs/retinanet/retinanet_r50_fpn_torchvision.yaml`` with that
model's weights converted, so both compute the same function.
"""
import gc
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torchvision
from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detector.config import load_config
from detector.export import compare_detections
from detector.modeling import build_model
from detector.modeling.convert import convert_torchvision_retinanet

TORCHVISION_PRESET = "configs/retinanet/retinanet_r50_fpn_torchvision.yaml"
# Ours with its CPU-friendly switch (torchvision has none), in the rows that say so.
OURS_OVERRIDES = ["model.channels_last=true"]
NUM_CLASSES = 91


def build_pair(min_size: int, max_size: int, overrides: Sequence[str] = (), seed: int = 0,
               num_classes: int = NUM_CLASSES):
    """(torchvision RetinaNet R50-FPN, ours) with identical weights, both in train mode."""
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(resnet, 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    tv = TorchvisionRetinaNet(backbone, num_classes, min_size=min_size, max_size=max_size)
    cfg = load_config(TORCHVISION_PRESET, [f"input.min_size={min_size}", f"input.max_size={max_size}",
                                           f"model.num_classes={num_classes}", *overrides])
    ours = build_model(cfg)
    ours.load_state_dict(convert_torchvision_retinanet(tv.state_dict()))
    return tv, ours


def random_images(num: int, height: int, width: int, seed: int = 1) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, height, width, generator=g) for _ in range(num)]


def random_targets(num: int, height: int, width: int, boxes_per_image: int = 8,
                   seed: int = 2) -> List[Dict[str, torch.Tensor]]:
    """Boxes of 16..40% of the image side, labels in 1..90 (COCO's id range)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float32)
    targets = []
    for _ in range(num):
        wh = (0.16 + 0.24 * torch.rand(boxes_per_image, 2, generator=g)) * size
        xy = torch.rand(boxes_per_image, 2, generator=g) * (size - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(1, NUM_CLASSES, (boxes_per_image,), generator=g)})
    return targets


def alternate(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> Dict[str, float]:
    """Median seconds per call of each function, calls interleaved (a, b, a, b, ...) so that
    a slow phase of the machine costs both sides alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensor memory allocated while ``fn`` runs, above what was live before.

    CUDA: the caching allocator's counters. CPU: the profiler's record of every allocation
    and free, replayed in order.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Kineto's raw "[memory]" records: +bytes per allocation, -bytes per free, timestamped.
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


class CheckFailed(Exception):
    """Ours and the reference do not compute the same numbers: the case is not timed."""


def row(name: str, setting: str, ours_s: float, ref_s: float, target: Optional[float], reference="torchvision",
        check: str = "") -> dict:
    """A timing row: ratio = reference time / our time (above 1: we are faster); ``target``
    None: measured, with no target set."""
    ratio = ref_s / ours_s
    return {"case": name, "setting": setting, "reference": reference, "ours_s": ours_s, "reference_s": ref_s,
            "ratio": ratio, "target": "-" if target is None else f">= {target}x",
            "met": None if target is None else ratio >= target, "check": check}


def assert_close(name: str, got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> str:
    try:
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)
    except AssertionError as e:
        raise CheckFailed(f"{name}: ours and the reference differ, not timing it:\n{e}") from None
    return f"{name} equal (rtol {rtol:g}, atol {atol:g})"


def same_detections(expected: List[dict], got: List[dict], near_ties: bool = False) -> str:
    """Per image, the same detections in any order among equal scores (the export's comparator,
    :func:`detector.export.compare_detections`: labels equal, boxes within 1e-3 px, scores within
    2e-4 relative). With ``near_ties`` (random weights that put almost every pair over the
    threshold, thousands of candidates within float rounding of each other), rounding may pick
    one near-tied candidate for another: then the counts and the sorted scores must agree and at
    least 95 % of the detections must have their counterpart; the share is reported."""
    matched = total = 0
    for i, (e, g) in enumerate(zip(expected, got)):
        e, g = ({k: v.detach().cpu().numpy() for k, v in d.items()} for d in (e, g))
        if len(e["boxes"]) != len(g["boxes"]):
            raise CheckFailed(f"image {i}: the reference keeps {len(e['boxes'])} detections, ours {len(g['boxes'])}")
        problems, _, _ = compare_detections(g, e, box_atol=1e-3, score_rtol=2e-4)
        if problems and not near_ties:
            raise CheckFailed(f"image {i}: " + "; ".join(problems[:3]))
        if near_ties and not np.allclose(np.sort(e["scores"]), np.sort(g["scores"]), rtol=0, atol=1e-5):
            raise CheckFailed(f"image {i}: the scores differ")
        matched, total = matched + len(e["boxes"]) - len(problems), total + len(e["boxes"])
    if matched < (0.95 if near_ties else 1.0) * total:
        raise CheckFailed(f"only {matched} of {total} detections are the reference's")
    if matched == total:
        return f"same detections ({total} in {len(expected)} images)"
    return (f"same scores; {matched} of {total} boxes identical, the others near-tied candidates that float rounding "
            "ordered differently")


def head_outputs(tv, ours, num_images: int, size: int):
    """Fixed head outputs for a batch: logits around the prior (mostly easy negatives, as
    in training), small box deltas, and the anchors of both models (checked equal)."""
    from torchvision.models.detection.image_list import ImageList

    features = [torch.zeros(num_images, 256, size // s, size // s) for s in (8, 16, 32, 64, 128)]
    anchors = ours.anchor_generator((size, size), [tuple(f.shape[-2:]) for f in features], torch.device("cpu"))
    image_list = ImageList(torch.zeros(num_images, 3, size, size), [(size, size)] * num_images)
    tv_anchors = tv.anchor_generator(image_list, features)
    assert_close("anchors", tv_anchors[0], anchors, 0, 0)
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(num_images, anchors.shape[0], 91, generator=g) - 4.6
    deltas = 0.1 * torch.randn(num_images, anchors.shape[0], 4, generator=g)
    return logits, deltas, anchors, tv_anchors
