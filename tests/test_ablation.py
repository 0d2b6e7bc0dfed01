import csv
import json
import math
import os

import pytest

from detector.ablation import RunSpec, expand_grid, load_grid, parse_list, parse_seeds, with_seeds
from detector.ablation_report import best_point, convergence_curves, markdown_table, summarize, write_summary
from detector.cli import main


def test_grid_expansion():
    specs = expand_grid([0.25, 0.75], [0.0, 2.0])
    assert [(s.alpha, s.gamma) for s in specs] == [(0.25, 0.0), (0.25, 2.0), (0.75, 0.0), (0.75, 2.0)]
    assert specs[1].name == "alpha0.25_gamma2"
    assert parse_list("0.25, 0.5 1") == [0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="list of numbers"):
        parse_list("a,b")
    with pytest.raises(ValueError, match="--alpha and --gamma"):
        expand_grid([0.25], [])


def test_named_grids_are_the_papers():
    a = load_grid("table1a")
    assert [s.alpha for s in a] == [0.10, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999] and {s.gamma for s in a} == {0.0}
    b = load_grid("table1b")
    assert [(s.gamma, s.alpha) for s in b][-2:] == [(2.0, 0.25), (5.0, 0.25)]
    assert max(b, key=lambda s: s.paper_ap).gamma == 2.0
    regimes = load_grid("regimes")
    assert [(s.alpha, s.gamma) for s in regimes] == [(-1.0, 0.0), (0.75, 0.0), (0.25, 2.0), (0.5, 0.5)]
    with pytest.raises(ValueError, match="known grids: regimes, shapes, table1a, table1b"):
        load_grid("table9")


def _spec(alpha, gamma, ap, status="done", seed=None):
    s = RunSpec(alpha, gamma, status=status, seed=seed)
    if ap is not None:
        s.metrics = {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.05, "APs": ap / 2, "APm": ap, "APl": -1.0}
    return s


def test_one_seed_per_point_marks_no_winner(tmp_path):
    specs = [_spec(0.25, 0.0, 0.30), _spec(0.25, 2.0, 0.35), _spec(0.75, 0.0, None, "failed"), _spec(0.75, 2.0, 0.31)]
    write_summary(specs, str(tmp_path))
    md = (tmp_path / "ablation.md").read_text().splitlines()
    assert md[0].startswith("| alpha | gamma | n | AP | AP50 | AP75 | APs | APm | APl | ΔAP vs FL(0.25, 2)")
    assert md[2] == "| 0.25 | 0 | 1 | 30.0 | 50.0 | 25.0 | 15.0 | 30.0 | - | -5.0 (n=1, no interval) |"
    assert md[3] == "| 0.25 | 2 | 1 | 35.0 | 55.0 | 30.0 | 17.5 | 35.0 | - | reference |"
    assert "failed: " in md[4] and "run.log" in md[4]
    assert "**" not in "\n".join(md) and "one run per point gives no interval" in "\n".join(md)
    rows = list(csv.DictReader(open(tmp_path / "ablation.csv")))
    assert [r["status"] for r in rows] == ["done", "done", "failed", "done"]
    assert float(rows[1]["AP"]) == pytest.approx(0.35)
    assert (tmp_path / "ablation.png").exists()


def _seeded(alpha, gamma, aps):
    return [_spec(alpha, gamma, ap, seed=i) for i, ap in enumerate(aps)]


def test_mean_std_and_paired_interval_by_hand(tmp_path):
    # CE beats FL by 2, 3 and 4 AP in seeds 0, 1, 2: mean 3, sample std 1, t(0.975, 2) = 4.3027,
    # interval 3 +- 4.3027 / sqrt(3) = [0.516, 5.484]: above 0 -> CE is the best row.
    fl = _seeded(0.25, 2.0, [0.30, 0.31, 0.32])
    ce = _seeded(-1.0, 0.0, [0.32, 0.34, 0.36])
    points = {(p.alpha, p.gamma): p for p in summarize(fl + ce)}
    mean, std = points[(-1.0, 0.0)].stats["AP"]
    assert mean == pytest.approx(34.0) and std == pytest.approx(2.0)
    diff, low, high, n = points[(-1.0, 0.0)].vs_reference
    assert n == 3 and diff == pytest.approx(3.0)
    half = 4.302653 / 3 ** 0.5
    assert low == pytest.approx(3 - half, abs=1e-4) and high == pytest.approx(3 + half, abs=1e-4)
    md = markdown_table(list(points.values()), str(tmp_path))
    assert "| **-1** | **0** | **3** | **34.0 ± 2.0** |" in md and "[+0.5, +5.5]" in md
    assert "Best (bold): alpha=-1, gamma=0" in md

    # The same means with the differences spread over 0: no winner claimed.
    noisy = _seeded(-1.0, 0.0, [0.25, 0.40, 0.37])
    points = summarize(fl + noisy)
    assert best_point(points) is None
    assert "No best row" in markdown_table(points, str(tmp_path))


