"""The tables and plots of ``detector ablate``: one row per (alpha, gamma) point over its seeds.

Several seeds per point make the comparison honest: ``ablation.md`` gives each point's mean
and standard deviation over its n runs, and its difference to the paper's setting, the focal
loss with alpha 0.25 and gamma 2, with a 95 % confidence interval from the differences paired
by seed (Student's t with n - 1 degrees of freedom). A point is called best only when its
lead over every other point is outside that interval; with one seed per point nothing is.
"""
import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .engine import environment

TABLE_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
REFERENCE = (0.25, 2.0)  # the paper's focal loss: the point every other one is compared with
CONFIDENCE = 0.95


@dataclass
class PointSummary:
    """The runs of one (alpha, gamma) point."""

    alpha: float
    gamma: float
    runs: list  # the RunSpecs with metrics
    failed: list
    queued: list
    paper_ap: Optional[float] = None
    stats: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # mean, std (nan for n = 1)
    vs_reference: Optional[Tuple[float, float, float, int]] = None  # mean difference, CI low, CI high, n

    @property
    def key(self) -> Tuple[float, float]:
        return (self.alpha, self.gamma)

    def ap_by_seed(self) -> Dict[Optional[int], float]:
        return {s.seed: 100 * s.metrics["AP"] for s in self.runs}


def run_value(metrics: dict, name: str) -> Optional[float]:
    """A number of a run's metrics.json as it is tabulated: COCO stats in %, the AP50 that
    background false positives cost (TIDE's ``Bkg`` delta AP) in %, the expected calibration
    error as is; None if absent."""
    if name in TABLE_STATS:
        value = metrics.get(name)
        return None if value is None or value < 0 else 100 * value
    if name == "bkg_error":
        delta = (metrics.get("tide") or {}).get("delta_ap") or {}
        return None if "Bkg" not in delta else 100 * delta["Bkg"]
    if name == "ece":
        return (metrics.get("calibration") or {}).get("ece")
    raise KeyError(name)


def run_environment(run_dir: str) -> Dict[str, str]:
    """The torch version, device, GPU model and CPU thread count a run trained with, from its
    ``environment.json`` ("1,2" where a resume changed it; "" where not recorded)."""
    entries = environment.read(run_dir)
    return {key: ",".join(dict.fromkeys(str(e.get(key, "")) for e in entries))
            for key in ("torch", "device", "gpu", "threads")}


