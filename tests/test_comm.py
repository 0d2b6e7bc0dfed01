"""``comm.resolve_device``: ``train.device`` must name a device this machine has."""
import pytest
import torch

from detector.comm import resolve_device
from detector.errors import UserError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_without_cuda_says_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available here; use train.device=cpu"):
        resolve_device("cuda")


def test_a_gpu_index_past_the_machines_gpus_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UserError, match=r"train.device=cuda:2 but this machine has 2 GPU\(s\): cuda:0 to cuda:1"):
        resolve_device("cuda:2")
