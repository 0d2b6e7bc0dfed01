import pytest
import torch

from detector.config import Config
from detector.engine.optim import build_optimizer, lr_factor


def test_warmup_and_steps():
    kw = dict(max_iter=100, schedule="step", steps=[60, 80], gamma=0.1, warmup_iters=10, warmup_factor=0.001)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(5, **kw) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(10, **kw) == 1.0
    assert lr_factor(59, **kw) == 1.0
    assert lr_factor(60, **kw) == pytest.approx(0.1)
    assert lr_factor(80, **kw) == pytest.approx(0.01)


def test_cosine():
    kw = dict(max_iter=100, schedule="cosine", warmup_iters=0)
    assert lr_factor(0, **kw) == 1.0
    assert lr_factor(50, **kw) == pytest.approx(0.5)
    assert lr_factor(100, **kw) == pytest.approx(0.0)


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    cfg = Config()
    opt = build_optimizer(cfg, model)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and [p.shape for p in decay["params"]] == [(4, 3, 3, 3)]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    cfg.solver.optimizer = "adamw"
    assert isinstance(build_optimizer(cfg, model), torch.optim.AdamW)
