"""What a run's numbers depend on besides its config and seed: library versions, the device,
the number of intra-op threads and the CPU's vector kernels.

The thread count matters on the CPU. The same config and seed give bit-identical weights
with the same thread count; another count adds up a few of torch's gradient reductions in
another order, and training from scratch turns that rounding into another model: on the demo,
one thread against two, the weights are 1e-10 apart after two steps, 0.3 % after ten, and the
final AP as far apart as another seed's, up to 11 points (docs/results/README.md). Each run
therefore records, in ``environment.json``, one entry per start or resume, and says so when
a resume changes any of it. Each entry also names the code: the git commit of the checkout the
package runs from, and whether its tracked files had changes (``dirty``), so that a table's runs
can be traced to the code that made them.
"""
import json
import logging
import os
import platform
import subprocess
from typing import Any, Dict, List, Optional

import torch
import torchvision

from ..version import __version__

logger = logging.getLogger(__name__)

FILE = "environment.json"
CODE_KEYS = ("commit", "dirty")  # recorded, but a resume with other code is not warned about
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_version(directory: str = PACKAGE_DIR) -> Dict[str, Optional[object]]:
    """``{"commit": the git commit of the checkout holding ``directory``, "dirty": whether its
    tracked files differ from it}``; both None outside a git checkout (an installed wheel) or
    without git."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def describe(device: torch.device, world_size: int = 1) -> Dict[str, Any]:
    """The settings, besides the config, that a run's result depends on: on the CPU the
    intra-op thread count, on a GPU its model and the CUDA version (there the threads only
    run the data loading)."""
    info = {"detector": __version__, **code_version(), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "device": device.type,
            "world_size": world_size}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["threads"] = torch.get_num_threads()
        # the vector kernels ATen dispatches to (avx2, avx512, ...), and oneDNN's cap when set: the
        # same command and seed differ by several AP between AVX2 and AVX-512 kernels
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if os.environ.get("ONEDNN_MAX_CPU_ISA"):
            info["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    return info


def read(output_dir: str) -> List[Dict[str, Any]]:
    """The entries of ``output_dir/environment.json``, oldest first; [] when there is none."""
    path = os.path.join(output_dir, FILE)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)


def record(output_dir: str, iteration: int, info: Dict[str, Any]) -> None:
    """Add ``info`` as the entry for a start (``iteration`` 0) or a resume, and warn when a
    resume runs in another environment than the run started in: its result will not be the
    one an uninterrupted run would have reached."""
    entries = [e for e in read(output_dir) if e["iteration"] < iteration]  # a restart from earlier replaces
    if entries:
        first = {k: v for k, v in entries[0].items() if k != "iteration"}
        changed = {k: (first.get(k), v) for k, v in info.items() if first.get(k) != v and k not in CODE_KEYS}
        if changed:
            logger.warning("resuming at iteration %d with %s: the result will differ from an uninterrupted "
                           "run", iteration, ", ".join(f"{k}={new} (started with {old})"
                                                       for k, (old, new) in changed.items()))
    entries.append({"iteration": iteration, **info})
    with open(os.path.join(output_dir, FILE), "w") as f:
        json.dump(entries, f, indent=1)
