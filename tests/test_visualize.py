"""``detector visualize`` and the plots every evaluation writes."""
import json
import os

import pytest
from PIL import Image

from detector.cli import main


@pytest.fixture(scope="module")
def run_dir(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", tiny_config, "--output-dir", str(out), "train.max_iter=2", "data.num_workers=0",
                 "model.inference.score_thresh=0.0"]) == 0
    return out


def test_evaluation_writes_the_confusion_matrix(run_dir):
    assert Image.open(run_dir / "confusion_matrix.png").width > 300
    assert os.path.exists(run_dir / "pr_curves.png") and os.path.exists(run_dir / "detections.json")


def test_predictions_coloured_by_error_type_with_sheets_and_single_files(tiny_config, run_dir, tmp_path, capsys):
    out = tmp_path / "vis"
    assert main(["visualize", tiny_config, "--predictions", str(run_dir), "--output-dir", str(out),
                 "--per-sheet", "4", "--max-images", "6", "--single", "--score-thresh", "0.0"]) == 0
    files = sorted(os.listdir(out))
    assert files[:2] == ["sheet_000.png", "sheet_001.png"] and len(files) == 2 + 6  # 4 + 2 on sheets, 6 singles
    assert Image.open(out / "sheet_000.png").height > 400
    assert "wrote 8 PNG files" in capsys.readouterr().out


def test_errors_keeps_the_images_with_that_error_most_frequent_first(tiny_config, run_dir, tmp_path):
    from detector.config import load_config
    from detector.visualize import _prediction_view

    cfg = load_config(tiny_config)
    pictures = _prediction_view(cfg, str(run_dir), "background", 8, 0.0)
    counts = [sum(kind == "background" for _, _, kind, _ in boxes) for _, _, boxes in pictures]
    assert counts and min(counts) >= 1 and counts == sorted(counts, reverse=True)
    assert main(["visualize", tiny_config, "--predictions", str(run_dir), "--errors", "background", "--output-dir",
                 str(tmp_path / "bkg"), "--score-thresh", "0.0"]) == 0


def test_data_mode_draws_the_training_view_with_class_names(tiny_config, tmp_path):
    from detector.config import load_config
    from detector.visualize import _training_view

    pictures = _training_view(load_config(tiny_config), 3)
    name, image, boxes = pictures[0]
    assert image.shape[:2] == (64, 64)  # resized by the model's rule (tiny config: 64 px)
    assert boxes and {caption for _, caption, _, _ in boxes} <= {"circle", "square", "triangle", "cross"}
    assert main(["visualize", tiny_config, "--data", "--output-dir", str(tmp_path / "data"), "--max-images", "3"]) == 0
    assert os.path.exists(tmp_path / "data" / "sheet_000.png")


@pytest.mark.parametrize("args,expected", [
    (["--predictions", "RUN", "--errors", "typo"], "valid types are classification"),
    (["--data", "--errors", "missed"], "--errors goes with --predictions"),
    (["--predictions", "/nonexistent"], "no detections.json in /nonexistent"),
])
def test_bad_options_are_named(tiny_config, run_dir, tmp_path, capsys, args, expected):
    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert main(["visualize", tiny_config, *args, "--output-dir", str(tmp_path)]) == 2
    assert expected in capsys.readouterr().err


def test_eval_without_detections_says_so(tiny_config, run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", tiny_config, "--weights", str(run_dir / "model_final.pth"), "--output-dir", str(out),
                 "model.inference.score_thresh=0.999"]) == 0
    printed = capsys.readouterr().out
    assert not os.path.exists(out / "pr_curves.png") and "pr_curves.png" not in printed
    assert "confusion_matrix.png" in printed and json.load(open(out / "metrics.json"))["AP"] == 0.0


def test_importing_the_package_leaves_matplotlibs_backend_alone():
    # A notebook user's backend (inline, widget) must survive `import detector` and any plot it
    # writes: the package never imports pyplot and never calls matplotlib.use.
    import subprocess
    import sys

    script = ("import matplotlib\nmatplotlib.use('svg')\n"
              "import detector.figures, detector.evaluation, detector.engine, detector.ablation.plots\n"
              "import detector.visualize\n"
              "import tempfile, os\n"
              "path = os.path.join(tempfile.mkdtemp(), 'loss.png')\n"
              "row = '{\"iteration\": 1, \"loss\": 1.0, \"lr\": 0.1}'\n"
              "open(path + '.jsonl', 'w').write(row + '\\n')\n"
              "detector.figures.plot_training(path + '.jsonl', path)\n"
              "import sys\n"
              "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules, os.path.getsize(path) > 0)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["svg", "False", "True"]
