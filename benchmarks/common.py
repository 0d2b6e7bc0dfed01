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
from typing import Callable, Dict, List, Sequence

import torch
import torchvision
from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detector.config import load_config
from detector.modeling import build_model
from detector.modeling.convert import convert_torchvision_retinanet

TORCHVISION_PRESET = "configs/retinanet/retinanet_r50_fpn_torchvision.yaml"
NUM_CLASSES = 91


def build_pair(min_size: int, max_size: int, overrides: Sequence[str] = (), seed: int = 0):
    """(torchvision RetinaNet R50-FPN, ours) with identical weights, both in train mode."""
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(resnet, 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    tv = TorchvisionRetinaNet(backbone, NUM_CLASSES, min_size=min_size, max_size=max_size)
    cfg = load_config(TORCHVISION_PRESET, [f"input.min_size={min_size}", f"input.max_size={max_size}",
                                           *overrides])
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
