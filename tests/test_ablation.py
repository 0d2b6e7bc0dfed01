import csv
import os

import pytest

from detector.ablation import RunSpec, expand_grid, load_grid, parse_list, write_summary
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
    with pytest.raises(ValueError, match="known grids: shapes, table1a, table1b"):
        load_grid("table9")


def _spec(alpha, gamma, ap, status="done"):
    s = RunSpec(alpha, gamma, status=status)
    if ap is not None:
        s.metrics = {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.05, "APs": ap / 2, "APm": ap, "APl": -1.0}
    return s


def test_summary_from_known_metrics(tmp_path):
    specs = [_spec(0.25, 0.0, 0.30), _spec(0.25, 2.0, 0.35), _spec(0.75, 0.0, None, "failed"), _spec(0.75, 2.0, 0.31)]
    write_summary(specs, str(tmp_path))
    md = (tmp_path / "ablation.md").read_text().splitlines()
    assert md[0] == "| alpha | gamma | AP | AP50 | AP75 | APs | APm | APl |"
    assert md[3] == "| **0.25** | **2** | **35.0** | **55.0** | **30.0** | **17.5** | **35.0** | **-** |"
    assert "failed: " in md[4] and "run.log" in md[4]
    rows = list(csv.DictReader(open(tmp_path / "ablation.csv")))
    assert [r["status"] for r in rows] == ["done", "done", "failed", "done"]
    specs[1].paper_ap = 34.0  # with the paper's numbers: one more column, APl kept
    write_summary(specs, str(tmp_path))
    md = (tmp_path / "ablation.md").read_text().splitlines()
    assert md[0].endswith("| APl | paper AP |")
    assert md[3] == "| **0.25** | **2** | **35.0** | **55.0** | **30.0** | **17.5** | **35.0** | **-** | 34.0 |"
    assert md[2].endswith("| - |  |") and md[4].count("|") == md[0].count("|")
    assert float(rows[1]["AP"]) == pytest.approx(0.35)
    assert (tmp_path / "ablation.png").exists()


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
