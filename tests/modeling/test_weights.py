"""Fine-tuning from detector weights: what fits is loaded (checked by value), a classifier for
another class count keeps its prior-probability initialisation, torchvision's layout converts."""
import json
import math
import shutil

import pytest
import torch

from detector.cli import main
from detector.config import load_config
from detector.modeling import build_model
from detector.modeling.weights import load_pretrained


def _three_class_copy(tiny_dataset, tmp_path):
    """The tiny shapes with the 'cross' class (id 4) dropped: another class count."""
    root = tmp_path / "three"
    shutil.copytree(tiny_dataset, root)
    for split in ("train", "val"):
        path = root / "annotations" / f"instances_{split}.json"
        data = json.loads(path.read_text())
        data["categories"] = [c for c in data["categories"] if c["id"] != 4]
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 4]
        path.write_text(json.dumps(data))
    return root


def _data_args(root):
    return [f"data.train.ann_file={root}/annotations/instances_train.json", f"data.train.img_dir={root}/train",
            f"data.val.ann_file={root}/annotations/instances_val.json", f"data.val.img_dir={root}/val"]


def test_our_checkpoint_to_another_class_count(tiny_config, tmp_path):
    source = build_model(load_config(tiny_config))
    torch.save({"model": source.state_dict()}, tmp_path / "four.pth")
    target = build_model(load_config(tiny_config, ["model.num_classes=3"]))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_pretrained(target, str(tmp_path / "four.pth"))
    after, src = target.state_dict(), source.state_dict()
    assert report.loaded and all(torch.equal(after[k], src[k]) for k in report.loaded)
    assert not torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])  # it did load
    assert [r.split()[0] for r in report.reinitialised] == ["head.cls_score.bias", "head.cls_score.weight"]
    assert torch.equal(after["head.cls_score.weight"], before["head.cls_score.weight"])
    prior_bias = -math.log((1 - 0.01) / 0.01)
    assert after["head.cls_score.bias"].tolist() == pytest.approx([prior_bias] * after["head.cls_score.bias"].numel())
    assert "head.bbox_pred.weight" in report.loaded  # same anchors: the box layer fits
    assert "re-initialised" in report.describe() and "head.cls_score.weight (36, 32, 3, 3) -> (27, 32, 3, 3)" \
        in report.describe()


def test_a_torchvision_state_dict_is_converted_on_the_fly(tmp_path):
    from torchvision.models.detection import retinanet_resnet50_fpn

    torch.manual_seed(0)
    tv = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)  # random, in its key layout
    ours = build_model(load_config("configs/retinanet/retinanet_r50_fpn_torchvision.yaml", ["model.num_classes=5"]))
    path = str(tmp_path / "torchvision_retinanet.pth")
    torch.save(tv.state_dict(), path)
    report = load_pretrained(ours, path)
    tv_state, state = tv.state_dict(), ours.state_dict()
    assert torch.equal(state["backbone.layer3.2.conv2.weight"], tv_state["backbone.body.layer3.2.conv2.weight"])
    assert torch.equal(state["fpn.p6.weight"], tv_state["backbone.fpn.extra_blocks.p6.weight"])
    assert torch.equal(state["head.bbox_pred.weight"], tv_state["head.regression_head.bbox_reg.weight"])
    assert [r.split()[0] for r in report.reinitialised] == ["head.cls_score.bias", "head.cls_score.weight"]
    assert len(report.loaded) == len(state) - 2  # everything but the classifier


def test_a_file_of_another_architecture_is_refused(tiny_config, tmp_path):
    torch.save({"model": {"something.else": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="shares no backbone tensor"):
        load_pretrained(build_model(load_config(tiny_config)), str(tmp_path / "other.pth"))


def test_fine_tuning_through_train_and_resume_wins(tiny_config, tiny_dataset, tmp_path, capsys):
    assert main(["train", tiny_config, "--output-dir", str(tmp_path / "four"), "train.max_iter=2",
                 "data.val.ann_file="]) == 0
    three = _three_class_copy(tiny_dataset, tmp_path)
    args = ["train", tiny_config, "--output-dir", str(tmp_path / "tuned"), "train.max_iter=2", "model.num_classes=3",
            f"model.weights={tmp_path / 'four' / 'model_final.pth'}", *_data_args(three)]
    assert main(args) == 0
    log = (tmp_path / "tuned" / "log.txt").read_text()
    assert "model.weights" in log and "re-initialised" in log and "head.cls_score.weight" in log
    assert main(args[:4] + ["train.max_iter=4"] + args[5:] + ["--resume"]) == 0
    resumed = (tmp_path / "tuned" / "log.txt").read_text()[len(log):]
    assert "resumed from" in resumed and "model.weights" not in resumed  # the run's own weights, not the file's
