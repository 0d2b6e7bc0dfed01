"""Training: iteration-based, SGD/AdamW with warmup, AMP, DDP through torchrun, checkpoints
with exact resume, a clean stop on SIGTERM/SIGINT, progress bar, JSON-lines metrics, a plot
of the losses and val AP, and an evaluation at the end.

:meth:`Trainer.step` is one optimisation step, :meth:`Trainer._loop` the loop around it;
what a run records besides (config, environment, anchor statistics) is :meth:`Trainer._record_start`.
"""
import inspect
import json
import logging
import os
import signal
import time
from contextlib import nullcontext
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from .. import comm
from ..analysis.anchor_stats import anchor_statistics, format_anchor_statistics
from ..config import differences, to_dict, to_yaml, training_scale_note
from ..data import DatasetError, batches, build_dataset, build_train_loader
from ..errors import UserError
from ..evaluation import evaluate
from ..figures import plot_training
from ..metadata import CHECKPOINT_KEY, ModelMetadata
from ..modeling import build_model
from ..modeling.weights import describe_mismatch, load_pretrained
from ..progress import progress
from . import environment
from .checkpoint import (
    last_checkpoint,
    load_training_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .lock import DirectoryLock
from .metrics import LogWindow, MetricsWriter
from .optim import build_lr_scheduler, build_optimizer
from .stopping import interrupted, stop_on_signals

logger = logging.getLogger(__name__)


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
    """``train.amp_dtype`` -> the autocast dtype: bfloat16 on CPUs and on GPUs with bfloat16
    hardware (compute capability 8.0 and newer: Ampere, Hopper), float16 (with a gradient
    scaler) on older GPUs such as the T4 (7.5).

    Decided by the run's own device's capability: ``torch.cuda.is_bf16_supported()`` asks the
    current device and counts emulation, so it says yes on a T4."""
    if name == "auto":
        if device.type == "cuda" and not has_bfloat16_hardware(device):
            return torch.float16
        return torch.bfloat16
    if name == "float16" and device.type != "cuda":
        raise UserError("train.amp_dtype=float16 needs CUDA; on the CPU use bfloat16 (or auto)")
    if name == "bfloat16" and device.type == "cuda" and not has_bfloat16_hardware(device):
        logger.warning("train.amp_dtype=bfloat16 on %s (compute capability %d.%d), which has no bfloat16 "
                       "hardware: it is emulated, slowly; train.amp_dtype=auto picks float16 with a scaler",
                       torch.cuda.get_device_name(device), *torch.cuda.get_device_capability(device))
    return getattr(torch, name)


def has_bfloat16_hardware(device: torch.device) -> bool:
    """Whether the GPU ``device`` computes in bfloat16 natively (compute capability >= 8.0)."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def compile_dense_layers(model) -> None:
    """``torch.compile`` the backbone, FPN and head in place (parameter names unchanged, so
    checkpoints stay interchangeable). Matching and losses are left eager: their shapes
    change with every batch's boxes, and the fused focal loss already is one pass."""
    for module in (model.backbone, model.fpn, model.head):
        module.compile()


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` in DDP. Buffers are not broadcast from rank 0 before every forward: frozen
    BatchNorm's never change, SyncBatchNorm keeps its statistics equal on every rank, and the
    foreground normaliser is averaged over the ranks already (detectron2 makes the same
    choice). Gradients are views into the all-reduce buckets: no copy, less memory."""
    # torch 2.14 calls broadcast_buffers forward_sync_buffers (and warns at the old name)
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True, **no_sync)


class Trainer:
    """Holds what one training run needs; :meth:`run` is the loop."""

    def __init__(self, cfg, resume: bool = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.output_dir = cfg.output_dir
        self.device = comm.init_distributed(comm.resolve_device(cfg.train.device), cfg.train.dist_timeout_min)
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()
        self.main = self.rank == 0
        self.progress = progress and self.main
        if cfg.solver.ims_per_batch % self.world_size:
            raise UserError(f"solver.ims_per_batch={cfg.solver.ims_per_batch} is not divisible by the "
                            f"{self.world_size} processes")
        comm.seed_everything(cfg.train.seed + self.rank)
        scale_note, warning = training_scale_note(cfg)
        (logger.warning if warning else logger.info)(scale_note)
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
        if self.start_iter == 0 and cfg.model.weights:  # fine-tuning; a resumed run has its own weights
            logger.info("%s", load_pretrained(self.model, cfg.model.weights).describe())
        self.ddp_model = wrap_ddp(self.model, self.device) if self.world_size > 1 else self.model

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
        if state.get("scaler"):  # empty from a run without float16 (bfloat16, float32): the scale starts afresh
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state and self.world_size == 1:
            set_rng_state(state["rng"], self.device)
        logger.info("resumed from %s at iteration %d", path, state["iteration"])
        return int(state["iteration"])

    def checkpoint(self, iteration: int, name: str, alone: bool = False) -> None:
        """Write ``name`` (rank 0) and wait for every rank. ``alone``: a failure that only this
        rank knows of; it writes the checkpoint itself (the weights are the same on every rank)
        and waits for no one, since the others are in a collective it will never join."""
        if alone and os.path.exists(os.path.join(self.output_dir, name)):
            return  # rank 0 saved this step's checkpoint already
        if self.main or alone:
            save_checkpoint({
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "iteration": iteration, "config": to_dict(self.cfg), "rng": rng_state(self.device),
                # what predict and the Python API label with: class names and COCO category ids
                CHECKPOINT_KEY: ModelMetadata.from_label_map(self.train_set.class_names,
                                                             self.train_set.label_to_category_id).to_dict(),
            }, self.output_dir, name, keep=self.cfg.train.keep_checkpoints)
        if not alone:
            comm.barrier()

    def run(self) -> Dict[str, Any]:
        """Train to ``train.max_iter`` and evaluate; returns the final COCO stats ({} without val)."""
        if self.main:
            self._record_start()
        max_iter = self.cfg.train.max_iter
        writer = MetricsWriter(self.output_dir, resume_from=self.start_iter) if self.main else None
        stats: Dict[str, Any] = {}
        try:
            if self.start_iter < max_iter:
                self._loop(writer)
                self.checkpoint(max_iter, "model_final.pth")
            if self.val_set is None:
                logger.info("no data.val.ann_file configured: skipping the final evaluation")
            else:
                stats = evaluate(self.model, self.cfg, self.val_set, self.output_dir, self.device, self.progress)
                if writer is not None:  # the final AP joins the val AP of the evaluations during training
                    writer.write({"iteration": max_iter, **_val_row(stats)})
        finally:
            if writer is not None:
                writer.close()
                plot_training(writer.path, os.path.join(self.output_dir, "loss.png"))
        return stats

    def _record_start(self) -> None:
        """What the run's directory keeps besides its checkpoints: the resolved config, the
        environment (appended at every resume) and, at the start, how imbalanced the data is."""
        with open(os.path.join(self.output_dir, "config.yaml"), "w") as f:
            f.write(to_yaml(self.cfg))
        env = environment.describe(self.device, self.world_size)
        logger.info("environment: %s", ", ".join(f"{k} {v}" for k, v in env.items()))
        environment.record(self.output_dir, self.start_iter, env)
        if self.start_iter == 0:
            stats = anchor_statistics(self.cfg, "train", dataset=self.train_set)
            with open(os.path.join(self.output_dir, "anchor_stats.json"), "w") as f:
                json.dump(stats, f, indent=1)
            logger.info("%s", format_anchor_statistics(stats))

    def _loop(self, writer: Optional[MetricsWriter]) -> None:
        """The training loop, from ``start_iter`` to ``train.max_iter``."""
        cfg, max_iter = self.cfg.train, self.cfg.train.max_iter
        loader = build_train_loader(self.cfg, self.train_set, self.cfg.solver.ims_per_batch // self.world_size,
                                    self.start_iter, self.rank, self.world_size,
                                    pin_memory=self.device.type == "cuda")
        self.ddp_model.train()
        window = LogWindow(self.start_iter, self.output_dir)
        bar = progress(total=max_iter, initial=self.start_iter, desc="training", unit="it", disable=not self.progress)
        iteration = self.start_iter  # steps done
        with stop_on_signals() as stop, batches(loader) as data, bar:
            while iteration < max_iter:
                started = time.perf_counter()
                images, targets = self.next_batch(data, iteration)
                data_seconds = time.perf_counter() - started
                window.add(self.step(images, targets), data_seconds)
                iteration += 1
                bar.update(1)
                stopping = stop["signal"] is not None and self.world_size == 1
                at_checkpoint = iteration % cfg.checkpoint_period == 0
                if iteration % cfg.log_period == 0 or at_checkpoint or iteration == max_iter:
                    row, stopping = window.close(iteration, max_iter, self.optimizer.param_groups[0]["lr"],
                                                 stop["signal"] is not None, self.device)
                    self._log(row, writer, bar)
                    window = LogWindow(iteration, self.output_dir)
                if stopping:  # under DDP a rank may learn it from another: then it has no signal of its own
                    name = f"model_{iteration:07d}.pth"
                    self.checkpoint(iteration, name)
                    raise interrupted(stop["signal"] or signal.SIGTERM, iteration, max_iter,
                                      os.path.join(self.output_dir, name))
                if at_checkpoint and iteration < max_iter:
                    self.checkpoint(iteration, f"model_{iteration:07d}.pth")
                if self.val_set is not None and cfg.eval_period and iteration % cfg.eval_period == 0 \
                        and iteration < max_iter:
                    self._evaluate_during_training(iteration, writer)

    def step(self, images: List[Tensor], targets: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """One optimisation step: forward (under autocast with AMP), backward (scaled for
        float16), gradient clipping, optimizer and learning rate. Returns the losses, still on
        the device: nothing here waits for the host."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            losses = self.ddp_model(images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(losses.values())).backward()
        if self.cfg.solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return losses

    def next_batch(self, data, iteration: int):
        """The next batch, on the device: uint8 images (the model converts them there) copied from
        pinned memory without waiting for the GPU, so that ``data_time`` measures the loader. A data
        error (a damaged image) first saves what was learned, so that the run resumes once the
        file is fixed.

        Under DDP only this rank meets the error, while the others wait in the step's all-reduce:
        it saves alone and exits at once (naming the file), which ends that all-reduce for the
        others (gloo fails it; torchrun stops the ranks of a group whose member exited), with no
        collective added to the steps that go well."""
        try:
            images, targets = next(data)
        except DatasetError as e:
            saved = ""
            if iteration > self.start_iter:
                name = f"model_{iteration:07d}.pth"
                self.checkpoint(iteration, name, alone=self.world_size > 1)
                saved = f"; saved {os.path.join(self.output_dir, name)} (--resume continues once the file is fixed)"
            if self.world_size > 1 or saved:
                who = f"rank {self.rank}: " if self.world_size > 1 else ""
                stop = "; the other processes stop with it" if self.world_size > 1 else ""
                raise DatasetError(f"{who}{e}{saved}{stop}") from None
            raise
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{"boxes": t["boxes"].to(self.device, non_blocking=True),
                    "labels": t["labels"].to(self.device, non_blocking=True)} for t in targets]
        return images, targets

    def _log(self, row: Dict[str, Any], writer: Optional[MetricsWriter], bar) -> None:
        if writer is not None:
            writer.write(row)
        losses = {k: f"{v:.3f}" for k, v in row.items() if k.startswith("loss")}
        bar.set_postfix(**losses, lr=f"{row['lr']:.2e}")

    def _evaluate_during_training(self, iteration: int, writer: Optional[MetricsWriter]) -> None:
        stats = evaluate(self.model, self.cfg, self.val_set, None, self.device, self.progress)
        if writer is not None:
            writer.write({"iteration": iteration, **_val_row(stats)})
        self.ddp_model.train()


def _val_row(stats: Dict[str, Any]) -> Dict[str, float]:
    return {f"val/{k}": v for k, v in stats.items() if isinstance(v, float)}


def train(cfg, resume: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Train ``cfg`` in ``cfg.output_dir``; returns the final COCO stats (empty without val).

    The directory is locked for the run (under torchrun by rank 0): a second run started on
    it stops with :class:`~detector.engine.lock.DirectoryInUse` before it writes anything."""
    prepare_output_dir(cfg.output_dir)
    main = comm.launch_rank() == 0
    with DirectoryLock(cfg.output_dir, "training run") if main else nullcontext():
        package_logger = logging.getLogger("detector")
        log_file = logging.FileHandler(os.path.join(cfg.output_dir, "log.txt")) if main else None
        if log_file is not None:
            log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            package_logger.addHandler(log_file)
        else:  # rank-0 logging only, from the first line on: the other ranks say only what goes wrong
            package_logger.setLevel(logging.WARNING)
        try:
            return Trainer(cfg, resume=resume, progress=progress).run()
        finally:
            if log_file is not None:
                package_logger.removeHandler(log_file)
                log_file.close()
            comm.shutdown()
