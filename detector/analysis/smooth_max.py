"""The focal loss as a smoothed max-margin loss.

For a softmax over logits z with true class t, let d = z_t - LSE_{i != t} z_i. Then exactly

    CE = -log p_t = softplus(-d),    1 - p_t = sigmoid(-d),
    FL = (1 - p_t)^gamma CE = exp(-gamma softplus(d)) softplus(-d).

Replacing the smooth functions by the ones they smooth (LSE by max, softplus by relu) gives

    FL ~ exp(-gamma [z_t - max_{i != t} z_i]_+) [max_{i != t} z_i - z_t + m]_+,

a margin hinge times a factor that is exactly 1 while the true class does not win
(z_t <= max_{i != t} z_i: the loss is CE-like) and decays as e^{-gamma * margin} once it does.
With m = 0 the gap between the two is at most log 2 + gamma / e + log(C - 1) (C classes):
log 2 from softplus against relu, gamma / e from the factor, log(C - 1) from LSE against max.
With m = 0 the factor multiplies a hinge that is already 0 where the true class wins, so the
approximation does not depend on gamma; a margin m > 0 (the plot uses m = 1) shows what the
factor does: inside the margin it shrinks the hinge as e^{-gamma * margin}, more for larger
gamma, which is the ordering of the exact curves.
"""
import math
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import softmax_focal_loss


def lse(x: torch.Tensor, g: float = 1.0, dim: int = -1) -> torch.Tensor:
    """(1/g) log sum exp(g x): between max(x) and max(x) + log(n) / g."""
    return torch.logsumexp(g * x, dim=dim) / g


def margin(z: torch.Tensor, t: torch.Tensor, smooth: bool) -> torch.Tensor:
    """z_t - LSE_{i != t} z_i (smooth) or z_t - max_{i != t} z_i, for ``z [N, C]``, ``t [N]``."""
    z_t = z.gather(-1, t[:, None]).squeeze(-1)
    others = z.scatter(-1, t[:, None], float("-inf"))
    return z_t - (torch.logsumexp(others, -1) if smooth else others.max(-1).values)


def focal_exact(z: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """exp(-gamma softplus(d)) softplus(-d): the softmax focal loss rewritten, not approximated."""
    d = margin(z, t, smooth=True)
    return torch.exp(-gamma * F.softplus(d)) * F.softplus(-d)


def focal_max_margin(z: torch.Tensor, t: torch.Tensor, gamma: float, m: float = 0.0) -> torch.Tensor:
    """exp(-gamma [z_t - max_{i != t} z_i]_+) [max_{i != t} z_i - z_t + m]_+."""
    g = margin(z, t, smooth=False)
    return torch.exp(-gamma * torch.relu(g)) * torch.relu(-g + m)


PLOT_MARGIN = 1.0


def gap_bound(gamma: float, num_classes: int) -> float:
    return math.log(2) + gamma / math.e + math.log(num_classes - 1)


def sweep(gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 5.0), num_classes: int = 5, num: int = 2001,
          seed: int = 0) -> Dict[str, object]:
    """Exact and max-margin focal loss, in float64, on two sweeps of the true logit z_t:
    one with the other logits fixed at 0, -1, -2, ... (smooth curves, for the plot) and one
    with random other logits (for the statistics). Returns the curves, the largest gap and
    its bound per gamma, and the mean modulating factor (1 - p_t)^gamma where the true class
    loses (margin <= 0) and where it wins by more than 2."""
    z_t = torch.linspace(-10, 10, num, dtype=torch.float64)
    fixed = -torch.arange(num_classes - 1, dtype=torch.float64).expand(num, -1)
    g = torch.Generator().manual_seed(seed)
    random_others = torch.randn(num, num_classes - 1, generator=g, dtype=torch.float64) * 2
    t = torch.zeros(num, dtype=torch.int64)
    z_plot = torch.cat([z_t[:, None], fixed], dim=1)
    z = torch.cat([z_plot, torch.cat([z_t[:, None], random_others], dim=1)])
    t2 = torch.zeros(2 * num, dtype=torch.int64)
    g_max = margin(z, t2, smooth=False)
    result: Dict[str, object] = {"margin": margin(z_plot, t, smooth=False).numpy(), "gammas": list(gammas),
                                 "exact": {}, "approx": {}, "gap": {}, "bound": {}, "factor_losing": {},
                                 "factor_winning": {}, "check_identity": 0.0, "approx_margin": {},
                                 "plot_margin_m": PLOT_MARGIN}
    for gamma in gammas:
        exact = focal_exact(z, t2, gamma)
        approx = focal_max_margin(z, t2, gamma)
        # the rewrite is exact: it equals the softmax focal loss to rounding
        identity = (exact - softmax_focal_loss(z, t2, gamma=gamma)).abs().max().item()
        result["check_identity"] = max(result["check_identity"], identity)
        factor = torch.exp(-gamma * F.softplus(margin(z, t2, smooth=True)))  # (1 - p_t)^gamma
        result["exact"][gamma] = exact[:num].numpy()
        result["approx"][gamma] = approx[:num].numpy()
        result["approx_margin"][gamma] = focal_max_margin(z_plot, t, gamma, m=PLOT_MARGIN).numpy()
        result["gap"][gamma] = (exact - approx).abs().max().item()
        result["bound"][gamma] = gap_bound(gamma, num_classes)
        result["factor_losing"][gamma] = factor[g_max <= 0].mean().item()
        result["factor_winning"][gamma] = factor[g_max > 2].mean().item()
    return result


