"""Ablation runs as submitit jobs: the Slurm job path, run here by submitit's LocalExecutor
(real subprocess jobs), including a job stopped by the preemption signal and requeued."""
import os
import shutil
import signal
import sys
import time

import pytest

from detector.ablation import SlurmLauncher, SlurmOptions, classic_point, with_seeds
from detector.ablation.runs import train_command
from detector.ablation.slurm import make_executor
from detector.cli import main
from detector.engine.checkpoint import load_training_state

submitit = pytest.importorskip("submitit")


def _children(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def _wait_for(predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _lines(path):
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def test_a_preempted_job_requeues_resumes_and_the_same_command_collects_it(tiny_config, tmp_path, capsys):
    out = str(tmp_path / "sweep")
    overrides = ["train.max_iter=30", "train.log_period=1", "train.checkpoint_period=1000"]
    runs = with_seeds([classic_point(0.25, 2.0)], [0])
    launcher = SlurmLauncher("local", SlurmOptions(time_min=10, signal_delay_s=5))
    launcher.launch(runs, tiny_config, out, overrides)
    run, = runs
    run_dir = os.path.join(out, "alpha0.25_gamma2_seed0")
    assert run.status == "queued" and open(os.path.join(run_dir, "job_id")).read() == run.job_id
    assert _wait_for(lambda: _lines(os.path.join(run_dir, "metrics.jsonl")) >= 2), "training did not start"

    # What Slurm does before preempting or timing out: USR2 to the job's task (submitit's handler).
    task, = _children(int(run.job_id))
    os.kill(task, signal.SIGUSR2)
    assert _wait_for(lambda: os.path.exists(os.path.join(run_dir, "metrics.json")), timeout=300), \
        "the job neither requeued nor finished"
    log = open(os.path.join(run_dir, "run.log")).read()
    assert "SIGTERM received: stopped after iteration" in log  # the checkpoint() path stopped training
    assert log.count("$ ") == 2 and "resumed from" in log  # requeued once, resumed from the checkpoint
    assert load_training_state(os.path.join(run_dir, "model_final.pth"))["iteration"] == 30
    assert "train.seed=0" in log

    # The same command, run again, submits nothing and collects the finished run into the table.
    capsys.readouterr()
    args = ["ablate", tiny_config, "--output-dir", out, "--alpha", "0.25", "--gamma", "2", "--seeds", "0,",
            "--launcher", "submitit-local", *overrides]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "submitted" not in printed and "1 of 1 runs finished" in printed and "all collected" in printed
    table = open(os.path.join(out, "ablation.md")).read()
    assert "| alpha=0.25, gamma=2 | 1 |" in table  # the one seed's run, collected


def test_submitted_runs_are_not_submitted_twice(tiny_config, tmp_path, capsys):
    out = str(tmp_path / "sweep")
    args = ["ablate", tiny_config, "--output-dir", out, "--alpha", "0.25", "--gamma", "0", "--launcher",
            "submitit-local", "train.max_iter=2"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "submitted alpha0.25_gamma0" in first and "1 queued or running" in first
    assert main(args) == 0  # the job is still running: not submitted again
    assert "submitted alpha" not in capsys.readouterr().out
    run_dir = os.path.join(out, "alpha0.25_gamma0")
    assert _wait_for(lambda: os.path.exists(os.path.join(run_dir, "metrics.json")))
    assert main(args) == 0  # finished: collected
    assert "1 of 1 runs finished" in capsys.readouterr().out


def test_slurm_jobs_ask_for_what_the_options_say(tmp_path, monkeypatch, capsys):
    args = ["ablate", "configs/demo/shapes_focal.yaml", "--alpha", "0.25", "--gamma", "2", "--launcher", "slurm",
            "--output-dir", str(tmp_path / "x")]
    if not shutil.which("srun"):  # no Slurm here: a message, not a traceback
        assert main(args) == 2 and "no Slurm on this machine" in capsys.readouterr().err
    fake = tmp_path / "bin"  # submitit only looks for srun before writing the sbatch file
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    options = SlurmOptions(partition="gpu", gpus_per_run=4, cpus_per_gpu=6, time_min=600, signal_delay_s=120)
    executor = make_executor("slurm", options, str(tmp_path))
    script = executor._executor._make_submission_file_text("echo", "uid")  # the sbatch file, not submitted
    for line in ("--partition=gpu", "--gpus-per-node=4", "--cpus-per-task=24", "--time=600", "--signal=USR2@120",
                 "--ntasks-per-node=1", "--nodes=1"):
        assert line in script, line
    assert train_command("c.yaml", "run", ["a=1"], gpus=4)[:6] == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert train_command("c.yaml", "run", ["a=1"], gpus=1)[1:] == [
        "-m", "detector", "train", "c.yaml", "--output-dir", "run", "--resume", "a=1"]
