"""Figures written next to a run's outputs, and boxes drawn on images. Other modules draw with
:func:`subplots` and :func:`save_figure` from here.

Figures are matplotlib ``Figure`` objects written straight to their files, never through
pyplot: nothing here chooses a backend or keeps a figure open, so a notebook that imports the
package keeps its own backend, and a machine without a display needs none.
"""
import os
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from .serialization import read_jsonl


def subplots(*args, figsize=None, **kwargs):
    """``(figure, axes)`` as ``plt.subplots`` gives them, for a figure that only :func:`save_figure`
    writes (no pyplot, no backend)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def draw_boxes(image: np.ndarray, boxes, captions: Sequence[str], colors: Optional[Sequence[str]] = None,
               min_side: int = 400) -> np.ndarray:
    """``image`` (``[H, W, 3]`` uint8) with ``boxes`` (``[D, 4]`` xyxy px) and their captions
    drawn. Small images are enlarged (nearest neighbour) so that the captions stay readable."""
    import torch
    from torchvision.utils import draw_bounding_boxes

    tensor = torch.as_tensor(np.array(image, copy=not image.flags.writeable)).permute(2, 0, 1)
    scale = max(1, int(np.ceil(min_side / max(1, min(tensor.shape[1:])))))
    drawn = torch.nn.functional.interpolate(tensor[None], scale_factor=scale, mode="nearest")[0]
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    if len(boxes):
        drawn = draw_bounding_boxes(drawn, boxes * scale, labels=list(captions), colors=colors,
                                    width=max(1, round(min(drawn.shape[1:]) / 200)))
    return drawn.permute(1, 2, 0).numpy()


def save_image(array: np.ndarray, out_path: str) -> str:
    from PIL import Image

    Image.fromarray(array).save(out_path)
    return out_path


def save_figure(fig, out_path: str) -> str:
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    return out_path


def plot_training(metrics_jsonl: str, out_path: str) -> str:
    """The training curves from ``metrics.jsonl``: every ``loss*`` key (log scale), the val AP
    of the evaluations during training (``train.eval_period``) on the right axis, and the
    learning rate below."""
    logged = read_jsonl(metrics_jsonl)
    rows = [row for row in logged if "loss" in row]
    evals = [row for row in logged if "loss" not in row and "val/AP" in row]
    fig, (ax, ax_lr) = subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    if rows:
        its = [r["iteration"] for r in rows]
        for key in sorted(k for k in rows[0] if k.startswith("loss")):
            ax.plot(its, [r[key] for r in rows], label=key)
        ax_lr.plot(its, [r["lr"] for r in rows], color="gray")
    ax.set_yscale("log")
    ax.set_ylabel("loss (smoothed)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if evals:
        ap = ax.twinx()
        points = ap.plot([r["iteration"] for r in evals], [100 * r["val/AP"] for r in evals], "o-", color="black",
                         label="val AP (right)")
        ap.set_ylabel("val AP (%)")
        handles, labels = handles + points, labels + ["val AP (right)"]
    ax.legend(handles, labels, loc="upper right")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("iteration")
    ax.set_title(os.path.basename(os.path.dirname(os.path.abspath(out_path))) or "training")
    return save_figure(fig, out_path)


def plot_pr_curves(precision: np.ndarray, class_names: Sequence[str], out_path: str, worst: int = 3) -> str:
    """Precision-recall at IoU 0.5 and 0.75 from COCOeval's ``precision`` ``[T, R, K, A, M]``:
    the mean over classes and the ``worst`` classes by AP."""
    recall = np.linspace(0, 1, precision.shape[1])
    fig, axes = subplots(1, 2, figsize=(11, 4.5))
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


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], score_thresh: float, out_path: str) -> str:
    """The ``[K + 1, K + 1]`` confusion matrix (rows ground truth, columns detections, the
    last of each background), each row normalised to the share of its ground truth, counts
    written in the cells."""
    names = list(class_names) + ["background"]
    k = len(names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    fig, ax = subplots(figsize=(2.5 + 0.6 * k, 2 + 0.55 * k))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("detected as")
    ax.set_ylabel("ground truth")
    ax.set_title(f"confusion at IoU 0.5, score >= {score_thresh:g}\n(background row: false positives; "
                 "column: missed)", fontsize=9)
    fig.colorbar(image, ax=ax, label="share of the row")
    return save_figure(fig, out_path)
