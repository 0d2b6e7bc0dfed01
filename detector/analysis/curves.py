"""The focal loss and its gradient against p_t (the paper's Figure 1)."""
from typing import Dict, Sequence

import numpy as np
import torch

from ..losses import sigmoid_focal_loss

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def focal_curves(gammas: Sequence[float] = GAMMAS, num: int = 400) -> Dict[str, np.ndarray]:
    """For a positive (t = 1) with p_t from 0.005 to 0.995: FL(p_t) = -(1 - p_t)^gamma log p_t
    (no alpha) and dFL/dx, the gradient with respect to the logit x (p_t = sigmoid(x)).

    Returns ``{"p_t": [P], "loss": [G, P], "grad": [G, P]}``; values come from
    :func:`detector.losses.sigmoid_focal_loss` and autograd, in float64.
    """
    p_t = torch.linspace(0.005, 0.995, num, dtype=torch.float64)
    losses, grads = [], []
    for gamma in gammas:
        x = torch.logit(p_t).requires_grad_()
        loss = sigmoid_focal_loss(x, torch.ones_like(x), alpha=-1, gamma=gamma)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        losses.append(loss.detach().numpy())
        grads.append(grad.numpy())
    return {"p_t": p_t.numpy(), "loss": np.stack(losses), "grad": np.stack(grads), "gammas": np.asarray(gammas)}


def focal_gradient_closed_form(p_t: np.ndarray, gamma: float) -> np.ndarray:
    """dFL/dx for t = 1: (1 - p)^gamma (gamma p log p - (1 - p)), p = sigmoid(x)."""
    return (1 - p_t) ** gamma * (gamma * p_t * np.log(p_t) - (1 - p_t))


def plot_focal_curves(curves: Dict[str, np.ndarray], out_path: str) -> str:
    from ..figures import save_figure, subplots

    fig, (ax, ax_grad) = subplots(1, 2, figsize=(12, 4.5))
    for gamma, loss, grad in zip(curves["gammas"], curves["loss"], curves["grad"]):
        label = f"gamma={gamma:g}" + (" (CE)" if gamma == 0 else "")
        ax.plot(curves["p_t"], loss, label=label)
        ax_grad.plot(curves["p_t"], grad, label=label)
    ax.set_xlabel("probability of ground-truth class p_t")
    ax.set_ylabel("loss")
    ax.set_ylim(0, 5)
    ax.axvspan(0.6, 1.0, color="green", alpha=0.08, label="well-classified examples")
    ax.set_title("focal loss FL(p_t) = -(1 - p_t)^gamma log p_t")
    ax_grad.set_xlabel("p_t")
    ax_grad.set_ylabel("dFL / dx (x: the logit)")
    ax_grad.set_title("gradient with respect to the logit")
    for a in (ax, ax_grad):
        a.grid(alpha=0.3)
        a.legend()
    return save_figure(fig, out_path)
