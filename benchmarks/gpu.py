"""GPU throughput, memory and host syncs, ours against torchvision's RetinaNet R50-FPN on the
same weights: ``bash benchmarks/gpu.sh`` (defaults: 800x1333, training batch 16 in bf16,
inference batch 8), or ``python -m benchmarks.gpu --device cpu --size 128 --batch 2`` to
try the script on a CPU.

Two kinds of rows:

- **The trainer as users run it**: ``Trainer.step`` fed by the training loader (synthetic
  PNGs decoded by workers, pinned uint8 batches), against torchvision's reference training loop
  (``references/detection/engine.py``: float images from pageable memory, the loss read on the
  host every step, a GradScaler in float16) over the same images, same model and dtype. First
  with the trainer's defaults (no cudnn.benchmark, no channels_last), then with both switched on
  for ours, the reference unchanged: the flattering setting stands beside the ordinary one.
- **One bare step**: forward, backward and SGD on a fixed batch already on the device, with
  cudnn.benchmark and ours channels_last (the flattering setting), inference images/s, peak
  memory, and host-device synchronisations per step counted with
  ``torch.cuda.set_sync_debug_mode`` (CUDA only).
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional

import torch

from benchmarks.common import TORCHVISION_PRESET, build_pair, peak_memory, random_images, random_targets
from detector.config import load_config
from detector.data import CocoDetection, batches, build_train_loader, make_synthetic_dataset
from detector.data.loader import collate
from detector.engine.trainer import Trainer, compile_dense_layers

SYNTHETIC_CLASSES = 4  # make_synthetic_dataset's shapes


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


class _FloatImages(torch.utils.data.Dataset):
    """The reference's dataset: float images in 0..1 (torchvision's PILToTensor + ToDtype)."""

    def __init__(self, dataset: CocoDetection) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        image, target = self.dataset[index]
        return image.float().div_(255), target


def trainer_rows(args, device: torch.device, dtype: torch.dtype, data_dir: str) -> Dict[str, Dict[str, float]]:
    """Images/s of ``Trainer.step`` fed by our loader (ordinary, then flattering) and of
    torchvision's reference training loop over the same images."""
    size = args.size or args.height
    images = args.batch * (args.steps + 2)
    ann = make_synthetic_dataset(data_dir, num_train=images, num_val=1, seed=0, image_size=size,
                                 min_object=size / 12, max_object=size / 3)["train"]
    overrides = [f"output_dir={os.path.join(data_dir, 'run')}", f"data.train.ann_file={ann}",
                 f"data.train.img_dir={os.path.join(data_dir, 'train')}", "data.val.ann_file=",
                 "data.train.transforms=[]", "data.category_ids_as_labels=false",
                 f"model.num_classes={SYNTHETIC_CLASSES}", "model.backbone.weights=null", "model.weights=null",
                 f"input.min_size={size}", f"input.max_size={size}",  # square images, kept at their size
                 f"solver.ims_per_batch={args.batch}", f"data.num_workers={args.workers}",
                 f"train.device={device}", f"train.amp={dtype != torch.float32}",
                 f"train.amp_dtype={'auto' if dtype == torch.float32 else str(dtype).split('.')[-1]}"]
    results: Dict[str, Dict[str, float]] = {}
    for name, extra, benchmark in (("trainer (defaults)", [], False),
                                   ("trainer (cudnn.benchmark, channels_last)", ["model.channels_last=true"], True)):
        torch.backends.cudnn.benchmark = benchmark
        results[name] = {"train_images_per_s": _trainer_loop(load_config(TORCHVISION_PRESET, overrides + extra),
                                                             args, device)}
        print(name, json.dumps(results[name]), flush=True)
    torch.backends.cudnn.benchmark = False
    results["torchvision reference loop"] = {"train_images_per_s": _reference_loop(
        args, device, dtype, CocoDetection(ann, os.path.join(data_dir, "train")), size)}
    print("torchvision reference loop", json.dumps(results["torchvision reference loop"]), flush=True)
    return results


def _trainer_loop(cfg, args, device: torch.device) -> float:
    """Images/s of ``Trainer.step`` fed by the training loader, as ``Trainer._loop`` runs it."""
    trainer = Trainer(cfg, progress=False)
    loader = build_train_loader(cfg, trainer.train_set, args.batch, pin_memory=device.type == "cuda")
    trainer.ddp_model.train()
    with batches(loader) as data:
        return _images_per_second(lambda: trainer.step(*trainer.next_batch(data, 1)), args.batch, args.steps,
                                  device)


def _reference_loop(args, device: torch.device, dtype: torch.dtype, dataset: CocoDetection, size: int) -> float:
    """torchvision's ``references/detection/engine.py::train_one_epoch``, step for step."""
    tv, _ = build_pair(size, size, num_classes=SYNTHETIC_CLASSES)
    tv.to(device).train()
    params = [p for p in tv.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    loader = torch.utils.data.DataLoader(_FloatImages(dataset), batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers, collate_fn=collate)
    stream = iter(loader)

    def step():
        images, targets = next(stream)
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            losses = sum(tv(images, targets).values())
        if not math.isfinite(losses.item()):  # the reference reads the loss every step
            raise RuntimeError("the reference loop's loss is not finite")
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(losses).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses.backward()
            optimizer.step()

    return _images_per_second(step, args.batch, args.steps, device)


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
    parser.add_argument("--workers", type=int, default=8, help="loader workers of the trainer rows")
    parser.add_argument("--no-trainer", action="store_true", help="only the bare-step rows")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    height, width = (args.size, args.size) if args.size else (args.height, args.width)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    autocast = dtype != torch.float32

    benchmark_before = torch.backends.cudnn.benchmark
    loop: Dict[str, Dict[str, float]] = {}
    if not args.no_trainer:
        with tempfile.TemporaryDirectory() as data_dir:
            loop = trainer_rows(args, device, dtype, data_dir)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = True  # the bare-step rows: the flattering setting

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
    ]
    if loop:
        reference = loop["torchvision reference loop"]["train_images_per_s"]
        side = args.size or args.height
        for name in ("trainer (defaults)", "trainer (cudnn.benchmark, channels_last)"):
            ours_ips = loop[name]["train_images_per_s"]
            rows.append(f"| {name} + loader, vs torchvision's reference loop ({side} px PNGs, batch {args.batch}, "
                        f"{args.dtype}, {args.workers} workers) | {ours_ips:.1f} | {reference:.1f} | "
                        f"{ours_ips / reference:.2f}x | - |")
    rows += [
        f"| bare training step, fixed batch on the device, cudnn.benchmark, ours channels_last "
        f"({height}x{width}, batch {args.batch}, {args.dtype}) | "
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
    torch.backends.cudnn.benchmark = benchmark_before
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}")
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "args": vars(args), "results": results,
                       "trainer": loop}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
