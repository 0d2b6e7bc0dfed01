"""The tables of ``detector ablate``: ``ablation.md``, one row per point over its seeds, and
``ablation.csv``, one row per run.

Each point's row gives the mean and standard deviation over its n runs, the AP of each seed,
and its AP difference to the reference point (by default the paper's focal loss, alpha 0.25
and gamma 2) with a 95 % interval from the differences paired by seed; then what the
evaluation's error analysis says: the AP50 that background false positives and missed objects
cost (TIDE) and the calibration error of the scores.
"""
import csv
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..engine import environment
from . import stats
from .grid import Point, Run

TABLE_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
ERROR_STATS = ("bkg_error", "missed_error", "ece")


@dataclass
class PointSummary:
    """The runs of one point."""

    point: Point
    runs: List[Run] = field(default_factory=list)  # the finished ones, with metrics
    unfinished: List[Run] = field(default_factory=list)  # failed, queued or busy
    stats: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # mean, std (nan for n = 1)
    vs_reference: Optional[Tuple[float, float, float, int]] = None  # mean difference, CI low, CI high, n

    def ap_by_seed(self) -> Dict[Optional[int], float]:
        return {r.seed: 100 * r.metrics["AP"] for r in self.runs}


def run_value(metrics: dict, name: str) -> Optional[float]:
    """A number of a run's metrics.json as it is tabulated: COCO stats in %, the AP50 that
    background false positives and missed objects cost (TIDE's ``Bkg`` and ``Miss``) in %,
    the expected calibration error as is; None if absent."""
    if name in TABLE_STATS:
        value = metrics.get(name)
        return None if value is None or value < 0 else 100 * value
    if name in ("bkg_error", "missed_error"):
        delta = (metrics.get("tide") or {}).get("delta_ap") or {}
        kind = "Bkg" if name == "bkg_error" else "Miss"
        return None if kind not in delta else 100 * delta[kind]
    if name == "ece":
        return (metrics.get("calibration") or {}).get("ece")
    raise KeyError(name)


ENVIRONMENT_KEYS = ("torch", "device", "gpu", "threads", "cpu_capability")


def run_environment(run_dir: str) -> Dict[str, str]:
    """The torch version, device, GPU model, CPU thread count and vector kernels a run trained
    with, from its ``environment.json`` ("1,2" where a resume changed it; "" where not recorded)."""
    entries = environment.read(run_dir)
    return {key: ",".join(dict.fromkeys(str(e.get(key, "")) for e in entries)) for key in ENVIRONMENT_KEYS}


def mixed_environment_note(environments: Sequence[Dict[str, str]]) -> str:
    """A warning when the finished runs of one table (their :func:`run_environment`)
    trained in different environments."""
    mixed = {k: sorted(v) for k, v in _values_by_key(environments).items() if len(v) > 1}
    if not mixed:
        return ""
    differences = "; ".join(f"{k}: {', '.join(x or 'not recorded' for x in v)}" for k, v in mixed.items())
    return (f"Runs trained in different environments ({differences}): a thread count, a set of CPU vector "
            "kernels or a library version changes the trajectory like another seed (ablation.csv lists each "
            "run's).")


def environment_change(finished: Sequence[Dict[str, str]], here: Dict[str, object]) -> str:
    """A warning when ``here`` (:func:`environment.describe`) differs from the environments of
    the ``finished`` runs (:func:`run_environment`) in a key they recorded."""
    now = {key: str(here.get(key, "")) for key in ENVIRONMENT_KEYS}
    before = {key: sorted(v for v in values if v and v != now[key])
              for key, values in _values_by_key(finished).items() if key in now}
    differences = "; ".join(f"{key} {', '.join(values)} (here: {now[key] or 'none'})"
                            for key, values in before.items() if values)
    if not differences:
        return ""
    return (f"finished runs of this table trained with {differences}. The runs started here will differ from "
            "theirs as another seed's would, and the table will mix environments: run the rest where the "
            "others ran, or start the table afresh in another directory.")


