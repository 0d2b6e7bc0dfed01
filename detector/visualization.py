"""Plots written next to a run's outputs (matplotlib, headless). Other modules draw with
the ``plt`` and :func:`save_figure` from here, so the backend is chosen in one place."""
import json
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, out_path: str) -> str:
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_losses(metrics_jsonl: str, out_path: str) -> str:
    """Loss curves from ``metrics.jsonl`` (every ``loss*`` key) and the learning rate."""
    rows = []
    with open(metrics_jsonl) as f:
        for line in f:
            row = json.loads(line)
            if "iteration" in row and "loss" in row:
                rows.append(row)
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    if rows:
        its = [r["iteration"] for r in rows]
        for key in sorted(k for k in rows[0] if k.startswith("loss")):
            ax.plot(its, [r[key] for r in rows], label=key)
        ax_lr.plot(its, [r["lr"] for r in rows], color="gray")
    ax.set_yscale("log")
    ax.set_ylabel("loss (smoothed)")
    ax.legend()
    ax.grid(alpha=0.3)
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("iteration")
    ax.set_title(os.path.basename(os.path.dirname(os.path.abspath(out_path))) or "training")
    return save_figure(fig, out_path)


def plot_pr_curves(precision: np.ndarray, class_names: Sequence[str], out_path: str, worst: int = 3) -> str:
    """Precision-recall at IoU 0.5 and 0.75 from COCOeval's ``precision`` ``[T, R, K, A, M]``:
    the mean over classes and the ``worst`` classes by AP."""
    recall = np.linspace(0, 1, precision.shape[1])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    per_class_ap = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0, -1]
        per_class_ap.append(p[p > -1].mean() if (p > -1).any() else np.nan)
    order = [k for k in np.argsort(np.nan_to_num(per_class_ap, nan=np.inf))[:worst]]
    for ax, t, iou in zip(axes, (0, 5), (0.5, 0.75)):
        p = precision[t, :, :, 0, -1]  # [R, K]
        valid = (p > -1).all(axis=0)
        if valid.any():
            ax.plot(recall, p[:, valid].mean(axis=1), color="black", lw=2.5, label="all classes (mean)")
        for k in order:
            if valid[k]:
                ax.plot(recall, p[:, k], lw=1.2, label=f"{class_names[k]} (AP {100 * per_class_ap[k]:.1f})")
        ax.set_title(f"precision-recall at IoU {iou}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, out_path)
