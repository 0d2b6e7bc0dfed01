"""``detector ablate``: one full train + eval per (alpha, gamma[, seed]), then a Table-1-style summary.

Each run is ``detector train CONFIG --output-dir OUT/alpha{a}_gamma{g}[_seed{s}] --resume
loss.cls.alpha=a loss.cls.gamma=g [train.seed=s] [KEY=VALUE ...]`` in a process of its own
(logged to ``run.log`` in its directory), so a failing run cannot take the others down. The
local launcher runs them here, ``jobs`` at a time, each pinned to a device; the Slurm
launcher (:mod:`detector.launcher`) submits each as a job. A run whose ``metrics.json``
exists is skipped (collected into the table); an interrupted one resumes from its newest
checkpoint.
"""
import itertools
import json
import logging
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .ablation_report import write_summary
from .errors import UserError
from .launcher import JOB_ID_FILE, SlurmOptions, TrainJob, job_is_active, make_executor, train_command

logger = logging.getLogger(__name__)

GRID_DIRS = (os.path.join("configs", "grids"),
             os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "grids"))


@dataclass
class RunSpec:
    alpha: float
    gamma: float
    paper_ap: Optional[float] = None
    seed: Optional[int] = None  # None: the config's train.seed
    status: str = "pending"  # pending | done | skipped | failed | queued
    metrics: Dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    job_id: Optional[str] = None

    @property
    def name(self) -> str:
        seed = "" if self.seed is None else f"_seed{self.seed}"
        return f"alpha{self.alpha:g}_gamma{self.gamma:g}{seed}"

    def overrides(self) -> List[str]:
        """The config overrides that make this run what it is."""
        seed = [] if self.seed is None else [f"train.seed={self.seed}"]
        return [f"loss.cls.alpha={self.alpha}", f"loss.cls.gamma={self.gamma}", *seed]


def parse_seeds(text: Optional[str]) -> List[Optional[int]]:
    """``--seeds``: a count N (seeds 0..N-1) or a comma-separated list; ``[None]`` when absent
    (one run per point, with the config's seed)."""
    if not text:
        return [None]
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"--seeds takes a count or a comma-separated list of integers, got '{text}'") from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise UserError(f"--seeds {values[0]}: a count must be at least 1")
        return list(range(values[0]))
    return values


def with_seeds(specs: List[RunSpec], seeds: Sequence[Optional[int]]) -> List[RunSpec]:
    """Every point once per seed, point-major."""
    return [RunSpec(s.alpha, s.gamma, s.paper_ap, seed) for s in specs for seed in seeds]


def parse_list(text: Optional[str]) -> List[float]:
    """``"0.25,0.5 1"`` -> ``[0.25, 0.5, 1.0]``."""
    if not text:
        return []
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"expected a comma-separated list of numbers, got '{text}'") from None