def _values_by_key(environments: Sequence[Dict[str, str]]) -> Dict[str, set]:
    """Each environment key with the values the runs recorded for it."""
    values: Dict[str, set] = {}
    for env in environments:
        for key, value in env.items():
            values.setdefault(key, set()).add(value)
    return values


def summarize(runs: Sequence[Run], reference: Optional[Point] = None) -> List[PointSummary]:
    """Group runs by point (in the order the points first appear) and compute their statistics;
    differences are taken against ``reference``."""
    points: Dict[Point, PointSummary] = {}
    for run in runs:
        summary = points.setdefault(run.point, PointSummary(run.point))
        (summary.runs if run.metrics else summary.unfinished).append(run)
    for p in points.values():
        for name in (*TABLE_STATS, *ERROR_STATS):
            values = [v for v in (run_value(r.metrics, name) for r in p.runs) if v is not None]
            if values:
                p.stats[name] = stats.mean_std(values)
    ref = points.get(reference)
    for p in points.values():
        if ref is not None and p is not ref and p.runs and ref.runs:
            differences = stats.paired_differences(p.ap_by_seed(), ref.ap_by_seed())
            if differences:
                p.vs_reference = (*stats.paired_interval(differences), len(differences))
    return list(points.values())


def best_point(points: Sequence[PointSummary]) -> Optional[PointSummary]:
    """The point whose AP lead over every other point is beyond the noise (:func:`stats.best`)."""
    name = stats.best({p.point.name: p.ap_by_seed() for p in points})
    return next((p for p in points if p.point.name == name), None)


# A point whose mean val AP moved by more than this between its last two evaluations is still
# climbing: its row compares how fast the losses learn, not where they end.
CONVERGED_AP = 1.0


def convergence_note(curves: Dict[Point, Tuple[List[int], List[float]]]) -> str:
    """How far each point's val AP (mean over its seeds, :func:`plots.convergence_curves`)
    moved between its last two evaluations, and which points still rise by more than
    :data:`CONVERGED_AP`."""
    last = {point: (iterations[-2:], ap[-2:]) for point, (iterations, ap) in curves.items()}
    if not last:
        return ""
    spans = {tuple(iterations) for iterations, _ in last.values()}
    parts = []
    for point, ((i0, i1), (a0, a1)) in last.items():
        at = "" if len(spans) == 1 else f", iterations {i0} and {i1}"
        parts.append(f"{point.name} {a0:.1f} -> {a1:.1f} ({a1 - a0:+.1f}{at})")
    when = " (iterations {} and {})".format(*spans.pop()) if len(spans) == 1 else ""
    climbing = [point.name for point, (_, (a0, a1)) in last.items() if a1 - a0 > CONVERGED_AP]
    verdict = (f"Still rising by more than {CONVERGED_AP:g} AP: {', '.join(climbing)}." if climbing else
               f"Every point within {CONVERGED_AP:g} AP of its previous evaluation.")
    return f"Val AP at the last two evaluations{when}, mean over seeds: {'; '.join(parts)}. {verdict}"


def _cell(values: Dict[str, Tuple[float, float]], name: str, digits: int = 1) -> str:
    if name not in values:
        return "-"
    mean, std = values[name]
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _difference_cell(p: PointSummary, reference: Optional[Point]) -> str:
    if p.point == reference:
        return "reference"
    if p.vs_reference is None:
        return "-"
    mean, low, high, n = p.vs_reference
    if math.isnan(low):
        return f"{mean:+.1f} (n={n}, no interval)"
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def _seeds_cell(p: PointSummary) -> str:
    by_seed = p.ap_by_seed()
    return " / ".join(f"{by_seed[s]:.1f}" for s in sorted(by_seed, key=lambda s: (s is None, s))) or "-"


