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
