"""ONNX export: the graph, run by ONNX Runtime, gives the eager model's detections."""
import json

import numpy as np
import pytest
import torch

from detector.cli import main
from detector.config import load_config
from detector.export import check_against_eager, compare_detections, export_onnx, sample_images
from detector.inference import OnnxDetector
from detector.modeling import build_model

pytest.importorskip("onnxruntime")


def _model(tiny_config, *overrides):
    """The tiny model with a head that scores and places boxes all over the image: many
    detections with distinct scores, so that the comparison has something to compare."""
    torch.manual_seed(0)
    model = build_model(load_config(tiny_config, list(overrides)))
    with torch.no_grad():
        torch.nn.init.normal_(model.head.cls_score.weight, std=0.05)
        torch.nn.init.normal_(model.head.cls_score.bias, mean=-3.0, std=0.5)
        torch.nn.init.normal_(model.head.bbox_pred.weight, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tiny_config, tmp_path_factory):
    model = _model(tiny_config)
    path = str(tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    export_onnx(model, path)
    return model, path


def test_same_detections_as_eager_on_val_and_other_sizes(exported, tiny_config):
    model, path = exported
    images, source = sample_images(load_config(tiny_config), 8)
    rng = np.random.default_rng(0)
    images += [rng.integers(0, 256, size, dtype=np.uint8) for size in [(64, 64, 3), (37, 150, 3), (300, 41, 3)]]
    report = check_against_eager(model, path, images)
    assert "val 8" in source
    assert report["problems"] == []
    assert report["detections"] > 500  # about 100 per image: not an empty comparison
    assert report["max_box_diff_px"] < 1e-3 * 300 / 64


def test_softmax_head_exports(tiny_config, tmp_path):
    model = _model(tiny_config, "loss.cls.name=softmax_focal")
    path = str(tmp_path / "softmax.onnx")
    export_onnx(model, path)
    images, _ = sample_images(load_config(tiny_config), 3)
    report = check_against_eager(model, path, images)
    assert report["problems"] == [] and report["detections"] > 100


def test_compare_detections_ignores_the_order_of_equal_scores_and_finds_differences():
    expected = {"boxes": np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4]], dtype=np.float32),
                "scores": np.array([0.9, 0.5, 0.5], dtype=np.float32), "labels": np.array([1, 0, 2])}
    swapped = {k: v[[0, 2, 1]] for k, v in expected.items()}
    assert compare_detections(swapped, expected)[0] == []
    moved = {k: v.copy() for k, v in expected.items()}
    moved["boxes"][1, 2] += 0.01
    assert "detection 1" in compare_detections(moved, expected)[0][0]
    relabelled = {k: v.copy() for k, v in expected.items()}
    relabelled["labels"][0] = 3
    assert compare_detections(relabelled, expected)[0]
    fewer = {k: v[:2] for k, v in expected.items()}
    assert compare_detections(fewer, expected)[0] == ["2 detections, expected 3"]


def test_export_and_predict_commands(tiny_config, tiny_dataset, tmp_path, capsys):
    weights = tmp_path / "model.pth"
    torch.save({"model": _model(tiny_config).state_dict()}, weights)
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", tiny_config, "--weights", str(weights), "--output", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "checked with ONNX Runtime on 10 images" in out and "the same" in out
    # a bare state dict: the names and category ids come from the config's annotations (ids 1..4)
    saved = OnnxDetector(str(onnx_path)).metadata
    assert (saved.class_names, saved.category_ids) == (["circle", "square", "triangle", "cross"], [1, 2, 3, 4])

    val_dir = f"{tiny_dataset}/val"
    records = {}
    for name, w in (("eager", weights), ("onnx", onnx_path)):
        assert main(["predict", tiny_config, "--weights", str(w), val_dir, "--output-dir", str(tmp_path / name),
                     "--score-thresh", "0.1"]) == 0
        records[name] = json.loads((tmp_path / name / "predictions.json").read_text())
        assert (tmp_path / name / "000001_pred.png").exists()
    assert "(ONNX Runtime)" in capsys.readouterr().out
    assert len(records["eager"]) == len(records["onnx"]) == 8
    total = 0
    for e, o in zip(records["eager"], records["onnx"]):
        got, expected = ({"boxes": np.array(r["boxes"]).reshape(-1, 4), "scores": np.array(r["scores"]),
                          "labels": np.array(r["labels"])} for r in (o, e))
        assert compare_detections(got, expected)[0] == []
        assert o["category_ids"] == e["category_ids"] == [label + 1 for label in e["labels"]]
        total += len(e["boxes"])
    assert total > 20


@pytest.mark.parametrize("args,expected", [
    (["--opset", "9"], "config key 'export.opset' must be >= 11, got 9 (set in command-line override)"),
    (["--opset", "99"], "--opset 99 is newer than this PyTorch's exporter writes"),
    (["model.num_classes=5"], "does not fit the model of this config"),
    (["model.backbone.name=resnet34"], "does not fit the model of this config"),
])
def test_export_errors(tiny_config, tmp_path, capsys, args, expected):
    weights = tmp_path / "model.pth"
    torch.save(_model(tiny_config).state_dict(), weights)
    code = main(["export", tiny_config, "--weights", str(weights), "--output", str(tmp_path / "m.onnx"), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_export_to_an_unwritable_place(tiny_config, tmp_path, capsys):
    weights = tmp_path / "model.pth"
    torch.save(_model(tiny_config).state_dict(), weights)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["export", tiny_config, "--weights", str(weights), "--output", str(blocker / "m.onnx")])
    assert code == 2 and "is not a writable directory" in capsys.readouterr().err


def test_predict_refuses_an_onnx_file_of_another_kind(tiny_config, tiny_dataset, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), path)
    code = main(["predict", tiny_config, "--weights", str(path), f"{tiny_dataset}/val", "--output-dir",
                 str(tmp_path / "p")])
    assert code == 2 and "was not written by 'detector export'" in capsys.readouterr().err


def test_export_leaves_the_callers_model_where_it_is(tiny_config, tmp_path, monkeypatch):
    # A CUDA model handed to export_onnx was moved to the CPU in place (.cpu() on a wrapper of
    # it): the caller's next forward on CUDA inputs failed. Export traces a CPU copy instead.
    model = _model(tiny_config)
    originals = {name: getattr(torch.nn.Module, name) for name in ("cpu", "to", "cuda")}

    def guard(name):
        def moved(self, *args, **kwargs):
            assert not any(m is model for m in self.modules()), f"export called .{name}() on the caller's model"
            return originals[name](self, *args, **kwargs)
        return moved

    for name in originals:
        monkeypatch.setattr(torch.nn.Module, name, guard(name))
    export_onnx(model, str(tmp_path / "m.onnx"))
    assert model.training == _model(tiny_config).training  # and its mode is restored
