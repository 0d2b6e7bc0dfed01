"""Optimizer and learning-rate schedule (iteration-based)."""
import math
from typing import List

import torch
from torch import nn


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW. Weight decay skips biases and normalisation
    parameters (1-d tensors): decaying a norm's scale towards 0 only fights the norm."""
    s = cfg.solver
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if s.optimizer == "sgd":  # the choices are the config's (config.OPTIMIZERS)
        return torch.optim.SGD(groups, lr=s.base_lr, momentum=s.momentum)
    return torch.optim.AdamW(groups, lr=s.base_lr)


def lr_factor(iteration: int, max_iter: int, schedule: str = "step", steps: List[int] = (),
              gamma: float = 0.1, warmup_iters: int = 0, warmup_factor: float = 0.001) -> float:
    """The multiplier of base_lr at ``iteration``.

    Linear warmup from ``warmup_factor`` to 1 over ``warmup_iters`` (a randomly initialised
    head with a large LR diverges in the first iterations), then either step decay (x gamma at
    each of ``steps``, the paper's 1x: 60k and 80k of 90k) or a cosine from 1 to 0.
    """
    if schedule == "step":  # the choices are the config's (config.LR_SCHEDULES)
        factor = gamma ** sum(iteration >= s for s in steps)
    else:
        factor = 0.5 * (1.0 + math.cos(math.pi * min(iteration, max_iter) / max_iter))
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    s = cfg.solver
    max_iter = cfg.train.max_iter
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda it: lr_factor(it, max_iter, s.lr_schedule, s.steps, s.gamma, s.warmup_iters, s.warmup_factor),
    )
