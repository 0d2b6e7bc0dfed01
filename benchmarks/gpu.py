"""GPU throughput, memory and host syncs, ours against torchvision's RetinaNet R50-FPN on the
same weights: ``bash benchmarks/gpu.sh`` (defaults: 800x1333, training batch 16 in bf16,
inference batch 8), or ``python -m benchmarks.gpu --device cpu --size 128 --batch 2`` to
try the script on a CPU.

Rows: training images/s (forward, backward, SGD step under autocast), inference images/s,
peak memory of a training step, and host-device synchronisations per training step, counted
with ``torch.cuda.set_sync_debug_mode`` (CUDA only).
"""
import argparse
import json
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional

import torch

from benchmarks.common import build_pair, peak_memory, random_images, random_targets
from detector.engine.trainer import compile_dense_layers


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_second(fn: Callable[[], object], images: int, steps: int, device: torch.device) -> float:
    fn()  # warm-up (cuDNN autotuning, anchor caches, allocator)
    fn()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _synchronize(device)
    return images * steps / (time.perf_counter() - start)


def _count_syncs(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Synchronising CUDA calls made by ``fn`` (each one warns under sync debug mode)."""
    if device.type != "cuda":
        return None
    _synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def _or_na(value) -> str:
    return "n/a (CUDA only)" if value is None else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--size", type=int, help="square inputs of this side (overrides height and width)")
    parser.add_argument("--batch", type=int, default=16, help="training batch")
    parser.add_argument("--infer-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--compile", action="store_true", help="also torch.compile our dense layers")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    height, width = (args.size, args.size) if args.size else (args.height, args.width)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    autocast = dtype != torch.float32
    torch.backends.cudnn.benchmark = True

    tv, ours = build_pair(min(height, width), max(height, width), ["model.channels_last=true"])
    if args.compile:
        compile_dense_layers(ours)
    tv.to(device)
    ours.to(device)
    images = [im.to(device) for im in random_images(args.batch, height, width)]
    targets = [{k: v.to(device) for k, v in t.items()} for t in random_targets(args.batch, height, width)]
    optimizers = {name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
                  for name, m in (("ours", ours), ("torchvision", tv))}

    def train_step(name: str, model) -> Callable[[], None]:
        def fn():
            optimizers[name].zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                losses = model(images, [dict(t) for t in targets])
            sum(losses.values()).backward()
            optimizers[name].step()
        return fn

    def infer(model) -> Callable[[], None]:
        batch = images[:args.infer_batch]

        def fn():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                model(batch)
        return fn

    results: Dict[str, Dict[str, float]] = {}
    for name, model in (("ours", ours), ("torchvision", tv)):
        model.train()
        step = train_step(name, model)
        r = {"train_images_per_s": _images_per_second(step, args.batch, args.steps, device),
             "train_peak_memory_bytes": peak_memory(step, device),
             "host_syncs_per_train_step": _count_syncs(step, device)}
        model.eval()
        r["inference_images_per_s"] = _images_per_second(infer(model), args.infer_batch, args.steps, device)
        results[name] = r
        print(name, json.dumps(r), flush=True)

    ours_r, tv_r = results["ours"], results["torchvision"]
    rows: List[str] = [
        "| metric | ours | torchvision | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| training images/s ({height}x{width}, batch {args.batch}, {args.dtype}) | "
        f"{ours_r['train_images_per_s']:.1f} | {tv_r['train_images_per_s']:.1f} | "
        f"{ours_r['train_images_per_s'] / tv_r['train_images_per_s']:.2f}x | >= 1.5x |",
        f"| inference images/s (batch {args.infer_batch}) | {ours_r['inference_images_per_s']:.1f} | "
        f"{tv_r['inference_images_per_s']:.1f} | "
        f"{ours_r['inference_images_per_s'] / tv_r['inference_images_per_s']:.2f}x | - |",
        f"| peak memory, training step | {ours_r['train_peak_memory_bytes'] / 2**30:.2f} GiB | "
        f"{tv_r['train_peak_memory_bytes'] / 2**30:.2f} GiB | "
        f"{ours_r['train_peak_memory_bytes'] / tv_r['train_peak_memory_bytes']:.2f}x | <= 1.0x |",
        f"| host syncs per training step | {_or_na(ours_r['host_syncs_per_train_step'])} | "
        f"{_or_na(tv_r['host_syncs_per_train_step'])} | - | 0 |",
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}")
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
