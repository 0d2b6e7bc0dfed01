"""DDP on CPU with gloo: 2 ranks x batch 1 take the step 1 process x batch 2 takes.

The claim is exact semantics (loss normalisation, gradient averaging), so both sides run in
float64: in float32 the convolution kernels round differently for batch 1 and batch 2 (on
AVX2 CPUs by up to 0.9 % of the largest gradient, measured), which says nothing about DDP.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detector.config import load_config
from detector.data import CocoDetection
from detector.engine.checkpoint import last_checkpoint, load_training_state
from detector.modeling import build_model

OVERRIDES = ["model.backbone.norm=frozen_bn", "model.backbone.freeze_at=0", "data.train.transforms=[]"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(tiny_dataset):
    ds = CocoDetection(f"{tiny_dataset}/annotations/instances_train.json", f"{tiny_dataset}/train")
    items = [ds[i] for i in range(2)]
    assert all(len(t["boxes"]) for _, t in items)
    return [im.double() / 255 for im, _ in items], [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in items]


def _step(model, images, targets):
    losses = model(images, targets)
    sum(losses.values()).backward()
    return {k: v.detach() for k, v in losses.items()}


def _rank_main(rank, world_size, port, tiny_config, tiny_dataset, weights, out_dir, extra):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = build_model(load_config(tiny_config, OVERRIDES + extra)).double()
    model.load_state_dict(torch.load(weights, weights_only=True))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp.train()
    images, targets = _batch(tiny_dataset)
    losses = _step(ddp, images[rank:rank + 1], targets[rank:rank + 1])
    for value in losses.values():  # the batch's loss is the mean of the ranks' losses
        dist.all_reduce(value)
        value /= world_size
    if rank == 0:
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"losses": losses, "grads": grads}, os.path.join(out_dir, "ddp.pth"))
    dist.destroy_process_group()


# The paper's loss, and an IoU-aware loss with ATSS: the quality targets and the assignment are
# per image, so they too split over ranks exactly. (GHM-C's bin counts are each rank's own, as in
# mmdetection: not the single-process step, by design.)
@pytest.mark.parametrize("extra", [[], ["loss.cls.name=varifocal", "loss.cls.alpha=0.75", "model.matcher.name=atss"]],
                         ids=["focal", "varifocal+atss"])
def test_two_ranks_equal_one_process(tiny_config, tiny_dataset, tmp_path, extra):
    torch.manual_seed(0)
    model = build_model(load_config(tiny_config, OVERRIDES + extra)).double()
    weights = str(tmp_path / "init.pth")
    torch.save(model.state_dict(), weights)
    model.train()
    images, targets = _batch(tiny_dataset)
    expected = _step(model, images, targets)
    mp.spawn(_rank_main, args=(2, _free_port(), tiny_config, tiny_dataset, weights, str(tmp_path), extra), nprocs=2)
    got = torch.load(tmp_path / "ddp.pth", weights_only=True)
    # float64 sums in another order differ by about 1e-15 relative (measured); 1e-10 leaves
    # room for that and still catches any real difference (a wrong normaliser is off by %).
    for key, value in expected.items():
        torch.testing.assert_close(got["losses"][key], value, rtol=1e-10, atol=0)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == got["grads"].keys()
    assert all(g.dtype == torch.float64 for g in grads.values())
    for name, grad in grads.items():
        scale = grad.abs().max().item()
        assert scale > 0, name  # a gradient that moved: the comparison is not vacuous
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-10, atol=1e-12 * scale, msg=name)


@pytest.mark.slow
def test_torchrun_trains_and_evaluates(tiny_config, tmp_path):
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "detector", "train", tiny_config, "--output-dir", out, "train.max_iter=2",
           "model.backbone.norm=frozen_bn"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model_final.pth", "metrics.json", "metrics.jsonl", "detections.json"):
        assert os.path.exists(os.path.join(out, name)), name
    log = open(os.path.join(out, "log.txt")).read()
    assert log.count("environment:") == 1 and log.count("train images are") == 1  # rank 0 alone writes it


@pytest.mark.slow
def test_a_signal_stops_all_ranks_after_the_same_step_and_they_resume(tiny_config, tmp_path):
    # Slurm signals every process of the job: torchrun and both ranks. The ranks agree at a
    # logging step, save one checkpoint and exit; torchrun started again with --resume finishes.
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "detector", "train", tiny_config, "--output-dir", out, "train.max_iter=40",
           "train.log_period=2", "train.checkpoint_period=1000", "data.val.ann_file=",
           "model.backbone.norm=frozen_bn"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 180
    while time.time() < deadline and not (os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert "SIGTERM received: stopped after iteration" in err, err[-3000:]
    stopped_at = load_training_state(last_checkpoint(out))["iteration"]
    assert 4 <= stopped_at < 40 and stopped_at % 2 == 0  # a logging step
    resumed = subprocess.run(cmd[:6] + [str(_free_port())] + cmd[7:] + ["--resume"], capture_output=True,
                             text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {os.path.join(out, f'model_{stopped_at:07d}.pth')}" in resumed.stderr
    assert load_training_state(os.path.join(out, "model_final.pth"))["iteration"] == 40


@pytest.mark.slow
def test_a_damaged_image_on_one_rank_stops_every_rank_with_the_file_named(tmp_path):
    # The rank that reads it used to save behind a barrier the others, waiting in the step's
    # all-reduce, never reached: both hung until killed. Now it saves alone and exits; gloo fails
    # the others' all-reduce and torchrun ends the group.
    from detector.data import make_synthetic_dataset
    from tests.conftest import TINY_MODEL

    root = tmp_path / "data"
    make_synthetic_dataset(str(root), num_train=16, num_val=4, seed=3, image_size=64, min_object=12, max_object=32)
    damaged = root / "train" / "000006.png"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_MODEL.replace("{root}", str(root)))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "detector", "train", str(config), "--output-dir", str(out), "train.max_iter=20",
           "train.checkpoint_period=1000", "data.val.ann_file=", "model.backbone.norm=frozen_bn"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the hang this test is about: end every rank, then fail
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the ranks were still running 120 s after one met the damaged image")
    assert proc.returncode != 0 and time.monotonic() - start < 90
    assert f"cannot read image {damaged}" in stderr and "the other processes stop with it" in stderr
    saved = [f for f in os.listdir(out) if f.startswith("model_")]
    assert len(saved) <= 1  # written once, by the rank that met the file (none if it was the first batch)
    if saved:
        assert f"saved {out / saved[0]}" in stderr
