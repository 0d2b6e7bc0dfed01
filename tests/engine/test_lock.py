"""One run per output directory: a second run refuses, a killed run leaves no lock behind."""
import os
import signal
import subprocess
import sys
import time

import pytest

from detector.engine.lock import DirectoryInUse, DirectoryLock, holder


def test_a_second_lock_on_the_same_directory_is_refused_until_the_first_is_released(tmp_path):
    with DirectoryLock(str(tmp_path), "training run"):
        assert f"process {os.getpid()}" in holder(str(tmp_path))
        with pytest.raises(DirectoryInUse, match=rf"{tmp_path} is in use by process {os.getpid()} on .*another "
                                                 "--output-dir"):
            DirectoryLock(str(tmp_path)).acquire()
    assert holder(str(tmp_path)) is None
    with DirectoryLock(str(tmp_path)):  # free again
        pass


def _wait_for_lines(path, count, deadline_s=120):
    deadline = time.time() + deadline_s
    while time.time() < deadline and not (os.path.exists(path) and sum(1 for _ in open(path)) >= count):
        time.sleep(0.1)


def test_two_trainings_on_one_directory_and_a_resume_after_kill_9(tiny_config, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "detector", "train", tiny_config, "--output-dir", str(out), "train.max_iter=40",
           "train.log_period=1", "train.checkpoint_period=2", "data.val.ann_file=", "data.num_workers=2"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_lines(out / "metrics.jsonl", 3)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"{out} is in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
        lines = (out / "metrics.jsonl").read_text().splitlines()
        assert len({line for line in lines}) == len(lines)  # the second run wrote nothing into the first's files
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # a crash: no chance to clean up
        first.wait(timeout=60)
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in (out / "log.txt").read_text()
