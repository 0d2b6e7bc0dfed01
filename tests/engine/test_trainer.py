import json
import math
import os

import pytest
import torch

from detector.config import load_config
from detector.engine import train
from detector.engine.checkpoint import last_checkpoint, load_training_state
from detector.engine.metrics import NonFiniteLossError
from detector.modeling import build_model


def _metrics(output_dir, kind="loss"):
    """The logged steps (``kind="loss"``) or the evaluations (``"val/AP"``) of metrics.jsonl."""
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        return [row for row in map(json.loads, f) if kind in row]


def test_short_run_writes_outputs_and_the_loss_goes_down(tiny_config, tmp_path):
    out = str(tmp_path / "run")
    cfg = load_config(tiny_config, [f"output_dir={out}", "train.max_iter=30", "train.log_period=5",
                                    "train.checkpoint_period=10", "solver.base_lr=0.002",
                                    "data.train.transforms=[]"])
    stats = train(cfg, progress=False)
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "model_final.pth", "loss.png", "metrics.json",
                 "detections.json", "log.txt", "last_checkpoint", "model_0000010.pth", "model_0000020.pth"):
        assert os.path.exists(os.path.join(out, name)), name
    rows = _metrics(out)
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    assert {"loss_cls", "loss_box", "lr", "eta_seconds", "data_time"} <= set(rows[0])
    # data_time is the wait for the batch alone, a part of the step's time
    assert all(0 <= r["data_time"] < 0.5 * r["time"] for r in rows), [(r["data_time"], r["time"]) for r in rows]
    # the final evaluation joins metrics.jsonl (for the training plot), and its stats are metrics.json's,
    # which pycocotools gives again from detections.json
    assert [(r["iteration"], r["val/AP"]) for r in _metrics(out, "val/AP")] == [(30, stats["AP"])]
    from detector.data import build_dataset
    from detector.evaluation import evaluate_coco

    written = json.load(open(os.path.join(out, "metrics.json")))
    assert stats["AP"] == written["AP"] and stats["AP50"] == written["AP50"]
    again = evaluate_coco(build_dataset(cfg, "val", training=False).coco.dataset,
                          json.load(open(os.path.join(out, "detections.json"))), "pycocotools", analysis=False)
    assert again["AP"] == pytest.approx(written["AP"], abs=1e-12)
    assert state_metadata(out) == {"class_names": ["circle", "square", "triangle", "cross"],
                                   "category_ids": [1, 2, 3, 4]}
    assert last_checkpoint(out).endswith("model_final.pth")
    state = load_training_state(os.path.join(out, "model_final.pth"))
    assert state["iteration"] == 30 and state["config"]["train"]["max_iter"] == 30
    env = json.load(open(os.path.join(out, "environment.json")))
    assert [e["iteration"] for e in env] == [0] and env[0]["threads"] == torch.get_num_threads()


def state_metadata(out):
    return load_training_state(os.path.join(out, "model_final.pth"))["metadata"]


def test_resume_continues_from_the_saved_iteration(tiny_config, tmp_path):
    out = str(tmp_path / "run")
    base = [f"output_dir={out}", "train.log_period=2", "train.checkpoint_period=4", "data.val.ann_file="]
    train(load_config(tiny_config, base + ["train.max_iter=4"]), progress=False)
    assert load_training_state(last_checkpoint(out))["iteration"] == 4
    train(load_config(tiny_config, base + ["train.max_iter=8"]), resume=True, progress=False)
    assert [r["iteration"] for r in _metrics(out)] == [2, 4, 6, 8]
    assert [e["iteration"] for e in json.load(open(os.path.join(out, "environment.json")))] == [0, 4]
    assert load_training_state(os.path.join(out, "model_final.pth"))["iteration"] == 8


def test_a_run_killed_while_writing_its_metrics_resumes_and_plots(tiny_config, tmp_path):
    # A node that went down mid-write leaves metrics.jsonl with half a line: resume read it as
    # JSON and failed. The half line is dropped (with a warning), the rest kept.
    out = str(tmp_path / "run")
    base = [f"output_dir={out}", "train.log_period=2", "train.checkpoint_period=4", "data.val.ann_file="]
    train(load_config(tiny_config, base + ["train.max_iter=4"]), progress=False)
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write('{"iteration": 6, "loss": 0.5')  # cut short
    train(load_config(tiny_config, base + ["train.max_iter=8"]), resume=True, progress=False)
    assert [r["iteration"] for r in _metrics(out)] == [2, 4, 6, 8]
    assert os.path.getsize(os.path.join(out, "loss.png")) > 0


def test_num_classes_mismatch_is_named(tiny_config, tmp_path):
    cfg = load_config(tiny_config, [f"output_dir={tmp_path}", "model.num_classes=3"])
    with pytest.raises(ValueError, match="has 4 classes but model.num_classes=3"):
        train(cfg, progress=False)


def test_non_finite_loss_stops_with_the_terms(tiny_config, tmp_path):
    cfg = load_config(tiny_config, [f"output_dir={tmp_path}", "solver.base_lr=1e30", "solver.optimizer=sgd",
                                    "solver.warmup_iters=0", "train.max_iter=6", "train.log_period=1"])
    with pytest.raises(NonFiniteLossError, match="loss is not finite.*loss_cls=.*solver.base_lr"):
        train(cfg, progress=False)


@pytest.mark.parametrize("overrides", [
    ["loss.cls.name=focal_star", "loss.cls.beta=1.0"],
    ["loss.cls.name=poly1_focal", "loss.cls.epsilon=1.0"],
    ["loss.cls.name=varifocal", "loss.cls.alpha=0.75"],
    ["loss.cls.name=quality_focal"],
    ["loss.cls.name=ghm_c"],
    ["loss.cls.name=ghm_c", "loss.box.name=ghm_r"],  # the GHM paper's pair
    ["model.matcher.name=atss"],
    ["loss.cls.name=varifocal", "model.matcher.name=atss", "train.amp=true"],  # bfloat16 autocast on the CPU
], ids=["focal_star", "poly1_focal", "varifocal", "quality_focal", "ghm_c", "ghm_c+ghm_r", "atss",
        "varifocal+atss+amp"])
def test_the_successors_and_atss_train_end_to_end(tiny_config, tmp_path, overrides):
    out = str(tmp_path / "run")
    cfg = load_config(tiny_config, [f"output_dir={out}", "train.max_iter=4", "train.log_period=2",
                                    "data.val.ann_file=", *overrides])
    train(cfg, progress=False)
    rows = _metrics(out)
    assert rows[-1]["iteration"] == 4 and all(math.isfinite(r["loss_cls"]) and r["loss_cls"] > 0 for r in rows)
    final = load_training_state(os.path.join(out, "model_final.pth"))["model"]
    first = build_model(cfg).state_dict()
    assert not torch.allclose(first["head.cls_score.weight"], final["head.cls_score.weight"])  # it learned
    if "loss.cls.name=ghm_c" in overrides:  # its moving bin counts are saved with the weights
        assert final["cls_loss.accumulated"].sum() > 0
