"""``detector ablate``: one full train + eval per (point, seed), then the tables and the plot.

Each run is ``detector train CONFIG --output-dir OUT/<point>[_seed<s>] --resume <the point's
overrides> [train.seed=s] [KEY=VALUE ...]`` in a process of its own (logged to ``run.log`` in
its directory), so a failing run cannot take the others down. The launcher decides where the
processes run: here (:class:`~detector.ablation.local.LocalLauncher`) or as cluster jobs
(:class:`~detector.ablation.slurm.SlurmLauncher`). A run whose ``metrics.json`` exists is
collected, an interrupted one resumes, so the same command continues an ablation.
"""
import os
import signal
import sys
from contextlib import nullcontext
from typing import Callable, List, Optional, Sequence

from ..engine.lock import DirectoryLock
from ..engine.stopping import TrainingInterrupted
from ..engine.trainer import prepare_output_dir
from ..errors import UserError
from .grid import Run, reference_point, validate
from .plots import convergence_curves, plot_ablation
from .runs import collect
from .tables import PointSummary, convergence_note, summarize, write_tables


def ablate(config: str, output_dir: str, runs: List[Run], launcher, overrides: Sequence[str] = (),
           reference: Optional[str] = None, check: Callable = lambda cfg: None) -> List[PointSummary]:
    """Validate every run's config (before anything starts), launch the runs, and write
    ``ablation.md``, ``ablation.csv`` and ``ablation.png`` to ``output_dir``. ``reference``
    names the point the others are compared with (default: the paper's focal loss when the
    study has it). ``launcher`` None starts nothing and tabulates the runs finished so far.
    Returns the per-point summaries; raises :class:`UserError` when runs failed."""
    validate(runs, config, overrides, check)
    ref = reference_point(runs, reference)
    prepare_output_dir(output_dir)  # a read-only or full place fails here, named, before any run
    with DirectoryLock(output_dir, "ablation") if launcher is not None else nullcontext():
        stopped_by = None
        if launcher is None:
            collect(runs, output_dir)
        else:
            stopped_by = launcher.launch(runs, config, output_dir, overrides)
        points = write_summary(runs, output_dir, ref)
    print(f"tables: {os.path.join(output_dir, 'ablation.md')} and ablation.csv; plot: ablation.png", flush=True)
    if stopped_by is not None:
        stopped = sum(r.status == "stopped" for r in runs)
        raise TrainingInterrupted(
            f"{signal.Signals(stopped_by).name} received: {stopped} running run(s) saved a checkpoint and stopped, "
            f"{sum(r.status == 'pending' for r in runs)} did not start. Continue with the same command: "
            f"detector {' '.join(sys.argv[1:])}", stopped_by)
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        raise UserError(f"{len(failed)} of {len(runs)} runs failed (marked in {output_dir}/ablation.md; their logs: "
                        f"{os.path.join(output_dir, failed[0].name, 'run.log')}, ...)")
    return points


def write_summary(runs: Sequence[Run], output_dir: str, reference=None) -> List[PointSummary]:
    """The tables and, when a run finished, the plot."""
    points = summarize(runs, reference)
    done = [p for p in points if p.runs]
    curves = convergence_curves(done, output_dir)
    write_tables(runs, points, output_dir, reference, convergence_note(curves))
    if done:
        plot_ablation(done, curves, os.path.join(output_dir, "ablation.png"))
    return points
