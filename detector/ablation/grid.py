"""The points of an ablation: each a name and the config overrides that make it, run once per
seed.

Points come from a named grid (``grids/NAME.yaml`` in this package, or a YAML file), from
``--alpha``/``--gamma`` lists, or from ``--axis KEY=V1,V2`` products. A grid point sets any
config keys::

    points:
      - {alpha: 0.25, gamma: 2.0, paper_ap: 34.0}          # alpha/gamma: loss.cls.alpha/gamma
      - {name: VFL, loss.cls.name: varifocal, loss.cls.alpha: 0.75, paper_ap: 37.4}
      - {name: "FL + ATSS", model.matcher.name: atss}

A point that sets only alpha and gamma keeps the name and run directory an (alpha, gamma)
grid gives it (``alpha0.25_gamma2``), so an ablation's runs are found whichever way its points
were given.
"""
import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from ..config import Config, ConfigError, load_config
from ..errors import UserError

GRID_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grids")
ALPHA, GAMMA = "loss.cls.alpha", "loss.cls.gamma"
SPECIAL_KEYS = ("name", "paper_ap", "alpha", "gamma")  # what a grid point may give besides config keys


@dataclass(frozen=True)
class Point:
    """One setting of the study: a display name, the config overrides that make it (in order),
    and the paper's AP for it where there is one."""

    name: str
    overrides: Tuple[Tuple[str, Any], ...]
    paper_ap: Optional[float] = None

    @property
    def settings(self) -> Dict[str, Any]:
        return dict(self.overrides)

    @property
    def key(self) -> str:
        """The run directory's name: readable and stable; ``alpha{a}_gamma{g}`` for a point that
        sets only alpha and gamma, however it was given."""
        s = self.settings
        if set(s) == {ALPHA, GAMMA}:
            return f"alpha{float(s[ALPHA]):g}_gamma{float(s[GAMMA]):g}"
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", self.name).strip("_") or "point"

    def override_args(self) -> List[str]:
        """``KEY=VALUE`` words, VALUE in YAML's flow style (lists stay lists)."""
        return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, value in self.overrides]


@dataclass
class Run:
    """One (point, seed) run and what became of it."""

    point: Point
    seed: Optional[int] = None  # None: the config's train.seed
    config: Optional[Config] = None  # the resolved config, once validated
    # pending | done | done before (finished before this launch) | failed | queued | busy | stopped (by a
    # signal, saved)
    status: str = "pending"
    metrics: Dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    job_id: Optional[str] = None
    note: str = ""  # for busy: who holds the run directory

    @property
    def name(self) -> str:
        return self.point.key + ("" if self.seed is None else f"_seed{self.seed}")

    def override_args(self) -> List[str]:
        """The overrides that make this run what it is."""
        return [*self.point.override_args(), *([] if self.seed is None else [f"train.seed={self.seed}"])]


def classic_point(alpha: float, gamma: float, paper_ap: Optional[float] = None, name: Optional[str] = None) -> Point:
    return Point(name or f"alpha={alpha:g}, gamma={gamma:g}", ((ALPHA, float(alpha)), (GAMMA, float(gamma))),
                 paper_ap)


def parse_list(text: Optional[str]) -> List[float]:
    """``"0.25,0.5 1"`` -> ``[0.25, 0.5, 1.0]``."""
    if not text:
        return []
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"expected a comma-separated list of numbers, got '{text}'") from None


def parse_seeds(text: Optional[str]) -> List[Optional[int]]:
    """``--seeds``: a count N (seeds 0..N-1) or a comma-separated list; ``[None]`` when absent
    (one run per point, with the config's seed)."""
    if not text:
        return [None]
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"--seeds takes a count or a comma-separated list of integers, got '{text}'") from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise UserError(f"--seeds {values[0]}: a count must be at least 1")
        return list(range(values[0]))
    if len(set(values)) != len(values) or min(values) < 0:
        raise UserError(f"--seeds {text}: seeds must be distinct and >= 0")
    return values


