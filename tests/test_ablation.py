import csv
import json
import math
import os
import time

import pytest

from detector.ablation import Run, build_points, classic_point, load_grid, parse_seeds, with_seeds, write_summary
from detector.ablation.grid import Point, parse_axis, parse_list, reference_point, validate
from detector.ablation.plots import _is_alpha_gamma_grid, convergence_curves
from detector.ablation.tables import best_point, convergence_note, markdown_table, summarize
from detector.cli import main
from detector.config import load_config


def test_grid_expansion():
    points = build_points(alphas=[0.25, 0.75], gammas=[0.0, 2.0])
    assert [tuple(p.settings.values()) for p in points] == [(0.25, 0.0), (0.25, 2.0), (0.75, 0.0), (0.75, 2.0)]
    assert points[1].key == "alpha0.25_gamma2" and points[1].name == "alpha=0.25, gamma=2"
    assert parse_list("0.25, 0.5 1") == [0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="list of numbers"):
        parse_list("a,b")
    with pytest.raises(ValueError, match="--alpha and --gamma go together"):
        build_points(alphas=[0.25])


def test_named_grids_are_the_papers():
    a = load_grid("table1a")
    assert [p.settings["loss.cls.alpha"] for p in a] == [0.10, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
    assert {p.settings["loss.cls.gamma"] for p in a} == {0.0}
    b = load_grid("table1b")
    assert [tuple(p.settings.values()) for p in b][-2:] == [(0.25, 2.0), (0.25, 5.0)]
    assert max(b, key=lambda p: p.paper_ap).settings["loss.cls.gamma"] == 2.0
    regimes = load_grid("regimes")
    assert [p.key for p in regimes] == ["alpha-1_gamma0", "alpha0.75_gamma0", "alpha0.25_gamma2", "alpha0.5_gamma0.5"]
    with pytest.raises(ValueError, match="known grids: .*regimes.*table1a, table1b"):
        load_grid("table9")


def test_named_points_set_any_keys_and_keep_readable_directories(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("points:\n"
                    "  - {name: FL, alpha: 0.25, gamma: 2.0, paper_ap: 34.0}\n"
                    "  - {name: VFL, loss.cls.name: varifocal, loss.cls.alpha: 0.75}\n"
                    "  - {name: FL + ATSS, model.matcher.name: atss}\n"
                    "  - {name: prior 0.1, model.head.prior_prob: 0.1}\n")
    points = load_grid(str(grid))
    assert [p.key for p in points] == ["alpha0.25_gamma2", "VFL", "FL_+_ATSS", "prior_0.1"]
    assert points[0].name == "FL" and points[0].paper_ap == 34.0
    assert points[2].override_args() == ["model.matcher.name=atss"]
    assert points[3].override_args() == ["model.head.prior_prob=0.1"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("points:\n  - {loss.cls.name: varifocal}\n")
    with pytest.raises(ValueError, match="point 0 needs a 'name'"):
        load_grid(str(bad))


def test_axes_build_the_product_and_compose_with_a_grid():
    points = build_points(axes=["loss.cls.name=sigmoid_focal,varifocal", "model.matcher.name=iou,atss"])
    assert [p.name for p in points] == ["sigmoid_focal + iou", "sigmoid_focal + atss", "varifocal + iou",
                                        "varifocal + atss"]
    assert points[3].settings == {"loss.cls.name": "varifocal", "model.matcher.name": "atss"}
    # alpha and gamma axes give the classic points
    classic = build_points(axes=["loss.cls.alpha=0.25", "loss.cls.gamma=0,2"])
    assert [p.key for p in classic] == ["alpha0.25_gamma0", "alpha0.25_gamma2"]
    crossed = build_points(grid="regimes", axes=["model.matcher.name=atss"])
    assert len(crossed) == 4 and crossed[0].settings["model.matcher.name"] == "atss"
    assert parse_axis("model.anchors.aspect_ratios=[1.0],[0.5,1,2]")[1] == [[1.0], [0.5, 1, 2]]
    for bad, message in (("loss.cls.name", "KEY=V1,V2"), ("x=a,a", "given twice")):
        with pytest.raises(ValueError, match=message):
            parse_axis(bad)


def test_a_point_with_an_unknown_key_or_value_fails_before_any_run_naming_the_point(tiny_config):
    from detector.modeling import check_names

    for settings, message in ((("model.matcher.nme", "atss"),), "unknown config key 'model.matcher.nme'"), \
            ((("loss.cls.gamma", -1.0),), "'loss.cls.gamma' must be >= 0"), \
            ((("loss.cls.name", "varifcoal"),), "'loss.cls.name' must be one of"):
        runs = with_seeds([classic_point(0.25, 2.0), Point("typo", settings)], [0])
        with pytest.raises(ValueError, match=f"point 'typo': .*{message}"):
            validate(runs, tiny_config, [], check_names)


def test_the_reference_is_the_papers_focal_loss_by_default_or_named(tiny_config):
    from detector.modeling import check_names

    points = [Point("CE", (("loss.cls.alpha", -1.0), ("loss.cls.gamma", 0.0))),
              Point("VFL", (("loss.cls.name", "varifocal"),)),
              Point("FL", (("loss.cls.alpha", 0.25), ("loss.cls.gamma", 2.0))),
              Point("FL + ATSS", (("model.matcher.name", "atss"),))]
    runs = with_seeds(points, [0])
    validate(runs, tiny_config, ["loss.cls.alpha=0.25", "loss.cls.gamma=2.0"], check_names)
    assert reference_point(runs, None).name == "FL"  # not FL + ATSS, which also resolves to FL (0.25, 2)
    assert reference_point(runs, "VFL").name == "VFL"
    assert reference_point(runs[:2], None).name == "CE"  # no FL point: the first
    with pytest.raises(ValueError, match="--reference 'XL' is not a point"):
        reference_point(runs, "XL")


def _spec(alpha, gamma, ap, status="done", seed=None):
    cfg = load_config("configs/demo/shapes_focal.yaml", [f"loss.cls.alpha={alpha}", f"loss.cls.gamma={gamma}"])
    run = Run(classic_point(alpha, gamma), seed=seed, status=status, config=cfg)
    if ap is not None:
        run.metrics = {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.05, "APs": ap / 2, "APm": ap, "APl": -1.0}
    return run


FL = classic_point(0.25, 2.0)


def test_one_seed_per_point_marks_no_winner(tmp_path):
    specs = [_spec(0.25, 0.0, 0.30), _spec(0.25, 2.0, 0.35), _spec(0.75, 0.0, None, "failed"), _spec(0.75, 2.0, 0.31)]
    write_summary(specs, str(tmp_path), FL)
    md = (tmp_path / "ablation.md").read_text().splitlines()
    assert md[0].startswith("| point | n | AP | AP50 | AP75 | APs | APm | APl | AP per seed | "
                            "ΔAP vs alpha=0.25, gamma=2")
    assert md[2] == ("| alpha=0.25, gamma=0 | 1 | 30.0 | 50.0 | 25.0 | 15.0 | 30.0 | - | 30.0 | "
                     "-5.0 (n=1, no interval) |")
    assert md[3] == "| alpha=0.25, gamma=2 | 1 | 35.0 | 55.0 | 30.0 | 17.5 | 35.0 | - | 35.0 | reference |"
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
    points = {p.point.key: p for p in summarize(fl + ce, FL)}
    mean, std = points["alpha-1_gamma0"].stats["AP"]
    assert mean == pytest.approx(34.0) and std == pytest.approx(2.0)
    diff, low, high, n = points["alpha-1_gamma0"].vs_reference
    assert n == 3 and diff == pytest.approx(3.0)
    half = 4.302653 / 3 ** 0.5
    assert low == pytest.approx(3 - half, abs=1e-4) and high == pytest.approx(3 + half, abs=1e-4)
    md = markdown_table(list(points.values()), str(tmp_path), FL)
    assert "| **alpha=-1, gamma=0** | **3** | **34.0 ± 2.0** |" in md and "[+0.5, +5.5]" in md
    assert "**32.0 / 34.0 / 36.0**" in md  # AP per seed
    assert "Best (bold): alpha=-1, gamma=0" in md

    # The same means with the differences spread over 0: no winner claimed.
    noisy = _seeded(-1.0, 0.0, [0.25, 0.40, 0.37])
    points = summarize(fl + noisy, FL)
    assert best_point(points) is None
    assert "No best row" in markdown_table(points, str(tmp_path), FL)
    # a study where only the reference has finished (the others pending) says so
    pending = [_spec(-1.0, 0.0, None, "pending", seed=i) for i in range(3)]
    assert "No best row: only one point has finished runs." in markdown_table(summarize(fl + pending, FL),
                                                                              str(tmp_path), FL)


def test_differences_pair_by_seed(tmp_path):
    fl = _seeded(0.25, 2.0, [0.30, 0.40])
    other = [_spec(0.75, 0.0, 0.35, seed=1), _spec(0.75, 0.0, 0.50, seed=7)]  # only seed 1 is shared
    point = next(p for p in summarize(fl + other, FL) if p.point.key == "alpha0.75_gamma0")
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
    points = summarize(specs, FL)
    curves = convergence_curves(points, str(tmp_path))
    iterations, ap = curves[classic_point(-1.0, 0.0)]
    assert iterations == [10, 20] and ap == pytest.approx([11.5, 23.0])
    write_summary(specs, str(tmp_path), FL)
    from PIL import Image

    # two panels: AP per point as bars (no alpha has two gammas), AP against iteration
    assert 1000 < Image.open(tmp_path / "ablation.png").width < 1500
    # FL: val AP 15.5 at 10, final 31.0 at 20 (+15.5); CE 11.5 -> 23.0 (+11.5): both still climbing
    assert ("Val AP at the last two evaluations (iterations 10 and 20), mean over seeds: alpha=0.25, gamma=2 15.5 -> "
            "31.0 (+15.5); alpha=-1, gamma=0 11.5 -> 23.0 (+11.5). Still rising by more than 1 AP: alpha=0.25, "
            "gamma=2, alpha=-1, gamma=0.") in (tmp_path / "ablation.md").read_text()


def test_curves_and_heatmap_only_for_a_grid_with_an_alpha_at_several_gammas(tmp_path):
    from PIL import Image

    table = _seeded(0.25, 2.0, [0.30]) + _seeded(0.25, 0.0, [0.25]) + _seeded(0.5, 2.0, [0.28]) + \
        _seeded(0.5, 0.0, [0.27])
    write_summary(table, str(tmp_path), FL)
    assert Image.open(tmp_path / "ablation.png").width > 1200  # AP against gamma per alpha, and the heatmap
    assert not _is_alpha_gamma_grid(summarize(table[:1] + _seeded(-1.0, 0.0, [0.2]) + _seeded(0.75, 0.0, [0.2]), FL))
    assert _is_alpha_gamma_grid(summarize(table, FL))


def test_convergence_note_by_hand():
    ce, fl = classic_point(-1.0, 0.0), classic_point(0.25, 2.0)
    assert convergence_note({}) == ""
    note = convergence_note({ce: ([200, 400, 600], [10.0, 30.0, 30.5]), fl: ([200, 400, 600], [12.0, 33.0, 35.0])})
    assert note.endswith("alpha=-1, gamma=0 30.0 -> 30.5 (+0.5); alpha=0.25, gamma=2 33.0 -> 35.0 (+2.0). "
                         "Still rising by more than 1 AP: alpha=0.25, gamma=2.")
    note = convergence_note({ce: ([400, 600], [30.0, 30.9]), fl: ([500, 600], [34.5, 35.0])})
    assert note == ("Val AP at the last two evaluations, mean over seeds: alpha=-1, gamma=0 30.0 -> 30.9 (+0.9, "
                    "iterations 400 and 600); alpha=0.25, gamma=2 34.5 -> 35.0 (+0.5, iterations 500 and 600). "
                    "Every point within 1 AP of its previous evaluation.")


def test_each_runs_environment_is_listed_and_a_mix_is_named(tmp_path):
    specs = _seeded(0.25, 2.0, [0.30, 0.32]) + _seeded(-1.0, 0.0, [0.20, 0.26])
    for s, threads in zip(specs, ([1], [1], [1, 2], [2])):  # the third run was resumed with 2 threads
        (tmp_path / s.name).mkdir()
        entries = [{"iteration": 100 * i, "torch": "2.14.1", "device": "cpu", "threads": t}
                   for i, t in enumerate(threads)]
        (tmp_path / s.name / "environment.json").write_text(json.dumps(entries))
    write_summary(specs, str(tmp_path), FL)
    rows = list(csv.DictReader(open(tmp_path / "ablation.csv")))
    assert [r["threads"] for r in rows] == ["1", "1", "1,2", "2"] and {r["torch"] for r in rows} == {"2.14.1"}
    md = (tmp_path / "ablation.md").read_text()
    assert "Runs trained in different environments (threads: 1, 1,2, 2)" in md and "torch:" not in md
    assert {r["gpu"] for r in rows} == {""}  # CPU runs record no GPU

    write_summary(specs[:2], str(tmp_path), FL)  # alike: no note
    assert "different environments" not in (tmp_path / "ablation.md").read_text()


def test_starting_runs_in_another_environment_than_the_finished_ones_is_named():
    from detector.ablation.tables import environment_change

    here = {"torch": "2.14.1", "device": "cpu", "threads": 2, "cpu_capability": "AVX2"}
    same = {"torch": "2.14.1", "device": "cpu", "gpu": "", "threads": "2", "cpu_capability": "AVX2"}
    assert environment_change([same, same], here) == ""
    assert environment_change([], here) == ""
    assert environment_change([{**same, "cpu_capability": ""}], here) == ""  # not recorded: nothing to compare
    other = {**same, "threads": "1,2", "cpu_capability": "AVX512"}
    note = environment_change([same, other, {**other, "threads": "4"}], here)
    assert "threads 1,2, 4 (here: 2); cpu_capability AVX512 (here: AVX2)" in note


def test_seeds_argument():
    assert parse_seeds(None) == [None]
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("5,") == [5] and parse_seeds("0,2,4") == [0, 2, 4]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("three")
    specs = with_seeds(build_points(alphas=[0.25], gammas=[0.0, 2.0]), [0, 1])
    assert [s.name for s in specs] == ["alpha0.25_gamma0_seed0", "alpha0.25_gamma0_seed1", "alpha0.25_gamma2_seed0",
                                       "alpha0.25_gamma2_seed1"]
    assert specs[1].override_args() == ["loss.cls.alpha=0.25", "loss.cls.gamma=0.0", "train.seed=1"]


def test_collect_marks_finished_runs_done_before_and_held_runs_busy_naming_the_holder(tmp_path):
    from detector.ablation.runs import collect
    from detector.engine.lock import DirectoryLock

    finished, held, waiting = (Run(classic_point(0.25, 2.0), seed=s) for s in range(3))
    os.makedirs(tmp_path / finished.name)
    (tmp_path / finished.name / "metrics.json").write_text(json.dumps({"AP": 0.5}))
    with DirectoryLock(str(tmp_path / held.name), "training run"):
        collect([finished, held, waiting], str(tmp_path))
    assert (finished.status, finished.metrics) == ("done before", {"AP": 0.5})
    assert held.status == "busy" and held.note.startswith(f"in use by process {os.getpid()}")
    assert (waiting.status, waiting.note) == ("pending", "")


def test_eta_counts_only_the_runs_left_to_start(tmp_path, monkeypatch, capsys):
    # resuming a table: runs finished before are skipped at once and must not count as time left
    from detector.ablation import local

    def fake_run_one(run, config, output_dir, overrides, device, stop):
        if os.path.exists(os.path.join(output_dir, run.name, "metrics.json")):
            run.status, run.seconds, run.metrics = "done before", 0.0, {"AP": 0.5}
        else:
            run.status, run.seconds, run.metrics = "done", 60.0, {"AP": 0.5}

    monkeypatch.setattr(local, "_run_one", fake_run_one)
    monkeypatch.setattr(local.LocalLauncher, "_environment_warning", lambda self, runs, output_dir, to_start: "")
    runs = [Run(classic_point(0.25, 2.0), seed=s) for s in range(4)]
    for run in runs[1:3]:  # seeds 1 and 2 finished in an earlier sitting
        os.makedirs(tmp_path / run.name)
        (tmp_path / run.name / "metrics.json").write_text(json.dumps({"AP": 0.5}))
    local.LocalLauncher().launch(runs, "unused.yaml", str(tmp_path), [])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("seed=0: done (60 s) AP 50.0; ETA 1.0 min")  # seed 3 left, not 3 runs
    assert lines[1].endswith("seed=1: done before (0 s) AP 50.0; ETA 1.0 min")
    assert lines[3].endswith("seed=3: done (60 s) AP 50.0; ETA 0.0 min")


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

    # finished runs are skipped; an interrupted one (checkpoint, no metrics) resumes, with a warning
    # when the finished runs trained with other vector kernels than the runs to start here
    os.remove(out / "alpha0.25_gamma2" / "metrics.json")
    env_file = out / "alpha0.25_gamma0" / "environment.json"
    env_file.write_text(json.dumps([{**json.loads(env_file.read_text())[0], "cpu_capability": "VSX"}]))
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "gamma=0: done before" in printed and "gamma=2: done" in printed
    assert "finished runs of this table trained with cpu_capability VSX (here: " in captured.err
    assert "resumed from" in (out / "alpha0.25_gamma2" / "run.log").read_text()

    # a failing run is reported and does not stop the others
    assert main(args[:-3] + ["--gamma", "0,3", "train.max_iter=2", "data.train.img_dir=/nonexistent"]) == 2
    md = (out / "ablation.md").read_text()
    assert "failed: " in md


def test_axis_and_reference_from_the_command_line_and_one_ablation_per_directory(tiny_config, tmp_path, capsys):
    from detector.engine.lock import DirectoryLock

    out = tmp_path / "abl"
    args = ["ablate", tiny_config, "--output-dir", str(out), "--axis", "loss.cls.name=sigmoid_focal,varifocal",
            "--reference", "varifocal", "train.max_iter=1", "data.num_workers=0"]
    with DirectoryLock(str(out), "ablation"):  # another ablate holds the directory
        assert main(args) == 2
    assert "is in use by process" in capsys.readouterr().err
    assert main(args) == 0
    assert (out / "sigmoid_focal" / "metrics.json").exists() and (out / "varifocal" / "metrics.json").exists()
    md = (out / "ablation.md").read_text()
    assert "ΔAP vs varifocal" in md and "| varifocal | 1 |" in md and "reference |" in md
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["loss.cls.name"] for r in rows] == ["sigmoid_focal", "varifocal"]

    # --collect starts nothing: an unfinished run is listed as pending, and not run
    os.remove(out / "varifocal" / "metrics.json")
    log = (out / "varifocal" / "run.log").read_text()
    assert main(args + ["--collect"]) == 0
    assert (out / "varifocal" / "run.log").read_text() == log
    assert "| varifocal | 0 (pending: varifocal) |" in (out / "ablation.md").read_text()


def test_devices_are_indices_mapped_through_the_parents_visible_gpus():
    from detector.ablation.local import Device, parse_devices

    assert parse_devices(["0", "cuda:1", "cpu"], visible="", count=2) == [
        Device("0", "0"), Device("cuda:1", "1"), Device("cpu", None)]
    # inside a Slurm allocation of GPUs 4 and 6: index 1 is physical GPU 6
    assert parse_devices(["0", "1"], visible="4,6", count=2) == [Device("0", "4"), Device("1", "6")]
    with pytest.raises(ValueError, match="'cuda' is not a device"):
        parse_devices(["cuda"], visible="", count=2)  # would set CUDA_VISIBLE_DEVICES=cuda: no GPU at all
    with pytest.raises(ValueError, match="GPU 2 does not exist: this process sees 2 GPU"):
        parse_devices(["2"], visible="4,6", count=2)
    with pytest.raises(ValueError, match="GPU 0 does not exist: this process sees no GPU"):
        parse_devices(["0"], visible="", count=0)


def test_each_run_takes_a_free_device_also_when_finished_runs_are_skipped(tmp_path, monkeypatch):
    # A resumed sweep whose finished runs sit at even positions: with the device chosen from the
    # run's index, every new run went to GPU 1 and two ran there at once.
    import threading

    from detector.ablation import local

    lock, busy, used = threading.Lock(), set(), []

    def fake_run_one(run, config, output_dir, overrides, device, stop):
        if os.path.exists(os.path.join(output_dir, run.name, "metrics.json")):
            run.status, run.seconds, run.metrics = "done before", 0.0, {"AP": 0.5}
            return
        with lock:
            assert device.visible not in busy, f"two runs on GPU {device.visible} at once"
            busy.add(device.visible)
            used.append(device.visible)
        time.sleep(0.2)
        with lock:
            busy.discard(device.visible)
        run.status, run.seconds, run.metrics = "done", 0.2, {"AP": 0.5}

    monkeypatch.setattr(local, "_run_one", fake_run_one)
    monkeypatch.setattr(local.LocalLauncher, "_environment_warning", lambda self, runs, output_dir, to_start: "")
    runs = [Run(classic_point(0.25, 2.0), seed=s) for s in range(8)]
    for run in runs[0::2]:
        os.makedirs(tmp_path / run.name)
        (tmp_path / run.name / "metrics.json").write_text(json.dumps({"AP": 0.5}))
    devices = local.parse_devices(["0", "1"], visible="", count=2)
    local.LocalLauncher(2, devices).launch(runs, "unused.yaml", str(tmp_path), [])
    assert all(run.status in ("done", "done before") for run in runs)
    assert sorted(set(used)) == ["0", "1"] and len(used) == 4  # both GPUs worked, one run each at a time


def test_a_gpu_run_sees_its_gpu_alone_and_trains_on_cuda(tmp_path, monkeypatch):
    from detector.ablation import local

    started = {}

    class Finished:
        def wait(self, timeout=None):
            return 1

    def fake_start(cmd, run_dir, env):
        started.update(cmd=cmd, visible=env.get("CUDA_VISIBLE_DEVICES"))
        return Finished()

    monkeypatch.setattr(local, "start_logged", fake_start)
    run = Run(classic_point(0.25, 2.0), seed=0)
    local._run_one(run, "unused.yaml", str(tmp_path), [], local.Device("1", "6"), {"signal": None})
    assert started["visible"] == "6" and started["cmd"][-1] == "train.device=cuda"
    local._run_one(run, "unused.yaml", str(tmp_path), [], local.Device("cpu", None), {"signal": None})
    assert started["cmd"][-1] == "train.device=cpu"


@pytest.mark.parametrize("target", ["group", "ablate alone"])
def test_a_signal_to_ablate_lets_the_running_run_save_and_the_same_command_resumes_it(tiny_config, tmp_path, target):
    # SIGTERM to ablate's process group (Ctrl-C, a scheduler), or to ablate alone (kill PID: it
    # passes the signal on), in the middle of the second run: ablate exits only once that run has
    # saved and let go of its directory; run again, the same command keeps the first run, resumes
    # the second and writes the whole table.
    import signal
    import subprocess
    import sys

    from detector.engine.lock import holder

    out = tmp_path / "abl"
    cmd = [sys.executable, "-m", "detector", "ablate", tiny_config, "--output-dir", str(out), "--alpha", "0.25",
           "--gamma", "0,2", "train.max_iter=40", "train.log_period=1", "train.checkpoint_period=1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    second = out / "alpha0.25_gamma2"
    deadline = time.time() + 240
    while time.time() < deadline and not ((second / "metrics.jsonl").exists()
                                          and len((second / "metrics.jsonl").read_text().splitlines()) >= 2):
        time.sleep(0.2)
    (os.killpg if target == "group" else os.kill)(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert holder(str(second)) is None  # the run had exited when ablate did
    assert (second / "last_checkpoint").exists() and not (second / "metrics.json").exists()
    assert "Continue with the same command" in stderr and "stopped" in stdout
    assert "stopped: alpha0.25_gamma2" in (out / "ablation.md").read_text()

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    first_log = (out / "alpha0.25_gamma0" / "run.log").read_text()
    second_log = (second / "run.log").read_text()
    assert first_log.count("$ ") == 1  # finished before: not redone
    assert second_log.count("$ ") == 2 and "resumed from" in second_log
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["status"] for r in rows] == ["done before", "done"]


def test_an_output_directory_that_cannot_be_written_is_named_before_any_run(tiny_config, tmp_path, capsys):
    # (a read-only mount, or a path under a file as here, since root writes anything else)
    (tmp_path / "blocker").write_text("a file, not a directory")
    out = tmp_path / "blocker" / "abl"
    assert main(["ablate", tiny_config, "--output-dir", str(out), "--alpha", "0.25", "--gamma", "2",
                 "train.max_iter=2"]) == 2
    assert f"output directory {out} is not writable" in capsys.readouterr().err
