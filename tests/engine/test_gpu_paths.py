"""The GPU switches (AMP, channels_last, torch.compile) run on the CPU too, so each is
exercised here on the tiny config."""
import json
import os

import pytest
import torch

from detector.config import load_config
from detector.engine import train
from detector.engine.trainer import compile_dense_layers, resolve_amp_dtype
from detector.modeling import build_model


def _losses(output_dir):
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


def _run(tiny_config, tmp_path, *overrides):
    out = str(tmp_path / "run")
    cfg = load_config(tiny_config, [f"output_dir={out}", "train.max_iter=4", "train.log_period=2",
                                    "data.val.ann_file=", "data.train.transforms=[]", *overrides])
    train(cfg, progress=False)
    return _losses(out)


def test_amp_trains_in_bfloat16_on_the_cpu(tiny_config, tmp_path, monkeypatch):
    seen = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    losses = _run(tiny_config, tmp_path, "train.amp=true")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert torch.bfloat16 in seen  # the head's convolutions ran under autocast


def test_amp_dtype_choice():
    cpu = torch.device("cpu")
    assert resolve_amp_dtype("auto", cpu) == torch.bfloat16
    assert resolve_amp_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="float16 needs CUDA"):
        resolve_amp_dtype("float16", cpu)


def test_channels_last_gives_the_same_losses(tiny_config):
    torch.manual_seed(0)
    plain = build_model(load_config(tiny_config))
    cl = build_model(load_config(tiny_config, ["model.channels_last=true"]))
    cl.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    a, b = plain(images, targets), cl(images, targets)
    # float32 on purpose: users train channels_last in float32. NCHW and NHWC run different
    # kernels; measured gap about 1e-7 relative both with oneDNN's AVX2 kernels and with
    # ONEDNN_MAX_CPU_ISA=SSE41, so 1e-4 leaves three orders of margin on either kind of CPU.
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    assert cl.head.cls_score.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_keeps_parameter_names(tiny_config):
    model = build_model(load_config(tiny_config))
    keys = list(model.state_dict())
    compile_dense_layers(model)
    assert list(model.state_dict()) == keys  # checkpoints stay interchangeable
    assert all(m._compiled_call_impl is not None for m in (model.backbone, model.fpn, model.head))


def test_compile_trains(tiny_config, tmp_path, monkeypatch):
    # Graph capture (dynamo) and the compiled backward (AOTAutograd) are where our code meets
    # torch.compile, and they are the same on every device; the code generator after them is not
    # (C++ here, Triton on a GPU). So the run compiles with backend "aot_eager": capture and
    # backward without code generation. Inductor's C++ build took 110 to 180 s of this test on
    # 2 AVX2 cores (cold cache, beside a 2-thread study run), a backend GPU users never run.
    captured = []
    original = torch.nn.Module.compile

    def capture_only(self, *args, **kwargs):
        captured.append(type(self).__name__)
        original(self, *args, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", capture_only)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        losses = _run(tiny_config, tmp_path, "train.compile=true")
    assert len(captured) == 3  # backbone, FPN and head
    assert all(torch.isfinite(torch.tensor(losses)))


def test_auto_amp_dtype_follows_the_run_devices_compute_capability(monkeypatch):
    # A T4 (7.5) has no bfloat16 hardware; torch.cuda.is_bf16_supported() counts emulation and
    # says yes there, and it asks the current device, not the run's.
    capability = {0: (9, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: capability[torch.device(device).index or 0])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "fake GPU")
    assert resolve_amp_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16  # an H100
    assert resolve_amp_dtype("auto", torch.device("cuda", 1)) == torch.float16  # the T4, not the current H100
    assert resolve_amp_dtype("bfloat16", torch.device("cuda", 1)) == torch.bfloat16  # asked for: warned, kept


def test_resuming_with_float16_after_a_run_without_a_scaler(tiny_config, tmp_path, monkeypatch):
    # A float32 (or bfloat16) run saves an empty scaler state; resuming it with float16 and a
    # scaler failed with "The source state dict is empty".
    from detector.engine import trainer as trainer_module

    out = str(tmp_path / "run")
    cfg = load_config(tiny_config, [f"output_dir={out}", "train.max_iter=2", "data.val.ann_file=",
                                    "data.train.transforms=[]"])
    train(cfg, progress=False)
    # float16 needs CUDA; here the CPU's GradScaler stands in for it
    monkeypatch.setattr(trainer_module, "resolve_amp_dtype", lambda name, device: torch.float16)
    resumed = trainer_module.Trainer(load_config(tiny_config, [f"output_dir={out}", "train.max_iter=4",
                                                               "data.val.ann_file=", "train.amp=true"]),
                                     resume=True, progress=False)
    assert resumed.start_iter == 2 and resumed.scaler.is_enabled()
    assert resumed.scaler.get_scale() == 2.0 ** 16  # a fresh scale: the run had none