def load_grid(name_or_path: str) -> List[RunSpec]:
    """A named grid (``table1a``, ``table1b``: ``configs/grids/NAME.yaml``) or a YAML path."""
    candidates = [name_or_path] + [os.path.join(d, f"{name_or_path}.yaml") for d in GRID_DIRS]
    path = next((c for c in candidates if os.path.isfile(c)), None)
    if path is None:
        known = sorted({f[:-5] for d in GRID_DIRS if os.path.isdir(d) for f in os.listdir(d) if f.endswith(".yaml")})
        raise UserError(f"unknown grid '{name_or_path}'; known grids: {', '.join(known) or 'none'}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    points = data.get("points")
    if not isinstance(points, list) or not points:
        raise UserError(f"{path}: a grid needs a non-empty 'points' list of {{alpha, gamma}}")
    try:
        return [RunSpec(float(p["alpha"]), float(p["gamma"]), p.get("paper_ap")) for p in points]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: every point needs numeric 'alpha' and 'gamma'") from None


def expand_grid(alphas: Sequence[float], gammas: Sequence[float], grid: Optional[str] = None) -> List[RunSpec]:
    """The named grid's points, else every (alpha, gamma) pair of the two lists."""
    if grid:
        return load_grid(grid)
    if not alphas or not gammas:
        raise UserError("give --alpha and --gamma lists (e.g. --alpha 0.25,0.75 --gamma 0,2) or --grid NAME")
    return [RunSpec(a, g) for a, g in itertools.product(alphas, gammas)]


def _is_finished(run_dir: str) -> bool:
    return os.path.isfile(os.path.join(run_dir, "metrics.json"))


def _load_metrics(spec: RunSpec, run_dir: str) -> None:
    with open(os.path.join(run_dir, "metrics.json")) as f:
        spec.metrics = json.load(f)


def _run_one(spec: RunSpec, config: str, output_dir: str, overrides: Sequence[str], device: Optional[str]) -> None:
    run_dir = os.path.join(output_dir, spec.name)
    os.makedirs(run_dir, exist_ok=True)
    if _is_finished(run_dir):
        spec.status = "skipped"
    else:
        cmd = train_command(config, run_dir, [*spec.overrides(), *overrides], gpus=1)
        env = dict(os.environ)
        if device is not None:
            if device.startswith("cuda") or device.isdigit():
                env["CUDA_VISIBLE_DEVICES"] = device.split(":")[-1]
            else:
                cmd.append(f"train.device={device}")
        start = time.perf_counter()
        with open(os.path.join(run_dir, "run.log"), "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        spec.seconds = time.perf_counter() - start
        spec.status = "done" if code == 0 and _is_finished(run_dir) else "failed"
    if spec.status != "failed":
        _load_metrics(spec, run_dir)


def run_ablation(config: str, output_dir: str, specs: List[RunSpec], overrides: Sequence[str] = (),
                 jobs: int = 1, devices: Sequence[str] = ()) -> List[RunSpec]:
    """Run every spec (``jobs`` at a time, round-robin over ``devices``), then write the
    summary files; returns the specs with their status and metrics."""
    os.makedirs(output_dir, exist_ok=True)
    total = len(specs)
    started = time.perf_counter()
    finished: List[RunSpec] = []

    def work(item):
        index, spec = item
        device = devices[index % len(devices)] if devices else None
        _run_one(spec, config, output_dir, overrides, device)
        finished.append(spec)
        timed = [s.seconds for s in finished if s.status != "skipped"]
        left = total - len(finished)
        eta = (sum(timed) / len(timed)) * left / max(jobs, 1) if timed else 0.0
        result = (f"AP {100 * spec.metrics['AP']:.1f}" if spec.status != "failed"
                  else f"see {os.path.join(output_dir, spec.name, 'run.log')}")
        seed = "" if spec.seed is None else f" seed={spec.seed}"
        print(f"[{len(finished)}/{total}] alpha={spec.alpha:g} gamma={spec.gamma:g}{seed}: {spec.status} "
              f"({spec.seconds:.0f} s) {result}; ETA {eta / 60:.1f} min", flush=True)

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        list(pool.map(work, enumerate(specs)))
    write_summary(specs, output_dir)
    print(f"ablation of {total} runs took {(time.perf_counter() - started) / 60:.1f} min; "
          f"summary in {os.path.join(output_dir, 'ablation.md')}", flush=True)
    return specs


def submit_ablation(config: str, output_dir: str, specs: List[RunSpec], overrides: Sequence[str] = (),
                    cluster: str = "slurm", options: Optional[SlurmOptions] = None) -> List[Tuple[RunSpec, Any]]:
    """Submit every unfinished run as a job (one whose job is still queued or running is left
    alone); finished runs get their metrics. Returns the (spec, submitit job) pairs submitted."""
    options = options or SlurmOptions()
    executor = make_executor(cluster, options, output_dir)
    submitted = []
    for spec in specs:
        run_dir = os.path.join(output_dir, spec.name)
        os.makedirs(run_dir, exist_ok=True)
        id_file = os.path.join(run_dir, JOB_ID_FILE)
        if _is_finished(run_dir):
            spec.status = "skipped"
            _load_metrics(spec, run_dir)
            continue
        if os.path.isfile(id_file):
            with open(id_file) as f:
                spec.job_id = f.read().strip()
            if job_is_active(cluster, str(executor.folder), spec.job_id):
                spec.status = "queued"
                continue
        command = train_command(config, run_dir, [*spec.overrides(), *overrides], options.gpus_per_run)
        job = executor.submit(TrainJob(command, run_dir))
        spec.job_id, spec.status = str(job.job_id), "queued"
        with open(id_file, "w") as f:
            f.write(spec.job_id)
        submitted.append((spec, job))
        print(f"submitted {spec.name}: job {spec.job_id}", flush=True)
    return submitted


def wait_for_jobs(submitted: List[Tuple[RunSpec, Any]], output_dir: str) -> None:
    """Block until the submitted jobs end; each spec becomes done (with metrics) or failed."""
    for spec, job in submitted:
        try:
            job.result()
        except Exception as e:  # submitit raises FailedJobError / UncompletedJobError with the job's log
            logger.error("run %s (job %s) failed: %s", spec.name, spec.job_id, str(e).splitlines()[0])
        run_dir = os.path.join(output_dir, spec.name)
        spec.status = "done" if _is_finished(run_dir) else "failed"
        if spec.status == "done":
            _load_metrics(spec, run_dir)
