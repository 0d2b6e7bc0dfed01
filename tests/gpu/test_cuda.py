"""The GPU suite: what only a CUDA device can show. Skipped where there is none (CI, the
developers' machines); ``make test-gpu`` runs it, and ``bash benchmarks/gpu.sh`` runs it before
it times anything.

Each test is a few seconds on one GPU; the DDP test needs two.
"""
import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from detector import Detector
from detector.config import load_config
from detector.engine import train
from detector.engine.checkpoint import last_checkpoint, load_training_state
from detector.engine.trainer import has_bfloat16_hardware, resolve_amp_dtype
from detector.inference import predict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def _train(tiny_config, out, *overrides, resume=False):
    cfg = load_config(tiny_config, [f"output_dir={out}", "train.device=cuda", *overrides])
    return train(cfg, resume=resume, progress=False)


def _losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [row["loss"] for row in map(json.loads, f) if "loss" in row]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_amp_trains_and_resumes(tiny_config, tmp_path, dtype):
    if dtype == "bfloat16" and not has_bfloat16_hardware(CUDA):
        pytest.skip("this GPU has no bfloat16 hardware")
    out = str(tmp_path / "run")
    common = ["train.amp=true", f"train.amp_dtype={dtype}", "data.val.ann_file=", "train.checkpoint_period=3",
              "train.log_period=1"]
    _train(tiny_config, out, "train.max_iter=3", *common)
    state = load_training_state(last_checkpoint(out))
    assert state["iteration"] == 3
    assert bool(state["scaler"]) == (dtype == "float16")  # a scale only where float16 needs one
    assert state["rng"]["cuda"].dtype == torch.uint8  # the run's own GPU's generator, one state
    _train(tiny_config, out, "train.max_iter=6", *common, resume=True)
    assert load_training_state(os.path.join(out, "model_final.pth"))["iteration"] == 6
    losses = _losses(out)
    assert len(losses) == 6 and np.isfinite(losses).all()


def test_auto_amp_dtype_matches_the_hardware():
    expected = torch.bfloat16 if torch.cuda.get_device_capability(CUDA) >= (8, 0) else torch.float16
    assert resolve_amp_dtype("auto", CUDA) == expected


def test_a_short_run_evaluates_and_its_checkpoint_loads_on_the_cpu(tiny_config, tmp_path, tiny_dataset):
    out = str(tmp_path / "run")
    stats = _train(tiny_config, out, "train.max_iter=8", "train.amp=true", "model.inference.score_thresh=0.0")
    assert 0.0 <= stats["AP"] <= 1.0
    for name in ("metrics.json", "detections.json", "model_final.pth", "loss.png"):
        assert os.path.isfile(os.path.join(out, name)), name
    path = os.path.join(out, "model_final.pth")
    image = os.path.join(tiny_dataset, "val", "000001.png")
    on_cuda, on_cpu = Detector.from_checkpoint(path), Detector.from_checkpoint(path, device="cpu")
    assert on_cuda.device.type == "cuda"  # auto: the best device here
    got, expected = on_cuda(image), on_cpu(image)
    assert len(expected["boxes"]) > 0
    # TF32 convolutions on the GPU: scores agree to about 1e-3, not to float32's rounding
    np.testing.assert_allclose(np.sort(got["scores"])[-5:], np.sort(expected["scores"])[-5:], rtol=0, atol=5e-3)
    records = predict(on_cuda, [image], str(tmp_path / "preds"), score_thresh=0.0, progress=False)
    assert records[0]["boxes"] and "error" not in records[0]


def test_export_from_a_cuda_model_gives_onnx_runtimes_detections(tiny_config, tmp_path):
    pytest.importorskip("onnxruntime")
    import copy

    from detector.export import check_against_eager, export_onnx, sample_images
    from detector.modeling import build_model

    cfg = load_config(tiny_config, ["model.inference.score_thresh=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg).to(CUDA).eval()
    path = export_onnx(model, str(tmp_path / "m.onnx"))
    assert next(model.parameters()).is_cuda  # the caller's model stays on its GPU
    images, _ = sample_images(cfg, 3)
    report = check_against_eager(copy.deepcopy(model).cpu(), path, images)
    assert not report["problems"] and report["detections"] > 0


def test_fused_focal_gradient_in_float16_matches_autograd():
    from detector.losses import sigmoid_focal_loss, sigmoid_focal_loss_from_labels

    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (torch.randn(4, 2000, 80, generator=g, device=CUDA) * 3).half()
    labels = torch.randint(-1, 81, (4, 2000), generator=g, device=CUDA)
    fused_x = logits.clone().requires_grad_()
    fused = sigmoid_focal_loss_from_labels(fused_x, labels)
    fused.backward()
    ref_x = logits.float().requires_grad_()
    targets = torch.nn.functional.one_hot(labels.clamp(min=0), 81)[..., :80].float()
    ref = (sigmoid_focal_loss(ref_x, targets, reduction="none") * (labels >= 0)[..., None]).sum()
    ref.backward()
    assert fused.dtype == torch.float32 and fused_x.grad.dtype == torch.float16
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-3)
    # the gradient is computed in float32 and rounded once to float16
    torch.testing.assert_close(fused_x.grad.float(), ref_x.grad, rtol=1e-3, atol=1e-6)


def test_postprocessing_on_the_gpu_equals_the_cpus():
    from detector.modeling.box_coder import BoxCoder
    from detector.modeling.postprocess import postprocess_detections

    g = torch.Generator().manual_seed(0)
    level_sizes = [9 * s * s for s in (100, 50, 25, 13, 7)]  # an 800 px image's anchors
    num_anchors = sum(level_sizes)
    xy = torch.rand(num_anchors, 2, generator=g) * 760
    anchors = torch.cat([xy, xy + 8 + torch.rand(num_anchors, 2, generator=g) * 200], 1)
    logits = torch.randn(8, num_anchors, 80, generator=g) - 3.5  # 8 images: ~40,000 candidates after top-k
    deltas = 0.2 * torch.randn(8, num_anchors, 4, generator=g)
    sizes = [(800, 800)] * 8

    def run(device):
        return postprocess_detections(logits.to(device), torch.sigmoid, deltas.to(device), anchors.to(device),
                                      level_sizes, sizes, BoxCoder(), 0.05, 1000, 0.5, 100, math.log(0.05 / 0.95))

    for got, expected in zip(run(CUDA), run("cpu")):
        assert len(expected["boxes"]) == 100
        torch.testing.assert_close(got["scores"].cpu(), expected["scores"])
        torch.testing.assert_close(got["boxes"].cpu(), expected["boxes"], rtol=1e-5, atol=1e-3)
        assert torch.equal(got["labels"].cpu(), expected["labels"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs two GPUs")
def test_ddp_over_nccl_trains_and_evaluates(tiny_config, tmp_path):
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "detector", "train", tiny_config, "--output-dir", out, "train.max_iter=4",
           "train.device=cuda", "train.amp=true", "model.backbone.norm=frozen_bn"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model_final.pth", "metrics.json", "detections.json"):
        assert os.path.exists(os.path.join(out, name)), name
