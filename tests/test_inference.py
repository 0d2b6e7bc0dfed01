"""The Python API: Detector.from_checkpoint(path)(image) for every kind of image, with class
names from the checkpoint; and the README's snippet, run as written."""
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from detector import Detector
from detector.cli import main


@pytest.fixture(scope="module")
def checkpoint(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    assert main(["train", tiny_config, "--output-dir", str(out), "train.max_iter=2", "data.val.ann_file=",
                 "data.num_workers=0", "model.inference.score_thresh=0.0"]) == 0
    return str(out / "model_final.pth")


def test_every_kind_of_image_gives_the_same_detections_in_its_own_pixels(checkpoint, tiny_dataset):
    det = Detector.from_checkpoint(checkpoint)
    assert det.class_names == ["circle", "square", "triangle", "cross"]  # from the checkpoint
    path = os.path.join(tiny_dataset, "val", "000001.png")
    array = np.asarray(Image.open(path).convert("RGB"))
    by_path, by_array, by_pil = det(path), det(array), det(Image.open(path))
    assert len(by_path["boxes"]) > 0
    for other in (by_array, by_pil):
        np.testing.assert_array_equal(by_path["boxes"], other["boxes"])
    assert by_path["class_names"] == [det.class_names[int(c)] for c in by_path["labels"]]
    assert np.all(np.diff(by_path["scores"]) <= 0)  # sorted by score
    # boxes in the input's pixels: a 2x larger copy of the image gives boxes 2x larger
    big = np.asarray(Image.fromarray(array).resize((128, 128), Image.NEAREST))
    assert det(big)["boxes"].max() > 64 >= by_path["boxes"].max()
    both = det([path, array])
    assert isinstance(both, list) and len(both) == 2


def test_bad_images_are_named(checkpoint, tmp_path):
    det = Detector.from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="must be \\[H, W, 3\\] uint8"):
        det(np.zeros((10, 10), dtype=np.float32))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        det(str(tmp_path / "bad.png"))


def test_class_names_can_be_given_and_must_fit(checkpoint):
    assert Detector.from_checkpoint(checkpoint, class_names=list("abcd")).class_names == list("abcd")
    with pytest.raises(ValueError, match="3 class names for a model of 4 classes"):
        Detector.from_checkpoint(checkpoint, class_names=list("abc"))


