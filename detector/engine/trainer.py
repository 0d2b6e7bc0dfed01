"""The training loop: iteration-based, SGD/AdamW with warmup, AMP on CUDA, checkpoints,
resume, progress bar, JSON-lines metrics, a loss plot, and an evaluation at the end."""
import json
import logging
import os
import random
import time
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..config import to_dict, to_yaml
from ..data import build_dataset, build_train_loader
from ..evaluation import evaluate
from ..modeling import build_model
from ..visualization import plot_losses
from .checkpoint import last_checkpoint, load_training_state, rng_state, save_checkpoint, set_rng_state
from .optim import build_lr_scheduler, build_optimizer

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but CUDA is not available here; use train.device=cpu")
    return device


def prepare_output_dir(output_dir: str) -> None:
    """Create ``output_dir`` and check that it can be written, before any work is done."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise OSError(f"output directory {output_dir} is not writable ({e.strerror}); "
                      "pass another one with --output-dir or output_dir=...") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class MetricsWriter:
    """One JSON line per logged step in ``metrics.jsonl``; TensorBoard scalars when installed."""

    def __init__(self, output_dir: str, resume_from: int = 0) -> None:
        self.path = os.path.join(output_dir, "metrics.jsonl")
        if resume_from and os.path.exists(self.path):  # drop lines past the checkpoint we resume from
            with open(self.path) as f:
                lines = [ln for ln in f if json.loads(ln).get("iteration", 0) <= resume_from]
            with open(self.path, "w") as f:
                f.writelines(lines)
        elif not resume_from:
            open(self.path, "w").close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(os.path.join(output_dir, "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def write(self, row: Dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, row["iteration"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class NonFiniteLossError(FloatingPointError):
    pass


def _check_finite(means: Dict[str, float], first: int, last: int, output_dir: str) -> None:
    bad = {k: v for k, v in means.items() if not np.isfinite(v)}
    if bad:
        terms = ", ".join(f"{k}={v}" for k, v in means.items())
        ckpt = last_checkpoint(output_dir)
        raise NonFiniteLossError(
            f"the loss is not finite between iterations {first} and {last} ({terms}). Training "
            f"stopped; nothing past the last checkpoint ({ckpt or 'none yet'}) was saved. Lower "
            "solver.base_lr, raise solver.warmup_iters, set solver.clip_grad_norm, or check the data "
            "(detector check-data)."
        )


def _to_device(images, targets, device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{"boxes": t["boxes"].to(device, non_blocking=True),
                "labels": t["labels"].to(device, non_blocking=True)} for t in targets]
    return images, targets


def train(cfg, resume: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Train ``cfg`` in ``cfg.output_dir``; returns the final COCO stats (empty without val)."""
    from tqdm import tqdm

    output_dir = cfg.output_dir
    prepare_output_dir(output_dir)
    log_file = logging.FileHandler(os.path.join(output_dir, "log.txt"))
    log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("detector").addHandler(log_file)
    try:
        device = resolve_device(cfg.train.device)
        seed_everything(cfg.train.seed)
        train_set = build_dataset(cfg, "train", training=True)
        val_set = build_dataset(cfg, "val", training=False) if cfg.data.val.ann_file else None
        model = build_model(cfg).to(device)
        optimizer = build_optimizer(cfg, model)
        scheduler = build_lr_scheduler(cfg, optimizer)
        amp = cfg.train.amp and device.type == "cuda"
        amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.train.amp_dtype]
        scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

        start_iter = 0
        ckpt_path = last_checkpoint(output_dir) if resume else None
        if resume and ckpt_path is None:
            logger.info("--resume: no checkpoint in %s yet, starting from scratch", output_dir)
        if ckpt_path:
            state = load_training_state(ckpt_path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if "rng" in state:
                set_rng_state(state["rng"])
            start_iter = int(state["iteration"])
            logger.info("resumed from %s at iteration %d", ckpt_path, start_iter)
        with open(os.path.join(output_dir, "config.yaml"), "w") as f:
            f.write(to_yaml(cfg))

        def checkpoint(iteration: int, name: str) -> None:
            save_checkpoint({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "iteration": iteration, "config": to_dict(cfg), "rng": rng_state(),
            }, output_dir, name)

        writer = MetricsWriter(output_dir, resume_from=start_iter)
        max_iter = cfg.train.max_iter
        if start_iter < max_iter:
            loader = build_train_loader(cfg, train_set, cfg.solver.ims_per_batch, start_iter=start_iter)
            _loop(cfg, model, optimizer, scheduler, scaler, loader, device, amp, amp_dtype, start_iter,
                  writer, checkpoint, val_set, progress, tqdm)
        writer.close()
        if not os.path.exists(os.path.join(output_dir, "model_final.pth")) or start_iter < max_iter:
            checkpoint(max_iter, "model_final.pth")
        plot_losses(writer.path, os.path.join(output_dir, "loss.png"))
        if val_set is None:
            logger.info("no data.val.ann_file configured: skipping the final evaluation")
            return {}
        return evaluate(model, cfg, val_set, output_dir, device, progress)
    finally:
        logging.getLogger("detector").removeHandler(log_file)
        log_file.close()


def _loop(cfg, model, optimizer, scheduler, scaler, loader, device, amp, amp_dtype, start_iter, writer,
          checkpoint, val_set, progress, tqdm) -> None:
    max_iter = cfg.train.max_iter
    model.train()
    sums: Dict[str, torch.Tensor] = {}
    window_start, window_time, data_time, count = start_iter, time.perf_counter(), 0.0, 0
    data_iter = iter(loader)
    bar = tqdm(total=max_iter, initial=start_iter, desc="training", unit="it", disable=not progress,
               dynamic_ncols=True)
    for iteration in range(start_iter, max_iter):
        t0 = time.perf_counter()
        images, targets = next(data_iter)
        images, targets = _to_device(images, targets, device)
        data_time += time.perf_counter() - t0
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if cfg.solver.clip_grad_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.solver.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        for key, value in losses.items():  # detached sums stay on the device: no sync per step
            sums[key] = sums.get(key, 0) + value.detach()
        count += 1
        done = iteration + 1
        at_checkpoint = done % cfg.train.checkpoint_period == 0
        if done % cfg.train.log_period == 0 or at_checkpoint or done == max_iter:
            means = {k: float(v) / count for k, v in sums.items()}
            _check_finite(means, window_start + 1, done, cfg.output_dir)
            elapsed = time.perf_counter() - window_time
            row = {"iteration": done, "loss": sum(means.values()), **means,
                   "lr": optimizer.param_groups[0]["lr"], "time": elapsed / count, "data_time": data_time / count,
                   "eta_seconds": elapsed / count * (max_iter - done)}
            writer.write(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", **{k: f"{v:.3f}" for k, v in means.items()},
                            lr=f"{row['lr']:.2e}")
            sums, window_start, window_time, data_time, count = {}, done, time.perf_counter(), 0.0, 0
        if at_checkpoint and done < max_iter:
            checkpoint(done, f"model_{done:07d}.pth")
        if val_set is not None and cfg.train.eval_period and done % cfg.train.eval_period == 0 and done < max_iter:
            stats = evaluate(model, cfg, val_set, None, device, progress)
            writer.write({"iteration": done, **{f"val/{k}": v for k, v in stats.items()
                                                if isinstance(v, float)}})
            model.train()
        bar.update(1)
    bar.close()
