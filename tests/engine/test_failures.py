"""A run always ends: an error in the middle of training, with data-loader workers, exits
promptly with the traceback (a bug, exit 1) or the message (a user error, exit 2)."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

# A classification loss that fails on its third call, i.e. in the middle of training.
FAILING_LOSS = """
from detector.errors import UserError
from detector.losses.focal import FocalConfig, SigmoidFocalLoss
from detector.registry import REGISTRY


class FailingLoss(SigmoidFocalLoss):
    calls = 0

    def __call__(self, logits, gt_labels, *args):
        FailingLoss.calls += 1
        if FailingLoss.calls == 3:
            raise {error}("injected failure at the third step")
        return super().__call__(logits, gt_labels)


@REGISTRY.register("cls_loss", "failing", config=FocalConfig)
def build(cfg):
    return FailingLoss(cfg.alpha, cfg.gamma)
"""


def _run_failing(tmp_path, tiny_config, error, *extra, timeout=120):
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "failing_loss.py").write_text(textwrap.dedent(FAILING_LOSS.format(error=error)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "detector", *extra, "train", tiny_config, "--output-dir", str(tmp_path / "out"),
           "plugins=[failing_loss]", "loss.cls.name=failing", "data.num_workers=2", "train.max_iter=20",
           "data.val.ann_file="]
    start = time.monotonic()
    # A hang shows as TimeoutExpired: the run printed its error and never exited.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, start_new_session=True)
    return done, time.monotonic() - start


def test_a_bug_mid_training_with_workers_exits_1_with_its_traceback(tiny_config, tmp_path):
    done, seconds = _run_failing(tmp_path, tiny_config, "RuntimeError")
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "RuntimeError: injected failure at the third step" in done.stderr
    assert seconds < 90


@pytest.mark.parametrize("debug", [False, True])
def test_a_user_error_mid_training_with_workers_exits_2(tiny_config, tmp_path, debug):
    done, _ = _run_failing(tmp_path, tiny_config, "UserError", *(["--debug"] if debug else []))
    assert done.returncode == 2, done.stderr
    assert "injected failure at the third step" in done.stderr
    assert ("Traceback" in done.stderr) == debug


def test_a_failed_checkpoint_write_is_named_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from detector.engine.checkpoint import CheckpointWriteError, last_checkpoint, load_training_state, save_checkpoint

    out = str(tmp_path)
    save_checkpoint({"model": {"w": torch.ones(3)}, "iteration": 1}, out, "model_0000001.pth")

    def full_disk(obj, f):  # what torch.save raises when the disk fills up mid-write
        f.write(b"part of a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1536 vs 1472")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*model_0000002.pth: file too "
                                                   r"large or no space left"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "iteration": 2}, out, "model_0000002.pth")
    assert last_checkpoint(out).endswith("model_0000001.pth")
    assert load_training_state(last_checkpoint(out))["iteration"] == 1
    assert sorted(os.listdir(out)) == ["last_checkpoint", "model_0000001.pth"]  # no half-written files left


def test_a_run_that_cannot_write_its_checkpoint_exits_2_with_workers(tiny_config, tmp_path):
    # A file-size limit makes the checkpoint write fail as a full disk does (EFBIG instead of
    # ENOSPC), with the checkpoint partly written.
    import resource
    import signal

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 2 ** 20, 8 * 2 ** 20))

    cmd = [sys.executable, "-m", "detector", "train", tiny_config, "--output-dir", str(tmp_path / "out"),
           "data.num_workers=2", "train.max_iter=6", "train.checkpoint_period=3", "data.val.ann_file="]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    assert done.returncode == 2, done.stderr
    assert "could not write checkpoint" in done.stderr and "model_0000003.pth" in done.stderr
    assert "file too large" in done.stderr and "Traceback" not in done.stderr
    assert not any(".tmp." in name for name in os.listdir(tmp_path / "out"))


def test_the_trainer_itself_stops_its_workers_when_training_fails(tiny_config, tmp_path, monkeypatch):
    # For users of the Python API, whose process has no CLI to clean up after it: the loader's
    # workers end with the failed run, not at interpreter exit (where they would hang it).
    import multiprocessing

    from detector.config import load_config
    from detector.engine import train

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "failing_loss_api.py").write_text(
        textwrap.dedent(FAILING_LOSS.format(error="RuntimeError")).replace('"failing"', '"failing_api"'))
    monkeypatch.syspath_prepend(str(plugin_dir))
    cfg = load_config(tiny_config, [f"output_dir={tmp_path / 'out'}", "plugins=[failing_loss_api]",
                                    "loss.cls.name=failing_api", "data.num_workers=2", "train.max_iter=20",
                                    "data.val.ann_file="])
    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg, progress=False)
    assert multiprocessing.active_children() == []