def mixed_environment_note(environments: Sequence[Dict[str, str]]) -> str:
    """A warning when the finished runs of one table (their :func:`run_environment`)
    trained in different environments."""
    values: Dict[str, set] = {}
    for env in environments:
        for key, value in env.items():
            values.setdefault(key, set()).add(value)
    mixed = {k: sorted(v) for k, v in values.items() if len(v) > 1}
    if not mixed:
        return ""
    differences = "; ".join(f"{k}: {', '.join(x or 'not recorded' for x in v)}" for k, v in mixed.items())
    return (f"Runs trained in different environments ({differences}): a thread count or library version "
            "changes the trajectory like another seed (ablation.csv lists each run's).")


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than two values)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def paired_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> Tuple[float, float, float]:
    """Mean of paired differences and its two-sided t confidence interval (nan bounds for n < 2)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def paired_differences(a: PointSummary, b: PointSummary) -> List[float]:
    """AP(a) - AP(b) for every seed both points ran."""
    ap_a, ap_b = a.ap_by_seed(), b.ap_by_seed()
    return [ap_a[s] - ap_b[s] for s in sorted(set(ap_a) & set(ap_b), key=lambda s: (s is None, s))]


def summarize(specs: Sequence) -> List[PointSummary]:
    """Group runs by point (in the order the points first appear) and compute their statistics."""
    points: Dict[Tuple[float, float], PointSummary] = {}
    for s in specs:
        p = points.setdefault((s.alpha, s.gamma), PointSummary(s.alpha, s.gamma, [], [], [], s.paper_ap))
        (p.runs if s.metrics else p.failed if s.status == "failed" else p.queued).append(s)
    reference = points.get(REFERENCE)
    for p in points.values():
        for name in (*TABLE_STATS, "bkg_error", "ece"):
            values = [v for v in (run_value(s.metrics, name) for s in p.runs) if v is not None]
            if values:
                p.stats[name] = mean_std(values)
        if reference is not None and p is not reference and p.runs and reference.runs:
            differences = paired_differences(p, reference)
            if differences:
                p.vs_reference = (*paired_interval(differences), len(differences))
    return list(points.values())


def best_point(points: Sequence[PointSummary]) -> Optional[PointSummary]:
    """The point with the highest mean AP, if its AP lead over every other point, paired by
    seed, has a confidence interval above 0; else None (the winner is inside the noise)."""
    ranked = sorted((p for p in points if p.runs), key=lambda p: -p.stats["AP"][0])
    if len(ranked) < 2:
        return None
    top = ranked[0]
    for other in ranked[1:]:
        _, low, _ = paired_interval(paired_differences(top, other) or [float("nan")])
        if not low > 0:
            return None
    return top


def _cell(stats: Dict[str, Tuple[float, float]], name: str, digits: int = 1) -> str:
    if name not in stats:
        return "-"
    mean, std = stats[name]
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _difference_cell(p: PointSummary) -> str:
    if p.key == REFERENCE:
        return "reference"
    if p.vs_reference is None:
        return "-"
    mean, low, high, n = p.vs_reference
    if math.isnan(low):
        return f"{mean:+.1f} (n={n}, no interval)"
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def markdown_table(points: Sequence[PointSummary], output_dir: str, environment_note: str = "") -> str:
    """The Table-1-style summary: one row per point, mean ± std over seeds."""
    best = best_point(points)
    with_paper = any(p.paper_ap is not None for p in points)
    with_errors = any("bkg_error" in p.stats for p in points)
    with_ece = any("ece" in p.stats for p in points)
    header = ["alpha", "gamma", "n", *TABLE_STATS, "ΔAP vs FL(0.25, 2), 95% CI"]
    header += (["bkg error ΔAP"] if with_errors else []) + (["ECE"] if with_ece else [])
    header += ["paper AP"] if with_paper else []
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for p in points:
        cells = [f"{p.alpha:g}", f"{p.gamma:g}", str(len(p.runs))]
        cells += [_cell(p.stats, k) for k in TABLE_STATS] + [_difference_cell(p)]
        cells += [_cell(p.stats, "bkg_error")] if with_errors else []
        cells += [_cell(p.stats, "ece", 3)] if with_ece else []
        if p is best:
            cells = [f"**{c}**" for c in cells]
        notes = [f"failed: {os.path.join(output_dir, s.name, 'run.log')}" for s in p.failed]
        notes += [f"{s.status}: {s.name} (job {s.job_id})" for s in p.queued]
        if notes:
            cells[2] += " (" + "; ".join(notes) + ")"
        cells += ["" if p.paper_ap is None else f"{p.paper_ap:.1f}"] if with_paper else []
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({len(p.runs) for p in points if p.runs})
    if best is not None:
        note = (f"Best (bold): alpha={best.alpha:g}, gamma={best.gamma:g}: its AP lead over every other point, "
                f"paired by seed, has a {CONFIDENCE:.0%} interval above 0.")
    elif any(p.runs for p in points):
        note = ("No best row: " + ("one run per point gives no interval" if seeds == [1] else
                                   "the highest mean AP does not lead every other point beyond its 95% interval"))
        note += "."
    else:
        note = "No run succeeded."
    legend = ("AP columns: COCO stats in %, mean ± sample std over the n seeds. ΔAP: mean AP difference to "
              "alpha=0.25, gamma=2 over the seeds both ran, with its 95% t-interval.")
    if with_errors or with_ece:
        legend += (" bkg error ΔAP: the AP that background false positives cost (TIDE); ECE: expected "
                   "calibration error of the detection scores.")
    note += f"\n\n{environment_note}" if environment_note else ""
    return "\n".join(lines) + "\n\n" + note + "\n\n" + legend + "\n"


def write_summary(specs: Sequence, output_dir: str) -> List[PointSummary]:
    """``ablation.md`` (per point), ``ablation.csv`` (per run) and ``ablation.png``."""
    points = summarize(specs)
    environments = [run_environment(os.path.join(output_dir, s.name)) for s in specs]
    note = mixed_environment_note([env for s, env in zip(specs, environments) if s.metrics])
    with open(os.path.join(output_dir, "ablation.md"), "w") as f:
        f.write(markdown_table(points, output_dir, note))
    rows = [{"alpha": s.alpha, "gamma": s.gamma, "seed": s.seed, "status": s.status,
             **{k: s.metrics.get(k, "") for k in TABLE_STATS},
             "bkg_error": run_value(s.metrics, "bkg_error") if s.metrics else "",
             "ece": run_value(s.metrics, "ece") if s.metrics else "",
             "paper_ap": s.paper_ap, **env, "run_dir": os.path.join(output_dir, s.name)}
            for s, env in zip(specs, environments)]
    with open(os.path.join(output_dir, "ablation.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["alpha"])
        writer.writeheader()
        writer.writerows(rows)
    done = [p for p in points if p.runs]
    if done:
        curves = convergence_curves(done, output_dir)
        plot_ablation(done, curves, os.path.join(output_dir, "ablation.png"))
    return points


def convergence_curves(points: Sequence[PointSummary], output_dir: str) -> Dict[Tuple[float, float], tuple]:
    """Per point, the val AP logged during training (``train.eval_period``) and at the end,
    averaged over the seeds at each iteration all of them reached: (iterations, mean AP %)."""
    curves = {}
    for p in points:
        per_run = []
        for s in p.runs:
            path = os.path.join(output_dir, s.name, "metrics.jsonl")
            if not os.path.isfile(path):
                continue
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            values = {r["iteration"]: 100 * r["val/AP"] for r in rows if "val/AP" in r}
            if values:
                last = max(r["iteration"] for r in rows)
                values[last] = 100 * s.metrics["AP"]
                per_run.append(values)
        if per_run:
            common = sorted(set.intersection(*(set(v) for v in per_run)))
            if len(common) > 1:
                curves[p.key] = (common, [float(np.mean([v[i] for v in per_run])) for i in common])
    return curves


def plot_ablation(points: Sequence[PointSummary], curves: Dict, out_path: str) -> str:
    """AP against gamma per alpha (mean, error bars: std over seeds); a heatmap when both vary
    on a grid; AP against iteration per point when the runs evaluated during training."""
    from .visualization import plt, save_figure

    alphas = sorted({p.alpha for p in points})
    gammas = sorted({p.gamma for p in points})
    by_key = {p.key: p for p in points}
    heatmap = len(alphas) > 1 and len(gammas) > 1
    panels = 1 + heatmap + bool(curves)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    ax = axes[0, 0]
    for a in alphas:
        pts = sorted((g, by_key[(a, g)]) for g in gammas if (a, g) in by_key)
        means = [p.stats["AP"][0] for _, p in pts]
        stds = [0.0 if math.isnan(p.stats["AP"][1]) else p.stats["AP"][1] for _, p in pts]
        ax.errorbar([g for g, _ in pts], means, yerr=stds, marker="o", capsize=4, label=f"alpha={a:g}")
    ax.set_xlabel("gamma")
    ax.set_ylabel("AP (COCO, %)")
    n = sorted({len(p.runs) for p in points})
    ax.set_title("AP against gamma" + (f" (mean ± std over {'/'.join(map(str, n))} seeds)" if n != [1] else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    column = 1
    if heatmap:
        grid = np.full((len(alphas), len(gammas)), np.nan)
        for (a, g), p in by_key.items():
            grid[alphas.index(a), gammas.index(g)] = p.stats["AP"][0]
        hm = axes[0, column]
        image = hm.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        hm.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        hm.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        hm.set_xlabel("gamma")
        hm.set_ylabel("alpha")
        for i, j in zip(*np.where(~np.isnan(grid))):
            hm.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="white", fontsize=8)
        fig.colorbar(image, ax=hm, label="mean AP (%)")
        hm.set_title("mean AP over (alpha, gamma)")
        column += 1
    if curves:
        cv = axes[0, column]
        for (a, g), (iterations, ap) in curves.items():
            cv.plot(iterations, ap, marker=".", label=f"alpha={a:g}, gamma={g:g}")
        cv.set_xlabel("iteration")
        cv.set_ylabel("val AP (%), mean over seeds")
        cv.set_title("AP against iteration: slower or worse?")
        cv.grid(alpha=0.3)
        cv.legend(fontsize=8)
    return save_figure(fig, out_path)
