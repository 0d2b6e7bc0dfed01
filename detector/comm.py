"""What a run needs wherever it runs: the device, the seeds, and the distributed group.

``torchrun --nproc_per_node N -m detector train CONFIG`` sets RANK, WORLD_SIZE and
LOCAL_RANK; :func:`init_distributed` joins the group (NCCL on GPUs, gloo on CPUs). Every layer
may use these helpers (training, evaluation, analysis, the CLI, the benchmarks).
"""
import os
import random
from datetime import timedelta
from typing import Any, List

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``train.device`` (or the option named ``key``) -> a device that exists here (``auto``:
    CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{key}={name} but CUDA is not available here; use {key}=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{key}={name} but this machine has {torch.cuda.device_count()} GPU(s): "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators, for code that draws from them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def launch_rank() -> int:
    """This process's rank as torchrun set it, before the process group is joined."""
    return int(os.environ.get("RANK", "0"))


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device, timeout_min: int = 60) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device
    (``cuda:LOCAL_RANK`` for CUDA runs). A collective that waits ``timeout_min`` minutes for
    another process fails the run."""
    if not launched_by_torchrun() or is_distributed():
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_min))
    return device


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` without DDP)."""
    if not is_distributed():
        return [obj]
    gathered: List[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values)
        values /= get_world_size()
    return values
