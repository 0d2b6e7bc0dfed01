"""The local launcher: every run a ``detector train`` subprocess here, ``jobs`` at a time,
each pinned to a device when ``devices`` are given, its output in ``run.log``."""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

from ..comm import resolve_device
from ..engine import environment
from ..errors import UserError
from .grid import Run
from .report import ENVIRONMENT_KEYS, run_environment
from .runs import finished_before, held_elsewhere, is_finished, load_metrics, start_logged, train_command


class LocalLauncher:
    def __init__(self, jobs: int = 1, devices: Sequence[str] = ()) -> None:
        self.jobs = max(jobs, 1)
        self.devices = list(devices)

    def launch(self, runs: List[Run], config: str, output_dir: str, overrides: Sequence[str]) -> None:
        """Run every unfinished run; each ends done (with its metrics), skipped (finished
        before), failed, or busy (another process holds its directory: not touched)."""
        total, finished, started = len(runs), [], time.perf_counter()
        warning = self._environment_warning(runs, output_dir)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

        def work(item):
            index, run = item
            device = self.devices[index % len(self.devices)] if self.devices else None
            _run_one(run, config, output_dir, overrides, device)
            finished.append(run)
            timed = [r.seconds for r in finished if r.status in ("done", "failed")]
            eta = (sum(timed) / len(timed)) * (total - len(finished)) / self.jobs if timed else 0.0
            result = {"failed": f"see {os.path.join(output_dir, run.name, 'run.log')}",
                      "busy": run.note}.get(run.status) or f"AP {100 * run.metrics['AP']:.1f}"
            seed = "" if run.seed is None else f" seed={run.seed}"
            print(f"[{len(finished)}/{total}] {run.point.name}{seed}: {run.status} ({run.seconds:.0f} s) {result}; "
                  f"ETA {eta / 60:.1f} min", flush=True)

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(work, enumerate(runs)))
        print(f"{total} runs took {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    def _environment_warning(self, runs: List[Run], output_dir: str) -> str:
        """What differs between the environment the finished runs of this table trained in and
        the one the runs started here will train in ("" when nothing does, or nothing is to start)."""
        dirs = [os.path.join(output_dir, run.name) for run in runs]
        if all(is_finished(d) for d in dirs):
            return ""
        device = self.devices[0] if self.devices else runs[0].config.train.device
        try:
            here = environment.describe(resolve_device("cuda" if device.isdigit() else device))
        except UserError:  # the runs will fail and say why
            return ""
        return environment_change([run_environment(d) for d in dirs if is_finished(d)], here)


def environment_change(finished: Sequence[Dict[str, str]], here: Dict[str, object]) -> str:
    """A warning when ``here`` (:func:`environment.describe`) differs from the environments of
    the ``finished`` runs (:func:`run_environment`) in a key they recorded."""
    now = {key: str(here.get(key, "")) for key in ENVIRONMENT_KEYS}
    before: Dict[str, set] = {}
    for env in finished:
        for key in ENVIRONMENT_KEYS:
            if env.get(key) and env[key] != now[key]:
                before.setdefault(key, set()).add(env[key])
    if not before:
        return ""
    differences = "; ".join(f"{key} {', '.join(sorted(values))} (here: {now[key] or 'none'})"
                            for key, values in before.items())
    return (f"finished runs of this table trained with {differences}. The runs started here will differ from "
            "theirs as another seed's would, and the table will mix environments: run the rest where the "
            "others ran, or start the table afresh in another directory.")


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
