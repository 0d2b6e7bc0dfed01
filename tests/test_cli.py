import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from detector.cli import main


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "configs/retinanet/retinanet_r50_fpn_1x_coco.yaml", "loss.cls.gamma=0"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    cls = printed["loss"]["cls"]
    assert (cls["name"], cls["alpha"], cls["gamma"]) == ("sigmoid_focal", 0.25, 0.0)
    assert printed["model"]["backbone"]["weights"] == "IMAGENET1K_V1"


def test_user_error_exits_2_without_traceback(capsys):
    assert main(["config", "configs/retinanet/retinanet_r50_fpn_1x_coco.yaml", "model.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'model.nope'" in err and "Traceback" not in err


def test_convert_missing_input(tmp_path, capsys):
    assert main(["convert", "torchvision", str(tmp_path / "in.pth"), str(tmp_path / "out.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_convert_refuses_a_malicious_pickle(tmp_path, capsys):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f, protocol=2)
    assert main(["convert", "torchvision", str(path), str(tmp_path / "out.pth")]) == 2
    assert "refused for safety" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "detector", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout


def test_make_synthetic_check_data_train_eval_predict(tmp_path, tiny_config, capsys):
    out = tmp_path / "syn"
    assert main(["make-synthetic", str(out), "--num-train", "3", "--num-val", "2"]) == 0
    assert (out / "annotations" / "instances_train.json").exists()

    assert main(["check-data", tiny_config]) == 0
    printed = capsys.readouterr().out
    assert "[train]" in printed and "[val]" in printed and "small/medium/large" in printed
    assert "problems: none" in printed

    run = tmp_path / "run"
    assert main(["train", tiny_config, "--output-dir", str(run), "train.max_iter=2"]) == 0
    assert (run / "model_final.pth").exists() and (run / "metrics.json").exists()

    ev = tmp_path / "eval"
    assert main(["eval", tiny_config, "--weights", str(run / "model_final.pth"), "--output-dir", str(ev)]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
                            "ARl", "per_class_AP"}
    assert (ev / "detections.json").exists()

    pred = tmp_path / "pred"
    val_dir = str(out / "val")
    assert main(["predict", tiny_config, "--weights", str(run / "model_final.pth"), val_dir,
                 "--output-dir", str(pred), "--score-thresh", "0.0"]) == 0
    records = json.loads((pred / "predictions.json").read_text())
    assert [r["file_name"] for r in records] == ["000001.png", "000002.png"]
    assert (pred / "000001_pred.png").exists()
    assert all(set(r) >= {"boxes", "scores", "category_names"} for r in records)


def test_eval_with_a_checkpoint_for_other_classes(tmp_path, tiny_config, capsys):
    run = tmp_path / "run"
    assert main(["train", tiny_config, "--output-dir", str(run), "train.max_iter=1", "data.val.ann_file="]) == 0
    capsys.readouterr()
    code = main(["eval", tiny_config, "--weights", str(run / "model_final.pth"), "model.num_classes=5"])
    assert code == 2
    assert "has 4 classes but model.num_classes=5" in capsys.readouterr().err
    code = main(["eval", tiny_config, "--weights", str(run / "model_final.pth"), "loss.cls.name=softmax_focal"])
    assert code == 2
    assert "check model.num_classes and loss.cls.name" in capsys.readouterr().err


def test_check_data_reports_problems(tmp_path, tiny_config, capsys):
    assert main(["check-data", tiny_config, f"data.val.img_dir={tmp_path}"]) == 2
    out = capsys.readouterr()
    assert "PROBLEMS" in out.out and "image file not found" in out.out


def test_unwritable_output_dir(tmp_path, tiny_config, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", tiny_config, "--output-dir", str(blocker / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_class_names_and_category_ids_follow_the_label_convention(tiny_config, tiny_dataset):
    from detector.config import load_config
    from detector.inference import checkpoint_metadata

    names = ["circle", "square", "triangle", "cross"]  # category ids 1..4
    old = checkpoint_metadata({}, load_config(tiny_config))  # nothing saved: the annotations'
    assert (old.class_names, old.category_ids) == (names, [1, 2, 3, 4])
    slots = checkpoint_metadata({}, load_config(tiny_config, ["data.category_ids_as_labels=true",
                                                              "model.num_classes=5"]))
    assert slots.class_names == ["unused_0"] + names  # label = category id; slot 0 has no category
    assert slots.category_ids == [None, 1, 2, 3, 4]
    named = checkpoint_metadata({"class_names": ["a", "b", "c", "d"]}, load_config(tiny_config))
    assert (named.class_names, named.category_ids) == (["a", "b", "c", "d"], None)  # names differ: ids unknown
    saved = checkpoint_metadata({"metadata": {"class_names": ["x"], "category_ids": [90]}}, load_config(tiny_config))
    assert (saved.class_names, saved.category_ids) == (["x"], [90])


def test_a_bug_keeps_its_traceback_and_exits_1(tiny_config, monkeypatch, capsys):
    import detector.cli as cli

    def buggy(args):
        return {}["missing"]  # a KeyError that is nobody's data problem

    monkeypatch.setattr(cli, "cmd_config", buggy)
    assert main(["config", tiny_config]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'missing'" in err
    code = ("import sys, detector.cli as c\n"
            "c.cmd_config = lambda args: {}['missing']\n"
            f"sys.exit(c.main(['config', {tiny_config!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "KeyError: 'missing'" in proc.stderr


def test_out_of_gpu_memory_says_what_to_change(tiny_config, monkeypatch, capsys):
    import torch

    import detector.cli as cli

    def oom(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "cmd_config", oom)
    assert main(["config", tiny_config]) == 2
    err = capsys.readouterr().err
    assert "ran out of memory" in err and "solver.ims_per_batch" in err and "train.amp=true" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_goes_before_or_after_the_subcommand(capsys, where):
    args = ["config", "configs/demo/shapes_focal.yaml", "solver.base_lr=-1"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    assert main(args) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("module,extra,command", [
    ("onnx", "export", "export"), ("submitit", "cluster", "ablate"), ("faster_coco_eval", "fast", "eval")])
def test_a_missing_optional_package_names_the_extra_that_installs_it(tmp_path, tiny_config, module, extra, command):
    # the package made unimportable in a fresh interpreter, as if it were not installed
    script = (f"import sys; sys.modules[{module!r}] = None\n"
              "from detector.cli import main\n"
              f"sys.exit(main(sys.argv[1:]))")
    weights = str(tmp_path / "w.pth")
    args = {"export": ["export", tiny_config, "--weights", weights, "--output", str(tmp_path / "m.onnx")],
            "ablate": ["ablate", tiny_config, "--alpha", "0.25", "--gamma", "2", "--launcher", "submitit-local",
                       "--output-dir", str(tmp_path / "abl")],
            "eval": ["eval", tiny_config, "--weights", weights, "eval.backend=faster_coco_eval"]}[command]
    if command != "ablate":
        import torch

        from detector.config import load_config
        from detector.modeling import build_model
        torch.save({"model": build_model(load_config(tiny_config)).state_dict()}, tmp_path / "w.pth")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"pip install 'detector[{extra}]'" in done.stderr and "Traceback" not in done.stderr


README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_the_readme_synopsis_is_what_help_says():
    from detector.cli import synopsis

    text = open(README).read()
    block = re.search(r"## Command line\n\n```\n(.*?)```", text, re.S).group(1).splitlines()
    assert block == synopsis()


def test_every_help_shows_defaults_and_an_example_and_imports_no_torch():
    script = ("import sys\nfrom detector.cli import build_parser\n"
              "parser = build_parser()\n"
              "for name in [None, 'train', 'eval', 'predict', 'export', 'ablate', 'visualize', 'analyze-loss',\n"
              "             'check-data', 'config', 'make-synthetic', 'convert']:\n"
              "    try:\n"
              "        parser.parse_args(['--help'] if name is None else [name, '--help'])\n"
              "    except SystemExit:\n"
              "        pass\n"
              "    print('=====')\n"
              "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pages = done.stdout.split("=====")
    assert done.stdout.strip().endswith("False")  # no torch for --help: it answers at once
    for page in pages[1:-1]:  # the commands; convert has no option with a default
        assert "example:\n  detector " in page and ("(default:" in page or "detector convert" in page), page


def test_the_readme_three_line_config_loads(tmp_path, monkeypatch):
    from detector.config import load_config

    text = open(README).read()
    yaml_block = re.search(r"## Your data\n\n.*?```yaml\n(.*?)```", text, re.S).group(1)
    assert len(yaml_block.strip().splitlines()) == 3
    path = os.path.join(os.path.dirname(README), "mine_readme_test.yaml")
    with open(path, "w") as f:
        f.write(yaml_block)
    try:
        cfg = load_config(path)
    finally:
        os.remove(path)
    assert cfg.model.num_classes == 3 and cfg.data.train.ann_file == "train.json" and cfg.model.weights is None


def test_a_log_file_gets_progress_lines_not_carriage_returns(tiny_config, tmp_path):
    # Under Slurm, or with 2> log, tqdm's updates piled into one line of the file: there the
    # progress is a plain line (every 30 s, and at the end).
    log = tmp_path / "check.log"
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "detector", "check-data", tiny_config], stdout=f, stderr=f,
                              timeout=120)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    assert "\r" not in text
    assert re.search(r"checking images: 16/16 img \(100%\), [\d.]+ img/s\n", text), text[-2000:]


def test_line_progress_writes_at_its_interval_and_at_the_end(caplog, monkeypatch):
    import logging

    from detector import progress as progress_module

    clock = iter([0.0, 0.0, 10.0, 31.0, 40.0, 62.0, 70.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="detector.progress"):
        bar = progress_module.LineProgress(total=100, desc="training", unit="it", interval=30.0)
        for _ in range(5):  # 10 steps each at 0, 10, 31, 40 and 62 s: lines at 31 s and 62 s
            bar.update(10)
        bar.set_postfix(loss="0.5")
        bar.close()  # at 70 s
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["training: 30/100 it (30%), 0.968 it/s, 1 min 12 s left",  # 30 / 31 s; 70 left
                     "training: 50/100 it (50%), 0.806 it/s, 1 min 02 s left",  # 50 / 62 s
                     "training: 50/100 it (50%), 0.714 it/s, 1 min 10 s left, loss=0.5"]