def smooth_max_examples(num: int = 401) -> Dict[str, np.ndarray]:
    """LSE(x; g) against max for two inputs (x, 0), and softplus against relu."""
    x = torch.linspace(-4, 4, num, dtype=torch.float64)
    pair = torch.stack([x, torch.zeros_like(x)], dim=-1)
    out = {"x": x.numpy(), "max": pair.max(-1).values.numpy(), "relu": torch.relu(x).numpy(),
           "softplus": F.softplus(x).numpy()}
    for g in (1.0, 2.0, 5.0):
        out[f"lse_{g:g}"] = lse(pair, g).numpy()
    return out


def plot_smooth_max(result: Dict[str, object], examples: Dict[str, np.ndarray], out_path: str) -> str:
    from ..figures import save_figure, subplots

    fig, (ax0, ax1) = subplots(1, 2, figsize=(13, 4.5))
    x = examples["x"]
    ax0.plot(x, examples["max"], "k", lw=2, label="max(x, 0)")
    for key in [k for k in examples if k.startswith("lse_")]:
        ax0.plot(x, examples[key], "--", label=f"LSE(x, 0; g={key[4:]})")
    ax0.plot(x, examples["softplus"], ":", lw=2, label="softplus(x) = LSE(x, 0; 1)")
    ax0.set_title("smooth maxima: LSE -> max as g grows")
    ax0.set_xlabel("x")
    ax0.legend(fontsize=8)
    ax0.grid(alpha=0.3)
    m = result["margin"]
    for gamma in result["gammas"]:
        line, = ax1.plot(m, result["exact"][gamma], lw=2, label=f"gamma={gamma:g}")
        ax1.plot(m, result["approx_margin"][gamma], "--", color=line.get_color(), lw=1.2)
    ax1.set_xlabel("margin z_t - max_{i != t} z_i (other logits 0, -1, -2, -3)")
    ax1.set_ylabel("loss")
    ax1.set_xlim(-4, 4)
    ax1.set_ylim(0, 4.5)
    ax1.set_title(f"softmax FL (solid) vs exp(-gamma [margin]+) [m - margin]+, m={result['plot_margin_m']:g} (dashed)",
                  fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    return save_figure(fig, out_path)
