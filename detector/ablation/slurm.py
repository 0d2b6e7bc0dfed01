"""Ablation runs as cluster jobs, through submitit (as DETR's ``run_with_submitit.py`` does).

Each run is one job: ``detector train CONFIG --output-dir RUN --resume ...`` in a subprocess,
under ``torchrun --nproc_per_node G`` when the run has G > 1 GPUs (one node, the trainer's
own DDP). When Slurm is about to preempt or time out the job it sends USR2; submitit then
calls :meth:`TrainJob.checkpoint`, which hands the training process SIGTERM (it finishes its
step, writes a checkpoint and exits) and returns the job to requeue; the requeued job runs
the same command, and ``--resume`` continues from that checkpoint.

``cluster="slurm"`` submits to Slurm; ``cluster="local"`` runs the same jobs as local
subprocesses (submitit's LocalExecutor): the tests use it, and so can a user who wants to
try a sweep's job path before spending cluster time.
"""
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..errors import UserError, require
from .grid import Run
from .runs import finished_before, held_elsewhere, is_finished, load_metrics, start_logged, train_command

logger = logging.getLogger(__name__)

JOB_ID_FILE = "job_id"  # in each run directory: the cluster's id of its newest job
CLUSTERS = ("slurm", "local")


@dataclass
class SlurmOptions:
    """What each job asks the cluster for."""

    partition: Optional[str] = None
    gpus_per_run: int = 1
    cpus_per_gpu: int = 8
    time_min: int = 24 * 60
    signal_delay_s: int = 120  # USR2 this long before the time limit: time to finish a step and save
    max_requeues: int = 10
    folder: Optional[str] = None  # submitit's logs and pickles; default OUTPUT_DIR/submitit


class TrainJob:
    """The callable submitit pickles and runs: one training run, restartable."""

    def __init__(self, command: List[str], run_dir: str) -> None:
        self.command = command
        self.run_dir = run_dir
        self.process: Optional[subprocess.Popen] = None

    def __call__(self) -> str:
        self.process = start_logged(self.command, self.run_dir)
        code = self.process.wait()
        if code != 0:
            raise RuntimeError(f"training exited with code {code}; see {os.path.join(self.run_dir, 'run.log')}")
        return self.run_dir

    def checkpoint(self):
        """Called by submitit on preemption or time-out: stop training at a checkpoint, then
        requeue this same job (which resumes from it)."""
        import submitit

        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)  # the trainer saves after its step, exits 143
            # Not Popen.wait(): this runs in a signal handler that interrupted __call__'s wait(),
            # which holds the Popen's lock; waitpid on the pid itself does not need it.
            try:
                os.waitpid(self.process.pid, 0)
            except ChildProcessError:  # already reaped
                pass
        return submitit.helpers.DelayedSubmission(TrainJob(self.command, self.run_dir))

    def __getstate__(self):  # a running process does not travel in the pickle
        return {"command": self.command, "run_dir": self.run_dir, "process": None}


def make_executor(cluster: str, options: SlurmOptions, output_dir: str):
    """A submitit executor for ``cluster`` with one task per job on one node."""
    if cluster not in CLUSTERS:
        raise UserError(f"unknown cluster '{cluster}'; valid: {', '.join(CLUSTERS)}")
    submitit = require("submitit", "cluster", f"--launcher {'slurm' if cluster == 'slurm' else 'submitit-local'}")
    folder = options.folder or os.path.join(output_dir, "submitit")
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=options.max_requeues,
                                         local_max_num_timeout=options.max_requeues)
    except RuntimeError as e:  # submitit: 'Could not detect "srun"'
        raise UserError(f"--launcher slurm: no Slurm on this machine ({e}); submit from a login node, or "
                        "use --launcher local (or submitit-local to try the job path here)") from None
    gpus = options.gpus_per_run if cluster == "slurm" else 0
    executor.update_parameters(
        timeout_min=options.time_min, nodes=1, tasks_per_node=1, gpus_per_node=gpus,
        cpus_per_task=max(1, options.cpus_per_gpu * max(gpus, 1)), name="detector-ablate",
        slurm_signal_delay_s=options.signal_delay_s,
        **({"slurm_partition": options.partition} if options.partition else {}),
    )
    return executor


def job_is_active(cluster: str, folder: str, job_id: str) -> bool:
    """Whether the job ``job_id`` is still queued or running (so that it is not submitted twice)."""
    if cluster == "local":  # the job id is its controller's process id; a zombie has ended
        try:
            with open(f"/proc/{int(job_id)}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ValueError):
            return False
    import submitit

    state = submitit.SlurmJob(folder=folder, job_id=job_id).state
    return state in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                     "REQUEUE_HOLD", "REQUEUE_FED", "UNKNOWN")


class SlurmLauncher:
    """Submits every unfinished run as a job (one whose job is still queued or running is left
    alone) and, with ``wait``, blocks until they end; the runs that are finished when it looks
    are collected. Run the same command again to collect the rest."""

    def __init__(self, cluster: str = "slurm", options: Optional[SlurmOptions] = None, wait: bool = False) -> None:
        self.cluster = cluster
        self.options = options or SlurmOptions()
        self.wait = wait

    def launch(self, runs: List[Run], config: str, output_dir: str, overrides: Sequence[str]) -> None:
        executor = make_executor(self.cluster, self.options, output_dir)
        submitted = []
        for run in runs:
            run_dir = os.path.join(output_dir, run.name)
            os.makedirs(run_dir, exist_ok=True)
            id_file = os.path.join(run_dir, JOB_ID_FILE)
            if finished_before(run, run_dir):
                continue
            if os.path.isfile(id_file):
                with open(id_file) as f:
                    run.job_id = f.read().strip()
                if job_is_active(self.cluster, str(executor.folder), run.job_id):
                    run.status = "queued"
                    continue
            if held_elsewhere(run, run_dir):
                continue
            command = train_command(config, run_dir, [*overrides, *run.override_args()], self.options.gpus_per_run)
            job = executor.submit(TrainJob(command, run_dir))
            run.job_id, run.status = str(job.job_id), "queued"
            with open(id_file, "w") as f:
                f.write(run.job_id)
            submitted.append((run, job))
            print(f"submitted {run.name}: job {run.job_id}", flush=True)
        if self.wait:
            for run, job in submitted:
                _wait(run, job, os.path.join(output_dir, run.name))
        queued = [r for r in runs if r.status == "queued"]
        print(f"{len(runs) - len(queued)} of {len(runs)} runs finished or failed; " +
              (f"{len(queued)} queued or running: run the same command again to collect them" if queued
               else "all collected"), flush=True)


def _wait(run: Run, job, run_dir: str) -> None:
    """Block until ``job`` ends; the run becomes done (with metrics) or failed."""
    try:
        job.result()
    except Exception as e:  # submitit raises FailedJobError / UncompletedJobError with the job's log
        logger.error("run %s (job %s) failed: %s", run.name, run.job_id, str(e).splitlines()[0])
    run.status = "done" if is_finished(run_dir) else "failed"
    if run.status == "done":
        load_metrics(run, run_dir)
