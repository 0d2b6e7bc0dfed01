"""The two shapes ablations (one thread, two threads per run) pooled: six runs per loss, each
loss's AP minus FL (0.25, 2)'s paired by seed and thread count, with the 95 % t-interval of
``detector ablate``. Run from the repository root: ``.venv/bin/python docs/results/pool_shapes.py``.
"""
import csv

from detector.ablation.stats import mean_std, paired_interval

REFERENCE = (0.25, 2.0)  # the paper's focal loss, (alpha, gamma)

TABLES = {1: "docs/results/shapes_seeds/ablation.csv", 2: "docs/results/shapes_seeds_2threads/ablation.csv"}

ap = {}  # (alpha, gamma) -> {(threads, seed): AP in %}
for threads, path in TABLES.items():
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["AP"]:
                point = (float(row["alpha"]), float(row["gamma"]))
                ap.setdefault(point, {})[(threads, int(row["seed"]))] = 100 * float(row["AP"])
reference = ap[REFERENCE]
for (alpha, gamma), runs in ap.items():
    mean, std = mean_std(list(runs.values()))
    line = f"alpha {alpha:g}, gamma {gamma:g}: n={len(runs)}, AP {mean:.1f} ± {std:.1f}"
    if (alpha, gamma) != REFERENCE:
        pairs = sorted(set(runs) & set(reference))
        diff, low, high = paired_interval([runs[k] - reference[k] for k in pairs])
        line += f", vs FL (0.25, 2) {diff:+.1f} [{low:+.1f}, {high:+.1f}] over {len(pairs)} pairs"
    print(line)
