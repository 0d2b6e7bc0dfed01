"""Exact resume, SIGTERM handling, interrupted checkpoint writes, keep-last-K."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from detector.config import load_config
from detector.engine import train
from detector.engine.checkpoint import last_checkpoint, load_training_state, save_checkpoint


def test_straight_and_resumed_runs_end_with_the_same_weights(tiny_config, tmp_path):
    # Random augmentation (flips) and BatchNorm statistics included. A step schedule, so that the
    # first half, run with max_iter=3, has the learning rates of the first half of a 6-iteration run.
    common = ["train.log_period=2", "train.checkpoint_period=3", "data.val.ann_file=", "solver.base_lr=0.002",
              "solver.lr_schedule=step", "solver.steps=[4]"]
    straight = str(tmp_path / "straight")
    train(load_config(tiny_config, common + [f"output_dir={straight}", "train.max_iter=6"]), progress=False)
    resumed = str(tmp_path / "resumed")
    train(load_config(tiny_config, common + [f"output_dir={resumed}", "train.max_iter=3"]), progress=False)
    train(load_config(tiny_config, common + [f"output_dir={resumed}", "train.max_iter=6"]), resume=True,
          progress=False)
    a = load_training_state(os.path.join(straight, "model_final.pth"))["model"]
    b = load_training_state(os.path.join(resumed, "model_final.pth"))["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    # and the weights did move: the comparison is not between two untouched models
    first = load_training_state(os.path.join(straight, "model_0000003.pth"))["model"]
    assert not torch.equal(first["head.cls_score.weight"], a["head.cls_score.weight"])


def test_sigterm_saves_a_checkpoint_and_the_run_resumes_to_the_end(tiny_config, tmp_path):
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "detector", "train", tiny_config, "--output-dir", out, "train.max_iter=40",
           "train.log_period=1", "train.checkpoint_period=1000", "data.val.ann_file="]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received" in err and "--resume" in err and "Traceback" not in err
    stopped_at = load_training_state(last_checkpoint(out))["iteration"]
    assert 2 <= stopped_at < 40
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert load_training_state(os.path.join(out, "model_final.pth"))["iteration"] == 40


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_group_with_workers_saves_and_resumes_exactly(tiny_config, tmp_path, signum):
    # Slurm's preemption, kill -- -PGID and Ctrl-C reach the data-loader workers too: they must
    # leave the signal to the main process, which checkpoints after its step.
    common = ["train.max_iter=30", "train.log_period=1", "train.checkpoint_period=1000", "data.val.ann_file=",
              "data.num_workers=2"]
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "detector", "train", tiny_config, "--output-dir", out, *common]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 2):
        time.sleep(0.1)
    os.killpg(proc.pid, signum)  # the whole group: main process and both workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert f"{signal.Signals(signum).name} received" in err and "--resume" in err
    assert "Traceback" not in err and "killed by signal" not in err
    stopped_at = load_training_state(last_checkpoint(out))["iteration"]
    assert 2 <= stopped_at < 30
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    straight = str(tmp_path / "straight")
    train(load_config(tiny_config, common + [f"output_dir={straight}"]), progress=False)
    a = load_training_state(os.path.join(straight, "model_final.pth"))["model"]
    b = load_training_state(os.path.join(out, "model_final.pth"))["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path):
    out = str(tmp_path)
    script = textwrap.dedent(f"""
        import os, signal, torch
        from detector.engine.checkpoint import save_checkpoint
        save_checkpoint({{"model": {{"w": torch.ones(3)}}, "iteration": 1}}, {out!r}, "model_0000001.pth")
        def dying_save(obj, f):
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        save_checkpoint({{"model": {{"w": torch.zeros(3)}}, "iteration": 2}}, {out!r}, "model_0000002.pth")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    path = last_checkpoint(out)
    assert path.endswith("model_0000001.pth")
    state = load_training_state(path)
    assert state["iteration"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert not os.path.exists(os.path.join(out, "model_0000002.pth"))


def test_keep_last_k(tmp_path):
    for it in range(1, 6):
        save_checkpoint({"model": {}, "iteration": it}, str(tmp_path), f"model_{it:07d}.pth", keep=2)
    save_checkpoint({"model": {}, "iteration": 6}, str(tmp_path), "model_final.pth", keep=2)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        "model_0000004.pth", "model_0000005.pth", "model_final.pth"]
