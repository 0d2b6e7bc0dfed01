"""Our R50-FPN alone, to compare two versions of the code on one machine: the median seconds
of 7 inference passes (800x1333, batch 1, eval, about 1 % of (anchor, class) pairs over the
threshold) and of 5 training steps (512 px, batch 2, SGD), printed on one line.

    PYTHONPATH=/path/to/other/checkout python -m benchmarks.own_speed before
    python -m benchmarks.own_speed after

Run the two in alternation a few times: on a shared machine the speed of both drifts.
"""
import statistics
import sys
import time

import torch

from detector.config import load_config
from detector.modeling import build_model

PRESET = "configs/retinanet/retinanet_r50_fpn_torchvision.yaml"


def main(label: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(PRESET, ["input.min_size=800", "input.max_size=1333"])).eval()
    with torch.no_grad():
        model.head.cls_score.bias.fill_(-4.0)  # few candidates, as a trained model has
    image = [torch.rand(3, 800, 1333, generator=torch.Generator().manual_seed(1))]
    times = []
    with torch.inference_mode():
        model(image)
        for _ in range(7):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
    inference = statistics.median(times)
    model.train()
    images = [torch.rand(3, 512, 512) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 20, 200, 300], [50, 60, 400, 500]]), "labels": torch.tensor([1, 5])}] * 2
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        optimizer.zero_grad()
        sum(model(images, [dict(t) for t in targets]).values()).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    print(f"{label} inference {inference:.3f} s, train step {statistics.median(times[1:]):.3f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
