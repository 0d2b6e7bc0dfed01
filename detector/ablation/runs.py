"""The runs of an ablation: one (point, seed) each, a ``detector train`` process in its own
directory, finished when its ``metrics.json`` exists."""
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from ..engine.lock import holder
from .grid import Run


def train_command(config: str, run_dir: str, overrides: Sequence[str], gpus: int = 1) -> List[str]:
    """The training command of one run; torchrun spreads it over ``gpus`` processes. It resumes,
    so that the same command continues an interrupted run."""
    if gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                    "-m", "detector"]
    else:
        launcher = [sys.executable, "-m", "detector"]
    return [*launcher, "train", config, "--output-dir", run_dir, "--resume", *overrides]


def is_finished(run_dir: str) -> bool:
    return os.path.isfile(os.path.join(run_dir, "metrics.json"))


def load_metrics(run: Run, run_dir: str) -> None:
    with open(os.path.join(run_dir, "metrics.json")) as f:
        run.metrics = json.load(f)


def finished_before(run: Run, run_dir: str) -> bool:
    """True when ``run`` finished before this launch: it is marked "done before", with its metrics."""
    if not is_finished(run_dir):
        return False
    run.status = "done before"
    load_metrics(run, run_dir)
    return True


def held_elsewhere(run: Run, run_dir: str) -> bool:
    """True when another process (an ablation, a train by hand) holds the run's directory: the
    run is marked busy, its note says by whom, and nothing here touches it."""
    held_by = holder(run_dir)
    if held_by is None:
        return False
    run.status, run.note = "busy", f"in use by {held_by}"
    return True


def start_logged(command: List[str], run_dir: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start ``command`` with its output appended to ``run_dir/run.log``, after a line that
    says what ran (a resumed run's log holds every start)."""
    with open(os.path.join(run_dir, "run.log"), "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def collect(runs: Sequence[Run], output_dir: str) -> None:
    """Start nothing: the finished runs get their metrics, the others stay pending (or busy,
    while a process holds their directory), for the tables of a study still running."""
    for run in runs:
        run_dir = os.path.join(output_dir, run.name)
        if not finished_before(run, run_dir):
            held_elsewhere(run, run_dir)
