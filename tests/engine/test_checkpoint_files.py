"""Checkpoint files where a cluster puts them: a user's disk quota, a network file system that
shows a new file late."""
import errno
import os
import threading
import time

import pytest
import torch

from detector.engine import checkpoint as checkpoint_module
from detector.engine.checkpoint import CheckpointWriteError, last_checkpoint, save_checkpoint


def test_a_disk_quota_is_named_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    out = str(tmp_path)
    save_checkpoint({"model": {"w": torch.ones(3)}, "iteration": 1}, out, "model_0000001.pth")

    def over_quota(obj, f):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(torch, "save", over_quota)
    with pytest.raises(CheckpointWriteError, match=r"model_0000002.pth: disk quota exceeded"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "iteration": 2}, out, "model_0000002.pth")
    assert last_checkpoint(out).endswith("model_0000001.pth")


def test_resume_waits_for_a_checkpoint_a_network_file_system_shows_late(tmp_path, monkeypatch):
    # Written on one node, resumed on another: the pointer is visible, the file it names not yet.
    out = str(tmp_path)
    (tmp_path / "last_checkpoint").write_text("model_0000002.pth")
    late = threading.Timer(1.0, lambda: (tmp_path / "model_0000002.pth").write_bytes(b"weights"))
    late.start()
    start = time.monotonic()
    assert last_checkpoint(out) == os.path.join(out, "model_0000002.pth")
    assert 0.9 < time.monotonic() - start < 10
    monkeypatch.setattr(checkpoint_module, "APPEAR_WITHIN_S", 0.5)
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")  # never comes: named, after the wait
    with pytest.raises(FileNotFoundError, match=r"names model_0000003.pth, which does not exist .*waited 0.5 s"):
        last_checkpoint(out)
