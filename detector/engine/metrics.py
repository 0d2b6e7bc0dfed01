"""What training logs: the losses of a window of steps, averaged at each logging step over the
steps and the processes, checked to be finite, and written as one JSON line."""
import json
import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import comm
from ..errors import UserError
from ..serialization import read_jsonl
from .checkpoint import last_checkpoint


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the message says what to change."""


class LogWindow:
    """The steps since the last logging step. Their losses are summed on the device, so a step
    never waits for the host; the one sync per window is :meth:`close`."""

    def __init__(self, start_iter: int, output_dir: str) -> None:
        self.start = start_iter
        self.output_dir = output_dir
        self.sums: Dict[str, torch.Tensor] = {}
        self.count = 0
        self.data_seconds = 0.0
        self.started = time.perf_counter()

    def add(self, losses: Dict[str, torch.Tensor], data_seconds: float) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach()
        self.count += 1
        self.data_seconds += data_seconds

    def close(self, iteration: int, max_iter: int, lr: float, stop_requested: bool,
              device: torch.device) -> Tuple[Dict[str, Any], bool]:
        """The log row of the window ending at ``iteration``, and whether any process was asked to
        stop. Under DDP each rank's loss is world_size x its share, so the mean over ranks is the
        batch's; the stop request rides along in the same all-reduce, so that every rank learns
        it at the same step. Raises :class:`NonFiniteLossError` for a NaN or infinite loss."""
        keys = sorted(self.sums)
        stop = torch.tensor([float(stop_requested)], device=device)
        values = comm.mean_over_ranks(torch.cat([torch.stack([self.sums[k] for k in keys]) / self.count,
                                                 stop])).tolist()
        any_stop = values.pop() > 0
        means = dict(zip(keys, values))
        if not all(np.isfinite(v) for v in means.values()):
            terms = ", ".join(f"{k}={v}" for k, v in means.items())
            raise NonFiniteLossError(
                f"the loss is not finite between iterations {self.start + 1} and {iteration} ({terms}). Training "
                f"stopped; nothing past the last checkpoint ({last_checkpoint(self.output_dir) or 'none yet'}) was "
                "saved. Lower solver.base_lr, raise solver.warmup_iters, set solver.clip_grad_norm, or check the "
                "data (detector check-data).")
        seconds = (time.perf_counter() - self.started) / self.count
        row = {"iteration": iteration, "loss": sum(means.values()), **means, "lr": lr, "time": seconds,
               "data_time": self.data_seconds / self.count, "eta_seconds": seconds * (max_iter - iteration)}
        return row, any_stop


class MetricsWriter:
    """One JSON line per logged step in ``metrics.jsonl``; TensorBoard scalars when installed."""

    def __init__(self, output_dir: str, resume_from: int = 0) -> None:
        self.path = os.path.join(output_dir, "metrics.jsonl")
        if resume_from and os.path.exists(self.path):  # drop lines past the checkpoint we resume from
            rows = [row for row in read_jsonl(self.path) if row.get("iteration", 0) <= resume_from]
            tmp = f"{self.path}.tmp.{os.getpid()}"
            with open(tmp, "w") as f:  # replaced whole: a kill in the middle leaves the old file
                f.writelines(json.dumps(row) + "\n" for row in rows)
            os.replace(tmp, self.path)
        elif not resume_from:
            open(self.path, "w").close()
        self.tensorboard: Optional[Any] = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(os.path.join(output_dir, "tensorboard"))
        except ImportError:
            pass

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
