"""Training checkpoints: atomic writes, a ``last_checkpoint`` pointer, the RNG states, and
the safe reading of a run's state for ``--resume``. (Model weights alone: ``modeling.weights``.)"""
import errno
import logging
import os
import random
import shutil
import time
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..errors import UserError
from ..serialization import safe_torch_load

logger = logging.getLogger(__name__)

POINTER = "last_checkpoint"
# On a network file system another host may see the new pointer before the file it names (NFS
# caches directory entries for some seconds): --resume waits this long for it before it fails.
APPEAR_WITHIN_S = 30.0


def rng_state(device: torch.device) -> Dict[str, Any]:
    """Python, NumPy and torch RNG states as plain, weights_only-safe data, with the CUDA state
    of the training ``device`` alone: a run resumed where fewer GPUs are visible (another
    ``CUDA_VISIBLE_DEVICES``) finds the one state it needs."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved; the CUDA state goes to the training ``device``.

    Checkpoints written before kept a list of every visible GPU's state: the entry of the
    device's index is taken when there is one."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type != "cuda" or cuda is None:
        return
    if isinstance(cuda, (list, tuple)):  # the older format: one state per visible GPU
        index = device.index or 0
        if index >= len(cuda):
            logger.warning("the checkpoint holds no CUDA RNG state for %s; its generator starts afresh", device)
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)


def save_checkpoint(state: Dict[str, Any], output_dir: str, name: str, keep: int = 0) -> str:
    """Write ``output_dir/name`` atomically and point ``last_checkpoint`` at it.

    The file is written to a temporary name, flushed and fsynced, then renamed: a process
    killed in the middle leaves the previous checkpoint and pointer intact. With ``keep > 0``
    only the newest ``keep`` periodic checkpoints (``model_*.pth`` other than
    ``model_final.pth``) are kept.
    """
    path = os.path.join(output_dir, name)
    _atomic_write(path, lambda f: torch.save(state, f))
    _atomic_write(os.path.join(output_dir, POINTER), lambda f: f.write(name.encode()))
    if keep > 0:
        periodic = sorted(f for f in os.listdir(output_dir)
                          if f.startswith("model_") and f.endswith(".pth") and f != "model_final.pth")
        for old in periodic[:-keep]:
            if old != name:
                os.remove(os.path.join(output_dir, old))
    return path


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (a full disk, a file-size limit); the previous one
    and the ``last_checkpoint`` pointer are untouched."""


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write as RuntimeError ("[enforce fail at inline_container.cc]
        # unexpected pos", "PytorchStreamWriter failed writing file"); any other RuntimeError is a bug.
        if isinstance(e, RuntimeError) and not any(s in str(e) for s in ("inline_container", "StreamWriter")):
            raise
        raise CheckpointWriteError(f"could not write checkpoint {path}: {_write_failure(e, path)}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_failure(error: Exception, path: str) -> str:
    """Why a write failed, in words: from errno when there is one, else from the free space."""
    if getattr(error, "errno", None) == errno.ENOSPC:
        return "no space left on the device"
    if getattr(error, "errno", None) == errno.EDQUOT:
        return "disk quota exceeded (the file system's quota for this user or group; the previous checkpoint is kept)"
    if getattr(error, "errno", None) == errno.EFBIG:
        return "file too large (a file-size limit, ulimit -f)"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    return (f"file too large or no space left on the device ({free / 2 ** 20:.0f} MiB free); the previous "
            "checkpoint is kept")


def last_checkpoint(output_dir: str) -> Optional[str]:
    """The path the ``last_checkpoint`` pointer names, or None when there is none."""
    pointer = os.path.join(output_dir, POINTER)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.read().strip()
    path = os.path.join(output_dir, name)
    deadline = time.monotonic() + APPEAR_WITHIN_S
    while not os.path.isfile(path):
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"{pointer} names {name}, which does not exist in {output_dir} (waited "
                                    f"{APPEAR_WITHIN_S:g} s for a network file system to show it)")
        os.listdir(output_dir)  # a directory read makes an NFS client revalidate its cached entries
        time.sleep(0.5)
    return path


def load_training_state(path: str) -> Dict[str, Any]:
    data = safe_torch_load(path)
    if not isinstance(data, dict) or "model" not in data or "iteration" not in data:
        raise UserError(f"{path} is not a training checkpoint (no model or iteration)")
    return data
