"""``ablation.png``: AP per point with its spread over seeds (against gamma per alpha, with a
heatmap, when the points are an (alpha, gamma) grid), and AP against iteration per point when
the runs evaluated during training (``train.eval_period``): a loss that converges slower looks
different there from one that converges worse."""
import math
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..serialization import read_jsonl
from .grid import ALPHA, GAMMA, Point
from .tables import PointSummary


def convergence_curves(points: Sequence[PointSummary], output_dir: str) -> Dict[Point, Tuple[List[int], List[float]]]:
    """Per point, the val AP logged during training and at the end, averaged over the seeds at
    each iteration all of them reached: (iterations, mean AP %)."""
    curves = {}
    for p in points:
        per_run = []
        for run in p.runs:
            path = os.path.join(output_dir, run.name, "metrics.jsonl")
            if not os.path.isfile(path):
                continue
            rows = read_jsonl(path)
            values = {r["iteration"]: 100 * r["val/AP"] for r in rows if "val/AP" in r}
            if values:
                values[max(r["iteration"] for r in rows)] = 100 * run.metrics["AP"]
                per_run.append(values)
        if per_run:
            common = sorted(set.intersection(*(set(v) for v in per_run)))
            if len(common) > 1:
                curves[p.point] = (common, [float(np.mean([v[i] for v in per_run])) for i in common])
    return curves


def _is_alpha_gamma_grid(points: Sequence[PointSummary]) -> bool:
    """Points that set alpha and gamma only, with some alpha at two gammas or more: AP against
    gamma then draws curves; otherwise (CE, alpha-CE, FL) named bars read better."""
    if not all(set(p.point.settings) == {ALPHA, GAMMA} for p in points):
        return False
    gammas: Dict[float, set] = {}
    for p in points:
        gammas.setdefault(p.point.settings[ALPHA], set()).add(p.point.settings[GAMMA])
    return any(len(g) > 1 for g in gammas.values())


def _mean_std(p: PointSummary) -> Tuple[float, float]:
    mean, std = p.stats["AP"]
    return mean, 0.0 if math.isnan(std) else std


def plot_ablation(points: Sequence[PointSummary], curves: Dict, out_path: str) -> str:
    from ..figures import save_figure, subplots

    points = [p for p in points if p.runs]
    grid = _is_alpha_gamma_grid(points)
    alphas = sorted({p.point.settings[ALPHA] for p in points}) if grid else []
    gammas = sorted({p.point.settings[GAMMA] for p in points}) if grid else []
    heatmap = grid and len(alphas) > 1 and len(gammas) > 1
    panels = 1 + heatmap + bool(curves)
    fig, axes = subplots(1, panels, figsize=(6.5 * panels, 4.8), squeeze=False)
    ax = axes[0, 0]
    seeds = sorted({len(p.runs) for p in points})
    spread = f" (mean ± std over {'/'.join(map(str, seeds))} seeds)" if seeds != [1] else ""
    if grid:
        by_key = {(p.point.settings[ALPHA], p.point.settings[GAMMA]): p for p in points}
        for a in alphas:
            row = sorted((g, by_key[(a, g)]) for g in gammas if (a, g) in by_key)
            ax.errorbar([g for g, _ in row], [_mean_std(p)[0] for _, p in row], yerr=[_mean_std(p)[1] for _, p in row],
                        marker="o", capsize=4, label=f"alpha={a:g}")
        ax.set_xlabel("gamma")
        ax.set_title("AP against gamma" + spread)
        ax.legend()
    else:
        means, stds = zip(*(_mean_std(p) for p in points))
        ax.bar(range(len(points)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
        for i, p in enumerate(points):  # each seed as a dot: the spread the error bar summarises
            values = list(p.ap_by_seed().values())
            ax.plot([i] * len(values), values, "k.", ms=4)
        ax.set_xticks(range(len(points)), [p.point.name for p in points], rotation=30, ha="right", fontsize=8)
        ax.set_title("AP per point" + spread)
    ax.set_ylabel("AP (COCO, %)")
    ax.grid(alpha=0.3)
    column = 1
    if heatmap:
        hm = axes[0, column]
        values = np.full((len(alphas), len(gammas)), np.nan)
        for p in points:
            values[alphas.index(p.point.settings[ALPHA]), gammas.index(p.point.settings[GAMMA])] = _mean_std(p)[0]
        image = hm.imshow(values, cmap="viridis", aspect="auto", origin="lower")
        hm.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        hm.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        hm.set_xlabel("gamma")
        hm.set_ylabel("alpha")
        for i, j in zip(*np.where(~np.isnan(values))):
            hm.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(image, ax=hm, label="mean AP (%)")
        hm.set_title("mean AP over (alpha, gamma)")
        column += 1
    if curves:
        cv = axes[0, column]
        for point, (iterations, ap) in curves.items():
            cv.plot(iterations, ap, marker=".", label=point.name)
        cv.set_xlabel("iteration")
        cv.set_ylabel("val AP (%), mean over seeds")
        cv.set_title("AP against iteration: slower or worse?")
        cv.grid(alpha=0.3)
        cv.legend(fontsize=8)
    return save_figure(fig, out_path)