def parse_axis(text: str) -> Tuple[str, List[Any]]:
    """``--axis KEY=V1,V2,...`` -> (KEY, [values]); the values are read as a YAML list, so that
    ``--axis model.anchors.aspect_ratios=[1.0],[0.5,1,2]`` gives two lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip() or any(not part for part in key.split(".")):
        raise UserError(f"--axis '{text}' is not of the form KEY=V1,V2,... with a dotted KEY, "
                        "e.g. --axis loss.cls.name=sigmoid_focal,varifocal")
    try:
        values = yaml.safe_load(f"[{raw}]")
    except yaml.YAMLError as e:
        raise UserError(f"--axis '{text}': the values are not a comma-separated YAML list ({e})") from None
    if len(values) != len({repr(v) for v in values}):
        raise UserError(f"--axis '{text}': a value is given twice")
    return key, values


def available_grids() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(GRID_DIR) if f.endswith(".yaml"))


def load_grid(name_or_path: str) -> List[Point]:
    """A named grid (``table1a``, ``table1b``, ...: :func:`available_grids`) or a YAML file."""
    path = name_or_path if os.path.isfile(name_or_path) else os.path.join(GRID_DIR, f"{name_or_path}.yaml")
    if not os.path.isfile(path):
        raise UserError(f"unknown grid '{name_or_path}' (not a file either); known grids: "
                        f"{', '.join(available_grids())}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML: {e}") from None
    entries = data.get("points") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: a grid needs a non-empty 'points' list")
    return [_grid_point(entry, index, path) for index, entry in enumerate(entries)]


def _grid_point(entry: Any, index: int, path: str) -> Point:
    if not isinstance(entry, dict):
        raise UserError(f"{path}: point {index} is not a mapping of config keys")
    entry = dict(entry)
    paper_ap = entry.pop("paper_ap", None)
    name = entry.pop("name", None)
    if paper_ap is not None and not isinstance(paper_ap, (int, float)):
        raise UserError(f"{path}: point {index}: paper_ap must be a number, got {paper_ap!r}")
    overrides = []
    for short, key in (("alpha", ALPHA), ("gamma", GAMMA)):
        if short in entry:
            value = entry.pop(short)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{path}: point {index}: {short} must be a number, got {value!r}")
            overrides.append((key, float(value)))
    overrides += list(entry.items())
    if not overrides:
        raise UserError(f"{path}: point {index} ({name or 'unnamed'}) sets no config key")
    settings = dict(overrides)
    if name is None:
        if set(settings) != {ALPHA, GAMMA}:
            raise UserError(f"{path}: point {index} needs a 'name' (only alpha/gamma points are named for you)")
        return classic_point(settings[ALPHA], settings[GAMMA], paper_ap)
    return Point(str(name), tuple(overrides), paper_ap)


def build_points(grid: Optional[str] = None, alphas: Sequence[float] = (), gammas: Sequence[float] = (),
                 axes: Sequence[str] = ()) -> List[Point]:
    """The points of a study: the grid's, or every (alpha, gamma) of the two lists, each
    crossed with every combination of the ``--axis`` values."""
    if grid and (alphas or gammas):
        raise UserError("give either --grid or --alpha/--gamma, not both")
    if bool(alphas) != bool(gammas):
        raise UserError("--alpha and --gamma go together (e.g. --alpha 0.25,0.75 --gamma 0,2)")
    base = load_grid(grid) if grid else [classic_point(a, g) for a, g in itertools.product(alphas, gammas)]
    parsed = [parse_axis(a) for a in axes]
    if not base and not parsed:
        raise UserError("nothing to ablate: give --grid NAME, --alpha and --gamma lists, or --axis KEY=V1,V2")
    keys = [key for key, _ in parsed]
    if len(set(keys)) != len(keys):
        raise UserError(f"--axis: a key is given twice ({', '.join(keys)})")
    points = []
    for values in itertools.product(*(v for _, v in parsed)):
        settings = tuple(zip(keys, values))
        for point in base or [None]:
            points.append(_combine(point, settings))
    return points


def _combine(point: Optional[Point], settings: Tuple[Tuple[str, Any], ...]) -> Point:
    if not settings:
        return point
    if point is None:
        overrides, name, paper_ap = settings, "", None
    else:
        clash = [k for k, _ in settings if k in point.settings]
        if clash:
            raise UserError(f"--axis {clash[0]} is also set by the point '{point.name}'")
        overrides, name, paper_ap = point.overrides + settings, point.name, None
    keys = {k for k, _ in overrides}
    if keys == {ALPHA, GAMMA}:
        values = dict(overrides)
        return classic_point(values[ALPHA], values[GAMMA])
    axis_names = " + ".join(_short(value) for _, value in settings)
    return Point(f"{name} + {axis_names}" if name else axis_names, overrides, paper_ap)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def with_seeds(points: Sequence[Point], seeds: Sequence[Optional[int]]) -> List[Run]:
    """Every point once per seed, point-major."""
    return [Run(point, seed) for point in points for seed in seeds]


def validate(runs: Sequence[Run], config: str, overrides: Sequence[str], check) -> None:
    """Resolve every run's config before anything runs: an unknown key or a value out of range
    fails here, naming the point. ``check(cfg)`` adds what the schema cannot know (registered
    names). Also refuses two points with one run directory."""
    by_key: Dict[str, Point] = {}
    for run in runs:
        other = by_key.setdefault(run.point.key, run.point)
        if other != run.point:
            raise UserError(f"points '{other.name}' and '{run.point.name}' would share the run directory "
                            f"'{run.point.key}'; give them names that differ")
        try:
            run.config = load_config(config, [*overrides, *run.override_args()])
            check(run.config)
        except ConfigError as e:
            raise UserError(f"point '{run.point.name}': {e}") from None


def reference_point(runs: Sequence[Run], name: Optional[str]) -> Point:
    """The point the others are compared with: ``name``; by default the paper's focal loss,
    a point whose loss resolves to sigmoid_focal with alpha 0.25 and gamma 2 and that sets
    nothing else; else the first point."""
    points = list(dict.fromkeys(run.point for run in runs))
    if name is not None:
        match = [p for p in points if p.name == name or p.key == name]
        if not match:
            raise UserError(f"--reference '{name}' is not a point of this ablation; points: "
                            f"{', '.join(repr(p.name) for p in points)}")
        return match[0]
    for run in runs:
        c = run.config.loss.cls if run.config is not None else None
        if (c is not None and (c.name, c.alpha, c.gamma) == ("sigmoid_focal", 0.25, 2.0)
                and set(run.point.settings) <= {"loss.cls.name", ALPHA, GAMMA}):
            return run.point
    return points[0]