def test_the_readme_snippet_runs_as_written(checkpoint, tiny_dataset, tmp_path, monkeypatch, capsys):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    snippet = re.search(r"```python\n(from detector import Detector\n.*?)```", readme, re.S).group(1)
    # the files the snippet names, where make demo would have put them
    os.makedirs(tmp_path / "output" / "demo" / "shapes_focal")
    os.symlink(checkpoint, tmp_path / "output" / "demo" / "shapes_focal" / "model_final.pth")
    os.makedirs(tmp_path / "data" / "shapes" / "val")
    os.symlink(os.path.join(tiny_dataset, "val", "000001.png"), tmp_path / "data" / "shapes" / "val" / "000001.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"(circle|square|triangle|cross) 0\.\d+ \[", printed), printed


def _trained_on_cuda(checkpoint, tmp_path):
    """The checkpoint as a GPU run would have saved it: its config says train.device=cuda."""
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["train"]["device"] = "cuda"
    path = str(tmp_path / "cuda_run.pth")
    torch.save(state, path)
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="the claim is about a machine without CUDA")
def test_a_checkpoint_trained_on_a_gpu_loads_where_there_is_none(checkpoint, tmp_path, tiny_config, tiny_dataset):
    path = _trained_on_cuda(checkpoint, tmp_path)
    det = Detector.from_checkpoint(path)  # device="auto": the best device here, not the run's
    assert det.device == torch.device("cpu")
    with pytest.raises(ValueError, match="device=cuda but CUDA is not available here"):
        Detector.from_checkpoint(path, device="cuda")  # asked for by name: refused with the reason
    image = os.path.join(tiny_dataset, "val", "000001.png")
    out = tmp_path / "preds"
    assert main(["predict", tiny_config, "--weights", path, image, "--output-dir", str(out)]) == 0
    assert os.path.isfile(out / "predictions.json")
    assert main(["eval", tiny_config, "--weights", path, "--output-dir", str(tmp_path / "eval")]) == 0
    assert main(["predict", tiny_config, "--weights", path, image, "--output-dir", str(out), "--device", "cuda"]) == 2


@pytest.fixture(scope="module")
def sparse_ids(tiny_config, tiny_dataset, tmp_path_factory):
    """The tiny data set with COCO-like, non-contiguous category ids (5, 11, 37, 90), and a model
    trained on it for two steps."""
    import json

    root = tmp_path_factory.mktemp("sparse_ids")
    remap = {1: 5, 2: 11, 3: 37, 4: 90}
    for split in ("train", "val"):
        data = json.load(open(os.path.join(tiny_dataset, "annotations", f"instances_{split}.json")))
        for c in data["categories"]:
            c["id"] = remap[c["id"]]
        for a in data["annotations"]:
            a["category_id"] = remap[a["category_id"]]
        json.dump(data, open(root / f"{split}.json", "w"))
    config = root / "sparse.yaml"
    config.write_text(f"_base_: {tiny_config}\ndata:\n  train: {{ann_file: {root}/train.json}}\n"
                      f"  val: {{ann_file: {root}/val.json}}\n")
    out = root / "run"
    assert main(["train", str(config), "--output-dir", str(out), "train.max_iter=2", "data.val.ann_file=",
                 "model.inference.score_thresh=0.0"]) == 0
    return str(config), str(out / "model_final.pth")


def test_predictions_carry_the_data_sets_category_ids(sparse_ids, tiny_dataset, tmp_path):
    import json

    config, checkpoint = sparse_ids
    state = torch.load(checkpoint, weights_only=True)
    assert state["metadata"] == {"class_names": ["circle", "square", "triangle", "cross"],
                                 "category_ids": [5, 11, 37, 90]}
    det = Detector.from_checkpoint(checkpoint)
    result = det(os.path.join(tiny_dataset, "val", "000001.png"))
    assert result["category_ids"] == [[5, 11, 37, 90][int(c)] for c in result["labels"]]
    out = tmp_path / "preds"
    assert main(["predict", config, "--weights", checkpoint, "--split", "val", "--output-dir", str(out),
                 "--score-thresh", "0.0", "--set", "model.inference.score_thresh=0.0"]) == 0
    records = json.load(open(out / "predictions.json"))
    assert len(records) == 8 and all(set(r["category_ids"]) <= {5, 11, 37, 90} for r in records)
    assert any(r["category_ids"] for r in records)
    # the COCO results format, read by pycocotools against the split's annotations
    from pycocotools.coco import COCO

    gt = COCO(config.replace("sparse.yaml", "val.json"))
    results = gt.loadRes(str(out / "coco_results.json"))
    assert len(results.getAnnIds()) > 0 and set(results.getCatIds()) <= {5, 11, 37, 90}


def test_every_input_gets_its_own_drawing(checkpoint, tiny_config, tiny_dataset, tmp_path):
    # cam1/IMG_0001.png and cam2/IMG_0001.png, and IMG_0001.jpg beside the .png: one
    # IMG_0001_pred.png was written for all three while predictions.json listed each.
    import json
    import shutil

    source = os.path.join(tiny_dataset, "val", "000001.png")
    for folder in ("cam1", "cam2"):
        os.makedirs(tmp_path / folder)
        shutil.copy(source, tmp_path / folder / "IMG_0001.png")
    Image.open(source).convert("RGB").save(tmp_path / "cam1" / "IMG_0001.jpg")  # same stem, another type
    out = tmp_path / "preds"
    assert main(["predict", tiny_config, "--weights", checkpoint, str(tmp_path / "cam1"), str(tmp_path / "cam2"),
                 "--output-dir", str(out)]) == 0
    records = json.load(open(out / "predictions.json"))
    drawings = [r["drawing"] for r in records]
    assert len(records) == 3 and len(set(drawings)) == 3
    assert all((out / d).is_file() for d in drawings)
    assert sorted(os.listdir(out)) == sorted(drawings + ["predictions.json"])
