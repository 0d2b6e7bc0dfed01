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


def test_the_process_group_waits_as_long_as_the_config_says(monkeypatch):
    # NCCL gives up after 10 minutes by default, while rank 0 alone runs COCOeval and the others
    # wait in the next step's all-reduce: a large val split killed the job.
    from datetime import timedelta

    import torch.distributed as dist

    from detector.comm import init_distributed

    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: joined.update(backend=backend, **kwargs))
    assert init_distributed(torch.device("cpu"), timeout_min=45) == torch.device("cpu")
    assert joined == {"backend": "gloo", "timeout": timedelta(minutes=45)}


def test_ddp_neither_broadcasts_buffers_nor_copies_gradients(tmp_path):
    import torch.distributed as dist

    from detector.engine.trainer import wrap_ddp

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        ddp = wrap_ddp(torch.nn.Linear(3, 2), torch.device("cpu"))
        assert getattr(ddp, "forward_sync_buffers", getattr(ddp, "broadcast_buffers", None)) is False
        assert ddp.gradient_as_bucket_view is True
    finally:
        dist.destroy_process_group()
