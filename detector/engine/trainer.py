"""The training loop: iteration-based, SGD/AdamW with warmup, AMP on CUDA, DDP through
torchrun, checkpoints with exact resume, a clean stop on SIGTERM/SIGINT, progress bar,
JSON-lines metrics, a loss plot, and an evaluation at the end."""
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .. import evaluation  # the module, not its names: the evaluator imports engine.distributed
from ..analysis.anchor_stats import anchor_statistics, format_anchor_statistics
from ..config import differences, to_dict, to_yaml
from ..data import DatasetError, batches, build_dataset, build_train_loader
from ..data.transforms import training_scale_note
from ..errors import UserError
from ..modeling import build_model
from ..visualization import plot_losses
from . import distributed as comm
from . import environment
from .checkpoint import (
    describe_mismatch,
    last_checkpoint,
    load_training_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .lock import DirectoryLock
from .optim import build_lr_scheduler, build_optimizer

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but CUDA is not available here; use train.device=cpu")
    return device


def prepare_output_dir(output_dir: str) -> None:
    """Create ``output_dir`` and check that it can be written, before any work is done."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, f".write_test.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise OSError(f"output directory {output_dir} is not writable ({e.strerror}); "
                      "pass another one with --output-dir or output_dir=...") from None


def resolve_amp_dtype(name: str, device: torch.device) -> torch.dtype:
    """``train.amp_dtype`` -> the autocast dtype: bfloat16 where the device has it (CPUs,
    Ampere and newer GPUs), float16 (with a gradient scaler) on older GPUs."""
    if name == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if name not in ("bfloat16", "float16"):
        raise UserError(f"train.amp_dtype must be auto, bfloat16 or float16, got '{name}'")
    if name == "float16" and device.type != "cuda":
        raise UserError("train.amp_dtype=float16 needs CUDA; on the CPU use bfloat16 (or auto)")
    return getattr(torch, name)


def compile_dense_layers(model) -> None:
    """``torch.compile`` the backbone, FPN and head in place (parameter names unchanged, so
    checkpoints stay interchangeable). Matching and losses are left eager: their shapes
    change with every batch's boxes, and the fused focal loss already is one pass."""
    for module in (model.backbone, model.fpn, model.head):
        module.compile()


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


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the message says what to change."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was written. ``exit_code`` is 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@contextmanager
def _stop_on_signals(flag: Dict[str, Optional[int]]):
    """While training, SIGTERM and SIGINT only set ``flag["signal"]``: the loop finishes its
    step, writes a checkpoint and stops (under DDP at the next logging step, where all ranks
    agree to stop after the same iteration)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        flag["signal"] = signum

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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


def _resume_command() -> str:
    argv = [a for a in sys.argv[1:] if a != "--resume"]
    return "detector " + " ".join(argv) + " --resume"


class Trainer:
    """Holds what one training run needs; :meth:`run` is the loop."""

    def __init__(self, cfg, resume: bool = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.output_dir = cfg.output_dir
        self.device = comm.init_distributed(resolve_device(cfg.train.device))
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        self.main = self.rank == 0
        self.progress = progress and self.main
        if cfg.solver.ims_per_batch % self.world_size:
            raise UserError(f"solver.ims_per_batch={cfg.solver.ims_per_batch} is not divisible by the "
                            f"{self.world_size} processes")
        seed_everything(cfg.train.seed + self.rank)
        scale_note = training_scale_note(cfg)
        (logger.warning if scale_note.startswith("WARNING") else logger.info)(scale_note)
        self.train_set = build_dataset(cfg, "train", training=True)
        self.val_set = build_dataset(cfg, "val", training=False) if cfg.data.val.ann_file else None
        self.train_set.check_files_exist("train")
        if self.val_set is not None:
            self.val_set.check_files_exist("val")
        model = build_model(cfg)
        if cfg.train.sync_bn and self.world_size > 1:
            if self.device.type != "cuda":
                raise UserError("train.sync_bn needs CUDA (NCCL); gloo on CPUs has no SyncBatchNorm")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.amp = cfg.train.amp
        self.amp_dtype = resolve_amp_dtype(cfg.train.amp_dtype, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)
        if cfg.train.compile:
            compile_dense_layers(self.model)
        self.start_iter = self._resume() if resume else 0
        self.ddp_model = (DistributedDataParallel(self.model, device_ids=[self.device.index]
                                                  if self.device.type == "cuda" else None)
                          if self.world_size > 1 else self.model)

    def _resume(self) -> int:
        path = last_checkpoint(self.output_dir)
        if path is None:
            logger.info("--resume: no checkpoint in %s yet, starting from scratch", self.output_dir)
            return 0
        state = load_training_state(path)
        problem = describe_mismatch(self.model.state_dict(), state["model"])
        if problem:
            changed = [d for d in differences(state.get("config") or {}, to_dict(self.cfg))
                       if d.startswith(("model.", "loss.cls.name"))]
            raise UserError(
                f"--resume: {path} does not fit the model of this config: {problem} The run's checkpoint was "
                "made with another architecture" + (": " + "; ".join(changed) if changed else "") + ". Resume "
                "with the run's own config.yaml, or start a new run in another --output-dir (model.weights "
                "initialises a new run from these weights where they fit)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if "rng" in state and self.world_size == 1:
            set_rng_state(state["rng"])
        logger.info("resumed from %s at iteration %d", path, state["iteration"])
        return int(state["iteration"])

    def checkpoint(self, iteration: int, name: str) -> None:
        if self.main:
            save_checkpoint({
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "iteration": iteration, "config": to_dict(self.cfg), "rng": rng_state(),
            }, self.output_dir, name, keep=self.cfg.train.keep_checkpoints)
        comm.barrier()

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        max_iter = cfg.train.max_iter
        if self.main:
            with open(os.path.join(self.output_dir, "config.yaml"), "w") as f:
                f.write(to_yaml(cfg))
            env = environment.describe(self.device, self.world_size)
            logger.info("environment: %s", ", ".join(f"{k} {v}" for k, v in env.items()))
            environment.record(self.output_dir, self.start_iter, env)
            if self.start_iter == 0:  # how imbalanced the data is, for the record of the run
                stats = anchor_statistics(cfg, "train", dataset=self.train_set)
                with open(os.path.join(self.output_dir, "anchor_stats.json"), "w") as f:
                    json.dump(stats, f, indent=1)
                logger.info("%s", format_anchor_statistics(stats))
        writer = MetricsWriter(self.output_dir, resume_from=self.start_iter) if self.main else None
        try:
            if self.start_iter < max_iter:
                self._loop(writer)
                self.checkpoint(max_iter, "model_final.pth")
        finally:
            if writer is not None:
                writer.close()
        if self.main:
            plot_losses(writer.path, os.path.join(self.output_dir, "loss.png"))
        if self.val_set is None:
            logger.info("no data.val.ann_file configured: skipping the final evaluation")
            return {}
        return evaluation.evaluate(self.model, cfg, self.val_set, self.output_dir, self.device, self.progress)

    def _loop(self, writer: Optional[MetricsWriter]) -> None:
        from tqdm import tqdm

        cfg, model, optimizer, scaler = self.cfg, self.ddp_model, self.optimizer, self.scaler
        max_iter = cfg.train.max_iter
        loader = build_train_loader(cfg, self.train_set, cfg.solver.ims_per_batch // self.world_size,
                                    self.start_iter, self.rank, self.world_size)
        model.train()
        stop: Dict[str, Optional[int]] = {"signal": None}
        sums: Dict[str, torch.Tensor] = {}
        window_start, window_time, data_time, count = self.start_iter, time.perf_counter(), 0.0, 0
        bar = tqdm(total=max_iter, initial=self.start_iter, desc="training", unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        iteration = self.start_iter
        with _stop_on_signals(stop), batches(loader) as data_iter:
            while iteration < max_iter:
                t0 = time.perf_counter()
                try:
                    images, targets = next(data_iter)
                except DatasetError:
                    if iteration > self.start_iter:  # keep what was learned; fix the data, then --resume
                        self.checkpoint(iteration, f"model_{iteration:07d}.pth")
                    raise
                images, targets = _to_device(images, targets, self.device)
                data_time += time.perf_counter() - t0
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    losses = model(images, targets)
                total = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if cfg.solver.clip_grad_norm > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.solver.clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                self.scheduler.step()
                for key, value in losses.items():  # detached sums stay on the device: no sync per step
                    sums[key] = sums.get(key, 0) + value.detach()
                count += 1
                iteration += 1
                at_checkpoint = iteration % cfg.train.checkpoint_period == 0
                logged = iteration % cfg.train.log_period == 0 or at_checkpoint or iteration == max_iter
                stopping = stop["signal"] is not None and self.world_size == 1
                if logged:
                    keys = sorted(sums)
                    # each rank's loss is world_size x its share: the mean over ranks is the batch's.
                    # The last value says whether any rank got a stop signal: under DDP all ranks must
                    # stop after the same step, so they agree here, where the values sync anyway.
                    signalled = torch.tensor([float(stop["signal"] is not None)], device=self.device)
                    values = comm.mean_over_ranks(torch.cat([torch.stack([sums[k] for k in keys]) / count,
                                                             signalled])).tolist()
                    stopping = values.pop() > 0
                    means = dict(zip(keys, values))
                    _check_finite(means, window_start + 1, iteration, self.output_dir)
                    elapsed = time.perf_counter() - window_time
                    row = {"iteration": iteration, "loss": sum(means.values()), **means,
                           "lr": optimizer.param_groups[0]["lr"], "time": elapsed / count,
                           "data_time": data_time / count, "eta_seconds": elapsed / count * (max_iter - iteration)}
                    if writer is not None:
                        writer.write(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", **{k: f"{v:.3f}" for k, v in means.items()},
                                    lr=f"{row['lr']:.2e}")
                    sums, window_start, window_time, data_time, count = {}, iteration, time.perf_counter(), 0.0, 0
                bar.update(1)
                if stopping:
                    bar.close()
                    name = f"model_{iteration:07d}.pth"
                    self.checkpoint(iteration, name)
                    signum = stop["signal"] or signal.SIGTERM  # a rank told by another rank
                    raise TrainingInterrupted(
                        f"{signal.Signals(signum).name} received: stopped after iteration {iteration} of {max_iter} "
                        f"and saved {os.path.join(self.output_dir, name)}. Continue with: {_resume_command()}",
                        signum)
                if at_checkpoint and iteration < max_iter:
                    self.checkpoint(iteration, f"model_{iteration:07d}.pth")
                if (self.val_set is not None and cfg.train.eval_period and iteration % cfg.train.eval_period == 0
                        and iteration < max_iter):
                    stats = evaluation.evaluate(self.model, cfg, self.val_set, None, self.device, self.progress)
                    if writer is not None:
                        writer.write({"iteration": iteration, **{f"val/{k}": v for k, v in stats.items()
                                                                 if isinstance(v, float)}})
                    model.train()
        bar.close()


def train(cfg, resume: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Train ``cfg`` in ``cfg.output_dir``; returns the final COCO stats (empty without val).

    The directory is locked for the run (under torchrun by rank 0): a second run started on
    it stops with :class:`~detector.engine.lock.DirectoryInUse` before it writes anything."""
    prepare_output_dir(cfg.output_dir)
    with DirectoryLock(cfg.output_dir, "training run") if comm.launch_rank() == 0 else nullcontext():
        log_file = logging.FileHandler(os.path.join(cfg.output_dir, "log.txt"))
        log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package_logger = logging.getLogger("detector")
        package_logger.addHandler(log_file)
        try:
            trainer = Trainer(cfg, resume=resume, progress=progress)
            if not trainer.main:  # rank-0 logging only
                package_logger.removeHandler(log_file)
                package_logger.setLevel(logging.WARNING)
            return trainer.run()
        finally:
            package_logger.removeHandler(log_file)
            log_file.close()
            comm.shutdown()
