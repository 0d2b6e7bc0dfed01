"""Cumulative distribution of the loss over positive and negative anchors of a trained model
(the paper's Figure 4): how much of the total loss the easy negatives carry under CE and FL."""
from typing import Dict, Sequence

import numpy as np
import torch

from ..data import build_eval_loader
from ..errors import UserError
from ..losses import sigmoid_focal_loss
from ..progress import progress as progress_bar

GAMMAS = (0.0, 0.5, 1.0, 2.0)


@torch.no_grad()
def anchor_losses(model, cfg, dataset, device, gammas: Sequence[float] = GAMMAS, max_images: int = 200,
                  progress: bool = True) -> Dict[str, Dict[float, np.ndarray]]:
    """Per-anchor loss (summed over classes, no alpha) of the model's predictions, for each
    gamma, split into positive and negative anchors by the model's own matcher."""
    if model.background_logit:
        raise UserError("the loss distribution is defined for sigmoid heads (loss.cls.name: sigmoid_focal)")
    model.eval()
    indices = list(range(min(max_images, len(dataset))))
    losses = {"positive": {g: [] for g in gammas}, "negative": {g: [] for g in gammas}}
    loader = build_eval_loader(cfg, dataset, indices)
    for images, targets in progress_bar(loader, desc="anchor losses", unit="batch", disable=not progress, leave=False):
        images = [im.to(device) for im in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        out = model.dense_outputs(images, targets)
        logits = out["logits"]
        labels, _ = model.label_anchors(out["anchors"], out["level_sizes"], out["targets"])
        k = logits.shape[-1]
        one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), k + 1)[..., :k].float()
        positive, negative = (labels >= 0) & (labels < k), labels == k
        for gamma in gammas:
            per_anchor = sigmoid_focal_loss(logits, one_hot, alpha=-1, gamma=gamma).sum(-1)
            losses["positive"][gamma].append(per_anchor[positive].cpu())
            losses["negative"][gamma].append(per_anchor[negative].cpu())
    return {kind: {g: torch.cat(v).double().numpy() for g, v in per_gamma.items()}
            for kind, per_gamma in losses.items()}


def cumulative(losses: np.ndarray) -> np.ndarray:
    """Normalised cumulative loss of the anchors sorted from easiest (lowest loss) to hardest."""
    if losses.size == 0:
        return np.zeros(0)
    c = np.cumsum(np.sort(losses))
    return c / c[-1] if c[-1] > 0 else c


def share_of_easiest(losses: np.ndarray, fraction: float = 0.9) -> float:
    """Share of the total loss carried by the easiest ``fraction`` of the anchors."""
    c = cumulative(losses)
    return float(c[int(np.floor(fraction * len(c))) - 1]) if len(c) else float("nan")


def plot_distribution(losses: Dict[str, Dict[float, np.ndarray]], out_path: str) -> str:
    from ..figures import save_figure, subplots

    fig, axes = subplots(1, 2, figsize=(12, 4.5))
    for ax, kind in zip(axes, ("positive", "negative")):
        for gamma, values in losses[kind].items():
            c = cumulative(values)
            ax.plot(np.linspace(0, 1, len(c)), c, label=f"gamma={gamma:g}" + (" (CE)" if gamma == 0 else ""))
        ax.set_xlabel(f"fraction of {kind} anchors (easiest first)")
        ax.set_ylabel("cumulative normalised loss")
        ax.set_title(f"{kind} anchors ({len(next(iter(losses[kind].values())))})")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, out_path)
