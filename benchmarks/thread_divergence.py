"""How fast two trainings of the same config and seed drift apart when only the number of CPU
threads differs: two copies of the model, trained in lockstep on the same batches, one with
``--threads A`` intra-op threads and one with ``B``.

    python -m benchmarks.thread_divergence configs/demo/shapes_focal.yaml --iterations 40 \\
        --threads 1 2 --output docs/results/thread_count train.seed=1

Writes ``divergence.jsonl`` (per iteration: the relative distance ||a - b|| / ||a|| of all
parameters, both losses, and the parameter tensor that drifted most; for the first step,
from identical weights, the gradients that differ and their largest difference) and
``divergence.png``.
With the same count for both (``--threads 1 1``) the distance stays exactly 0: training is
deterministic on the CPU for a fixed thread count.
"""
import argparse
import copy
import json
import os
import sys
from typing import Dict, List

import torch

from detector.comm import seed_everything
from detector.config import load_config
from detector.data import build_dataset, build_train_loader
from detector.engine.optim import build_lr_scheduler, build_optimizer
from detector.modeling import build_model


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def diverge(cfg, iterations: int, threads: List[int]) -> List[Dict]:
    """Train two copies of ``cfg``'s model in lockstep, copy i with ``threads[i]`` threads."""
    seed_everything(cfg.train.seed)
    dataset = build_dataset(cfg, "train", training=True)
    first = build_model(cfg)
    copies = []
    for model in (first, copy.deepcopy(first)):
        optimizer = build_optimizer(cfg, model)
        copies.append((model, optimizer, build_lr_scheduler(cfg, optimizer)))
    loader = iter(build_train_loader(cfg, dataset, cfg.solver.ims_per_batch))
    rows = []
    for iteration in range(1, iterations + 1):
        images, targets = next(loader)
        losses, gradients = [], []
        for n, (model, optimizer, scheduler) in zip(threads, copies):
            torch.set_num_threads(n)
            model.train()
            loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if iteration == 1:  # kept for the first step only, taken from identical weights
                gradients.append({name: p.grad.clone() for name, p in model.named_parameters()
                                  if p.grad is not None})
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        a, b = copies[0][0], copies[1][0]
        per_tensor = {name: ((p - q).norm() / p.norm().clamp_min(1e-12)).item()
                      for (name, p), q in zip(a.named_parameters(), b.parameters())}
        worst = max(per_tensor, key=per_tensor.get)
        flat_a, flat_b = _flat(a), _flat(b)
        rows.append({"iteration": iteration, "threads": threads,
                     "relative_distance": ((flat_a - flat_b).norm() / flat_a.norm()).item(),
                     "loss_a": losses[0], "loss_b": losses[1],
                     "most_drifted": worst, "its_relative_distance": per_tensor[worst]})
        if gradients:  # from the same weights and batch: which gradients the thread count changes
            rows[-1]["first_step_gradients_that_differ"] = {
                name: (g - gradients[1][name]).abs().max().item() for name, g in gradients[0].items()
                if not torch.equal(g, gradients[1][name])}
        print(json.dumps(rows[-1]), flush=True)
    return rows


def plot(rows: List[Dict], threads: List[int], path: str) -> None:
    from detector.figures import save_figure, subplots

    fig, ax = subplots(figsize=(6, 4))
    its = [r["iteration"] for r in rows]
    ax.semilogy(its, [max(r["relative_distance"], 1e-16) for r in rows], marker="o", markersize=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("||a - b|| / ||a|| of all parameters")
    ax.set_title(f"same config and seed, {threads[0]} vs {threads[1]} CPU threads")
    ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--threads", type=int, nargs=2, default=[1, 2], metavar=("A", "B"))
    parser.add_argument("--output", required=True, help="directory for divergence.jsonl and divergence.png")
    parser.add_argument("overrides", nargs="*", help="config overrides KEY=VALUE")
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(args.config, args.overrides)
    rows = diverge(cfg, args.iterations, args.threads)
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "divergence.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    plot(rows, args.threads, os.path.join(args.output, "divergence.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
