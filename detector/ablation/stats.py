"""The statistics of a seeded comparison: mean and spread over seeds, and differences paired
by seed with a Student's t interval. A point is called best only when its lead over every
other point has an interval above 0; with one seed per point nothing is."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CONFIDENCE = 0.95


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


def paired_differences(a: Dict[Optional[int], float], b: Dict[Optional[int], float]) -> List[float]:
    """a[seed] - b[seed] for every seed both have (seed None: the config's)."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b), key=lambda s: (s is None, s))]


def best(by_seed: Dict[str, Dict[Optional[int], float]]) -> Optional[str]:
    """The name with the highest mean value, if its lead over every other name, paired by seed,
    has a confidence interval above 0; else None (the winner is inside the noise)."""
    ranked = sorted((name for name, values in by_seed.items() if values),
                    key=lambda name: -float(np.mean(list(by_seed[name].values()))))
    if len(ranked) < 2:
        return None
    top = ranked[0]
    for other in ranked[1:]:
        _, low, _ = paired_interval(paired_differences(by_seed[top], by_seed[other]) or [float("nan")])
        if not low > 0:
            return None
    return top