def test_differences_pair_by_seed(tmp_path):
    fl = _seeded(0.25, 2.0, [0.30, 0.40])
    other = [_spec(0.75, 0.0, 0.35, seed=1), _spec(0.75, 0.0, 0.50, seed=7)]  # only seed 1 is shared
    point = next(p for p in summarize(fl + other) if p.alpha == 0.75)
    diff, low, _, n = point.vs_reference
    assert n == 1 and diff == pytest.approx(-5.0) and math.isnan(low)


def test_error_bars_and_convergence_panel(tmp_path):
    specs = _seeded(0.25, 2.0, [0.30, 0.32]) + _seeded(-1.0, 0.0, [0.20, 0.26])
    for s in specs:  # runs with train.eval_period: val/AP rows in metrics.jsonl
        run = tmp_path / s.name
        run.mkdir()
        rows = [{"iteration": 10, "loss": 1.0}, {"iteration": 10, "val/AP": s.metrics["AP"] / 2},
                {"iteration": 20, "loss": 0.5}]
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    points = summarize(specs)
    curves = convergence_curves(points, str(tmp_path))
    iterations, ap = curves[(-1.0, 0.0)]
    assert iterations == [10, 20] and ap == pytest.approx([11.5, 23.0])
    write_summary(specs, str(tmp_path))
    from PIL import Image

    assert Image.open(tmp_path / "ablation.png").width > 1500  # three panels: AP, heatmap, AP vs iteration


def test_each_runs_environment_is_listed_and_a_mix_is_named(tmp_path):
    specs = _seeded(0.25, 2.0, [0.30, 0.32]) + _seeded(-1.0, 0.0, [0.20, 0.26])
    for s, threads in zip(specs, ([1], [1], [1, 2], [2])):  # the third run was resumed with 2 threads
        (tmp_path / s.name).mkdir()
        entries = [{"iteration": 100 * i, "torch": "2.14.1", "device": "cpu", "threads": t}
                   for i, t in enumerate(threads)]
        (tmp_path / s.name / "environment.json").write_text(json.dumps(entries))
    write_summary(specs, str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "ablation.csv")))
    assert [r["threads"] for r in rows] == ["1", "1", "1,2", "2"] and {r["torch"] for r in rows} == {"2.14.1"}
    md = (tmp_path / "ablation.md").read_text()
    assert "Runs trained in different environments (threads: 1, 1,2, 2)" in md and "torch:" not in md
    assert {r["gpu"] for r in rows} == {""}  # CPU runs record no GPU

    write_summary(specs[:2], str(tmp_path))  # alike: no note
    assert "different environments" not in (tmp_path / "ablation.md").read_text()


def test_seeds_argument():
    assert parse_seeds(None) == [None]
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("5,") == [5] and parse_seeds("0,2,4") == [0, 2, 4]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("three")
    specs = with_seeds(expand_grid([0.25], [0.0, 2.0]), [0, 1])
    assert [s.name for s in specs] == ["alpha0.25_gamma0_seed0", "alpha0.25_gamma0_seed1", "alpha0.25_gamma2_seed0",
                                       "alpha0.25_gamma2_seed1"]
    assert specs[1].overrides() == ["loss.cls.alpha=0.25", "loss.cls.gamma=0.0", "train.seed=1"]


def test_ablate_runs_skips_resumes_and_reports_failures(tiny_config, tmp_path, capsys):
    out = tmp_path / "abl"
    args = ["ablate", tiny_config, "--output-dir", str(out), "--alpha", "0.25", "--gamma", "0,2",
            "train.max_iter=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[2/2]" in printed and "ETA" in printed
    for name in ("alpha0.25_gamma0", "alpha0.25_gamma2"):
        assert (out / name / "metrics.json").exists() and (out / name / "run.log").exists()
    assert (out / "ablation.md").exists() and (out / "ablation.csv").exists() and (out / "ablation.png").exists()

    # finished runs are skipped; an interrupted one (checkpoint, no metrics) resumes
    os.remove(out / "alpha0.25_gamma2" / "metrics.json")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "gamma=0: skipped" in printed and "gamma=2: done" in printed
    assert "resumed from" in (out / "alpha0.25_gamma2" / "run.log").read_text()

    # a failing run is reported and does not stop the others
    assert main(args[:-3] + ["--gamma", "0,3", "train.max_iter=2", "data.train.img_dir=/nonexistent"]) == 2
    md = (out / "ablation.md").read_text()
    assert "failed: " in md
