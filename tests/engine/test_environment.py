import json
import logging

import torch

from detector.engine import environment


def test_describe_names_versions_device_and_threads():
    info = environment.describe(torch.device("cpu"))
    assert info["threads"] == torch.get_num_threads() and info["device"] == "cpu"
    assert info["torch"] == torch.__version__ and info["world_size"] == 1 and "gpu" not in info


def test_a_start_replaces_and_a_resume_appends(tmp_path):
    out = str(tmp_path)
    assert environment.read(out) == []
    one = {"torch": "2.14.1", "device": "cpu", "threads": 2}
    environment.record(out, 0, one)
    environment.record(out, 0, one)  # a fresh start in the same directory: the old entries go
    environment.record(out, 40, one)
    assert environment.read(out) == [{"iteration": 0, **one}, {"iteration": 40, **one}]
    environment.record(out, 20, one)  # resumed from an earlier checkpoint: later entries go
    assert [e["iteration"] for e in json.loads((tmp_path / environment.FILE).read_text())] == [0, 20]


def test_a_resume_in_another_environment_warns(tmp_path, caplog):
    out = str(tmp_path)
    environment.record(out, 0, {"torch": "2.14.1", "threads": 1})
    with caplog.at_level(logging.WARNING, logger="detector.engine.environment"):
        environment.record(out, 200, {"torch": "2.14.1", "threads": 1})
        assert not caplog.records
        environment.record(out, 211, {"torch": "2.14.1", "threads": 2})
    assert "resuming at iteration 211 with threads=2 (started with 1)" in caplog.text
    assert "differ from an uninterrupted run" in caplog.text


def test_on_a_gpu_the_model_is_recorded_instead_of_the_threads(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    info = environment.describe(torch.device("cuda", 0), world_size=8)
    assert info["gpu"] == "NVIDIA H200" and info["device"] == "cuda" and info["world_size"] == 8
    assert "threads" not in info and "cuda" in info


def test_each_entry_names_the_code_commit_and_whether_it_was_changed(tmp_path):
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    assert environment.code_version(str(tmp_path)) == {"commit": None, "dirty": None}  # not a checkout
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    head = git("rev-parse", "HEAD").strip()
    (tmp_path / "notes.txt").write_text("untracked files do not count")
    assert environment.code_version(str(tmp_path)) == {"commit": head, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert environment.code_version(str(tmp_path)) == {"commit": head, "dirty": True}
    # and a run records the package's own checkout
    info = environment.describe(torch.device("cpu"))
    assert set(info) >= {"commit", "dirty"} and info == {**info, **environment.code_version()}


def test_a_resume_with_other_code_is_recorded_without_a_warning(tmp_path, caplog):
    out = str(tmp_path)
    environment.record(out, 0, {"torch": "2.14.1", "commit": "a" * 40, "dirty": False})
    with caplog.at_level(logging.WARNING, logger="detector.engine.environment"):
        environment.record(out, 100, {"torch": "2.14.1", "commit": "b" * 40, "dirty": True})
    assert not caplog.records
    assert [e["commit"] for e in environment.read(out)] == ["a" * 40, "b" * 40]
