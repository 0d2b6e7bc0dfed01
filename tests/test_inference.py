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
