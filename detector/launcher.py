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
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .errors import UserError, require

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


def train_command(config: str, run_dir: str, overrides: Sequence[str], gpus: int) -> List[str]:
    """The training command of one run; torchrun spreads it over ``gpus`` processes."""
    if gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                    "-m", "detector"]
    else:
        launcher = [sys.executable, "-m", "detector"]
    return [*launcher, "train", config, "--output-dir", run_dir, "--resume", *overrides]


class TrainJob:
    """The callable submitit pickles and runs: one training run, restartable."""

    def __init__(self, command: List[str], run_dir: str) -> None:
        self.command = command
        self.run_dir = run_dir
        self.process: Optional[subprocess.Popen] = None

    def __call__(self) -> str:
        with open(os.path.join(self.run_dir, "run.log"), "a") as log:
            log.write(f"$ {' '.join(self.command)}\n")
            log.flush()
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
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
