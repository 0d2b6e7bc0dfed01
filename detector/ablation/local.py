"""The local launcher: every run a ``detector train`` subprocess here, ``jobs`` at a time,
each pinned to a device when ``devices`` are given, its output in ``run.log``."""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Set

from ..comm import resolve_device
from ..engine import environment
from ..errors import UserError
from .grid import Run
from .report import environment_change, run_environment
from .runs import finished_before, held_elsewhere, is_finished, load_metrics, start_logged, train_command


class LocalLauncher:
    def __init__(self, jobs: int = 1, devices: Sequence[str] = ()) -> None:
        self.jobs = max(jobs, 1)
        self.devices = list(devices)

    def launch(self, runs: List[Run], config: str, output_dir: str, overrides: Sequence[str]) -> None:
        """Run every unfinished run; each ends done (with its metrics), skipped (finished
        before), failed, or busy (another process holds its directory: not touched)."""
        total, finished, started = len(runs), [], time.perf_counter()
        to_start = {run.name for run in runs if not is_finished(os.path.join(output_dir, run.name))}
        warning = self._environment_warning(runs, output_dir, to_start)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

        def work(item):
            index, run = item
            device = self.devices[index % len(self.devices)] if self.devices else None
            _run_one(run, config, output_dir, overrides, device)
            finished.append(run)
            timed = [r.seconds for r in finished if r.status in ("done", "failed")]
            left = len(to_start - {r.name for r in finished})  # runs finished before are skipped at once
            eta = (sum(timed) / len(timed)) * left / self.jobs if timed else 0.0
            result = {"failed": f"see {os.path.join(output_dir, run.name, 'run.log')}",
                      "busy": run.note}.get(run.status) or f"AP {100 * run.metrics['AP']:.1f}"
            seed = "" if run.seed is None else f" seed={run.seed}"
            print(f"[{len(finished)}/{total}] {run.point.name}{seed}: {run.status} ({run.seconds:.0f} s) {result}; "
                  f"ETA {eta / 60:.1f} min", flush=True)

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(work, enumerate(runs)))
        print(f"{total} runs took {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    def _environment_warning(self, runs: List[Run], output_dir: str, to_start: Set[str]) -> str:
        """What differs between the environment the finished runs of this table trained in and
        the one the runs started here (those named in ``to_start``) will train in ("" when nothing
        does, or nothing is to start)."""
        if not to_start:
            return ""
        finished = [os.path.join(output_dir, run.name) for run in runs if run.name not in to_start]
        device = self.devices[0] if self.devices else runs[0].config.train.device
        try:
            here = environment.describe(resolve_device("cuda" if device.isdigit() else device))
        except UserError:  # the runs will fail and say why
            return ""
        return environment_change([run_environment(d) for d in finished], here)


def _run_one(run: Run, config: str, output_dir: str, overrides: Sequence[str], device: Optional[str]) -> None:
    run_dir = os.path.join(output_dir, run.name)
    os.makedirs(run_dir, exist_ok=True)
    if finished_before(run, run_dir) or held_elsewhere(run, run_dir):
        return
    cmd = train_command(config, run_dir, [*overrides, *run.override_args()])
    env = dict(os.environ)
    if device is not None:
        if device.startswith("cuda") or device.isdigit():
            env["CUDA_VISIBLE_DEVICES"] = device.split(":")[-1]
        else:
            cmd.append(f"train.device={device}")
    start = time.perf_counter()
    code = start_logged(cmd, run_dir, env).wait()
    run.seconds = time.perf_counter() - start
    run.status = "done" if code == 0 and is_finished(run_dir) else "failed"
    if run.status == "done":
        load_metrics(run, run_dir)