def markdown_table(points: Sequence[PointSummary], output_dir: str, reference: Optional[Point] = None,
                   environment_note: str = "", convergence: str = "") -> str:
    """One row per point, mean ± std over seeds, with the notes that say how to read it."""
    best = best_point(points)
    with_paper = any(p.point.paper_ap is not None for p in points)
    errors = [name for name in ERROR_STATS if any(name in p.stats for p in points)]
    ref_name = reference.name if reference is not None else "the reference"
    header = ["point", "n", *TABLE_STATS, "AP per seed", f"ΔAP vs {ref_name}, 95% CI"]
    header += [{"bkg_error": "bkg error ΔAP50", "missed_error": "missed ΔAP50", "ece": "ECE"}[e] for e in errors]
    header += ["paper AP"] if with_paper else []
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for p in points:
        cells = [p.point.name, str(len(p.runs)), *(_cell(p.stats, k) for k in TABLE_STATS), _seeds_cell(p),
                 _difference_cell(p, reference)]
        cells += [_cell(p.stats, e, 3 if e == "ece" else 1) for e in errors]
        if p is best:
            cells = [f"**{c}**" for c in cells]
        notes = [f"failed: {os.path.join(output_dir, r.name, 'run.log')}" for r in p.unfinished if r.status == "failed"]
        for status in ("busy", "queued", "stopped", "pending"):
            waiting = [r for r in p.unfinished if r.status == status]
            if waiting:
                notes.append(f"{status}: " + ", ".join(
                    (f"seed {r.seed}" if r.seed is not None else r.name) + (f" (job {r.job_id})" if r.job_id else "")
                    for r in waiting))
        if notes:
            cells[1] += " (" + "; ".join(notes) + ")"
        cells += ["" if p.point.paper_ap is None else f"{p.point.paper_ap:.1f}"] if with_paper else []
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({len(p.runs) for p in points if p.runs})
    if best is not None:
        note = (f"Best (bold): {best.point.name}: its AP lead over every other point, paired by seed, has a "
                f"{stats.CONFIDENCE:.0%} interval above 0.")
    elif sum(bool(p.runs) for p in points) == 1:
        note = "No best row: only one point has finished runs."
    elif any(p.runs for p in points):
        note = "No best row: " + ("one run per point gives no interval" if seeds == [1] else
                                  "the highest mean AP does not lead every other point beyond its 95% interval") + "."
    else:
        note = "No run succeeded."
    legend = (f"AP columns: COCO stats in %, mean ± sample std over the n seeds; AP per seed in seed order. ΔAP: mean "
              f"AP difference to {ref_name} over the seeds both ran, with its 95% t-interval.")
    if errors:
        legend += (" bkg error / missed ΔAP50: the AP50 that background false positives / missed objects cost "
                   "(TIDE, IoU 0.5); ECE: expected calibration error of the detection scores.")
    note += f"\n\n{convergence}" if convergence else ""
    note += f"\n\n{environment_note}" if environment_note else ""
    return "\n".join(lines) + "\n\n" + note + "\n\n" + legend + "\n"


def write_tables(runs: Sequence[Run], points: Sequence[PointSummary], output_dir: str,
                 reference: Optional[Point] = None, convergence: str = "") -> None:
    """``ablation.md`` (per point, from :func:`summarize`'s ``points``) and ``ablation.csv`` (per run)."""
    environments = [run_environment(os.path.join(output_dir, r.name)) for r in runs]
    note = mixed_environment_note([env for r, env in zip(runs, environments) if r.metrics])
    with open(os.path.join(output_dir, "ablation.md"), "w") as f:
        f.write(markdown_table(points, output_dir, reference, note, convergence))
    keys = list(dict.fromkeys(k for r in runs for k in r.point.settings))
    rows = []
    for r, env in zip(runs, environments):
        loss = r.config.loss.cls if r.config is not None else None
        rows.append({"point": r.point.name, "alpha": loss.alpha if loss else "", "gamma": loss.gamma if loss else "",
                     **{k: r.point.settings.get(k, "") for k in keys if k not in ("loss.cls.alpha", "loss.cls.gamma")},
                     "seed": r.seed, "status": r.status, **{k: r.metrics.get(k, "") for k in TABLE_STATS},
                     **{e: (run_value(r.metrics, e) if r.metrics else "") for e in ERROR_STATS},
                     "paper_ap": r.point.paper_ap, **env, "run_dir": os.path.join(output_dir, r.name)})
    with open(os.path.join(output_dir, "ablation.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["point"])
        writer.writeheader()
        writer.writerows(rows)
