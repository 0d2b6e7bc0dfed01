"""The local launcher: every run a ``detector train`` subprocess here, ``jobs`` at a time,
each on a free device of ``devices`` when they are given, its output in ``run.log``.

SIGTERM or SIGINT to ``ablate`` (Ctrl-C, ``kill``, a scheduler's notice) starts no further run;
each running one gets the signal too (it may have had it already, from the process group),
writes its checkpoint and exits, and ``ablate`` waits for that before it exits: a scheduler that
kills what is left once the job's main process ends loses no save, and the same command run
again resumes the stopped runs."""
import os
import queue
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Sequence, Set

import torch

from ..comm import resolve_device
from ..engine import environment
from ..engine.checkpoint import POINTER
from ..engine.stopping import stop_on_signals
from ..errors import UserError
from .grid import Run
from .runs import finished_before, held_elsewhere, is_finished, load_metrics, start_logged, train_command
from .tables import environment_change, run_environment


class Device(NamedTuple):
    """Where one run trains: ``name`` as the user wrote it; ``visible``, the run's
    ``CUDA_VISIBLE_DEVICES`` (one GPU, as the parent process's own list names it), or None for
    the CPU."""

    name: str
    visible: Optional[str]


def parse_devices(names: Sequence[str], visible: Optional[str] = None, count: Optional[int] = None) -> List[Device]:
    """``--devices`` -> :class:`Device` s. A GPU is an index among the GPUs this process sees
    (``0`` or ``cuda:0``), mapped through the parent's ``CUDA_VISIBLE_DEVICES`` (``visible``,
    default: the environment's; a Slurm allocation sets it), so that the run sees that GPU
    alone; ``cpu`` is the CPU. Anything else, or an index past the ``count`` GPUs seen here
    (default: torch's count), is refused: ``cuda`` alone would hide every GPU from the run,
    which would then train on the CPU without a word."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    count = torch.cuda.device_count() if count is None else count
    parent = [entry.strip() for entry in visible.split(",")] if visible else None
    devices = []
    for name in names:
        if name == "cpu":
            devices.append(Device(name, None))
            continue
        match = re.fullmatch(r"(?:cuda:)?(\d+)", name)
        if match is None:
            raise UserError(f"--devices: '{name}' is not a device; give GPU indices (0,1 or cuda:0,cuda:1) or cpu")
        index = int(match.group(1))
        if index >= count:
            seen = f"{count} GPU(s), 0 to {count - 1}" if count else "no GPU"
            raise UserError(f"--devices: GPU {index} does not exist: this process sees {seen}"
                            + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible else ""))
        devices.append(Device(name, parent[index] if parent else str(index)))
    return devices


class LocalLauncher:
    def __init__(self, jobs: int = 1, devices: Sequence[Device] = ()) -> None:
        self.jobs = max(jobs, 1)
        self.devices = list(devices)

    def launch(self, runs: List[Run], config: str, output_dir: str, overrides: Sequence[str]) -> Optional[int]:
        """Run every unfinished run; each ends done (with its metrics), done before (finished
        before), failed, busy (another process holds its directory: not touched), or, after a
        stop signal, stopped (saved, to resume) or pending (not started). Returns the stop
        signal, or None when every run had its turn."""
        total, finished, started = len(runs), [], time.perf_counter()
        to_start = {run.name for run in runs if not is_finished(os.path.join(output_dir, run.name))}
        warning = self._environment_warning(runs, output_dir, to_start)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

        # A free device for each run, from a pool: the ``jobs`` slots share the devices in turn,
        # and a run gives its device back when it ends (at once when it had finished before).
        free: "queue.Queue[Optional[Device]]" = queue.Queue()
        for slot in range(self.jobs):
            free.put(self.devices[slot % len(self.devices)] if self.devices else None)

        def work(run):
            device = free.get()
            try:
                if stop["signal"] is not None:  # stopping: no new run starts
                    return
                _run_one(run, config, output_dir, overrides, device, stop)
            finally:
                free.put(device)
            finished.append(run)
            timed = [r.seconds for r in finished if r.status in ("done", "failed")]
            left = len(to_start - {r.name for r in finished})  # runs finished before are skipped at once
            eta = (sum(timed) / len(timed)) * left / self.jobs if timed else 0.0
            result = {"failed": f"see {os.path.join(output_dir, run.name, 'run.log')}", "busy": run.note,
                      "stopped": "saved; the same command resumes it"}.get(run.status) \
                or f"AP {100 * run.metrics['AP']:.1f}"
            seed = "" if run.seed is None else f" seed={run.seed}"
            print(f"[{len(finished)}/{total}] {run.point.name}{seed}: {run.status} ({run.seconds:.0f} s) {result}; "
                  f"ETA {eta / 60:.1f} min", flush=True)

        with stop_on_signals() as stop, ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(work, runs))
        print(f"{len(finished)} of {total} runs took {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        return stop["signal"]

    def _environment_warning(self, runs: List[Run], output_dir: str, to_start: Set[str]) -> str:
        """What differs between the environment the finished runs of this table trained in and
        the one the runs started here (those named in ``to_start``) will train in ("" when nothing
        does, or nothing is to start)."""
        if not to_start:
            return ""
        finished = [os.path.join(output_dir, run.name) for run in runs if run.name not in to_start]
        if self.devices:
            device = "cpu" if self.devices[0].visible is None else "cuda"
        else:
            device = runs[0].config.train.device
        try:
            here = environment.describe(resolve_device(device))
        except UserError:  # the runs will fail and say why
            return ""
        return environment_change([run_environment(d) for d in finished], here)


# After a stop signal, a run that has written its checkpoint gets this long to exit; then it is killed.
EXIT_AFTER_SAVE_S = 60.0


def _run_one(run: Run, config: str, output_dir: str, overrides: Sequence[str], device: Optional[Device],
             stop: Dict[str, Optional[int]]) -> None:
    run_dir = os.path.join(output_dir, run.name)
    os.makedirs(run_dir, exist_ok=True)
    if finished_before(run, run_dir) or held_elsewhere(run, run_dir):
        return
    cmd = train_command(config, run_dir, [*overrides, *run.override_args()])
    env = dict(os.environ)
    if device is not None:
        cmd.append(f"train.device={'cpu' if device.visible is None else 'cuda'}")
        if device.visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = device.visible
    start = time.perf_counter()
    code = _wait(start_logged(cmd, run_dir, env), run_dir, stop)
    run.seconds = time.perf_counter() - start
    finished = is_finished(run_dir)
    if code == 0 and finished:
        run.status = "done"
        load_metrics(run, run_dir)
    elif stop["signal"] is not None and not finished:
        run.status = "stopped"  # saved; the same command resumes it
    else:
        run.status = "failed"


def _wait(process: subprocess.Popen, run_dir: str, stop: Dict[str, Optional[int]]) -> int:
    """The run's exit code. Once ``stop["signal"]`` is set, the run gets that signal (it may
    have had it already: a second one changes nothing), finishes its step, saves and exits;
    one still running ``EXIT_AFTER_SAVE_S`` after its checkpoint was written is killed."""
    noticed = None
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if stop["signal"] is None:
            continue
        if noticed is None:
            noticed = time.time()
            process.send_signal(stop["signal"])
        pointer = os.path.join(run_dir, POINTER)
        saved = os.path.getmtime(pointer) if os.path.exists(pointer) else 0.0
        if saved >= noticed and time.time() - saved > EXIT_AFTER_SAVE_S:
            process.kill()
            return process.wait()
