"""The train loader with 2 workers against the demo's training step it feeds: is loading the
bottleneck?"""
import os
import tempfile
import time
from typing import List

import torch

from benchmarks.common import alternate


def run(args) -> List[dict]:
    from detector.config import load_config
    from detector.data import build_dataset, build_train_loader, make_synthetic_dataset
    from detector.modeling import build_model

    batches = 12
    with tempfile.TemporaryDirectory() as root:
        paths = make_synthetic_dataset(root, num_train=16 * (batches + 2), num_val=1, seed=0)
        cfg = load_config("configs/demo/shapes_focal.yaml", [
            f"data.train.ann_file={paths['train']}", f"data.train.img_dir={os.path.join(root, 'train')}",
            "data.num_workers=2"])
        dataset = build_dataset(cfg, "train", training=True)
        loader = iter(build_train_loader(cfg, dataset, cfg.solver.ims_per_batch))
        images, targets = next(loader)  # workers started
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        loader_rate = batches * cfg.solver.ims_per_batch / (time.perf_counter() - start)
        del loader

    # The step that loader feeds: the demo's model, batch and optimizer settings, on the CPU.
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        sum(model(images, [dict(t) for t in targets]).values()).backward()
        optimizer.step()

    step_s = alternate({"step": step}, args.repeats)["step"]
    step_rate = len(images) / step_s
    return [{"case": "train loader", "setting": "demo config (shapes, 128 px, batch 16): loader with 2 workers "
             "vs the training step it feeds", "reference": "demo training step", "unit": "images/s",
             "ours": loader_rate, "reference_value": step_rate, "ratio": loader_rate / step_rate,
             "target": "> 1x (not the bottleneck)", "met": loader_rate > step_rate,
             "check": f"{batches} batches of {cfg.solver.ims_per_batch} after the first" + (
                 f"; the R50-FPN 512 px training step above runs {args.train_images_per_s:.2f} img/s"
                 if hasattr(args, "train_images_per_s") else "")}]
