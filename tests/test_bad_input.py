"""Every kind of bad input ends in a message naming the file, key or id, exit code 2, and
no traceback (issue: scale and survive)."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from detector.cli import main


@pytest.fixture()
def data_copy(tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    return root


def _ann(root, split="train"):
    return root / "annotations" / f"instances_{split}.json"


def _edit(root, change, split="train"):
    path = _ann(root, split)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _run(capsys, args, expected):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    return err


def _train_args(tiny_config, root, tmp_path, *extra):
    return ["train", tiny_config, "--output-dir", str(tmp_path / "out"), "train.max_iter=2",
            f"data.train.ann_file={_ann(root)}", f"data.train.img_dir={root / 'train'}",
            f"data.val.ann_file={_ann(root, 'val')}", f"data.val.img_dir={root / 'val'}", *extra]


def test_truncated_json(tiny_config, data_copy, tmp_path, capsys):
    path = _ann(data_copy)
    path.write_text(path.read_text()[:100])
    _run(capsys, _train_args(tiny_config, data_copy, tmp_path), "instances_train.json: not valid JSON")


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.pop("annotations"), "missing required key 'annotations'"),
    (lambda d: d["annotations"][0].pop("bbox"), "is missing required key 'bbox'"),
    (lambda d: d["annotations"][0].update(image_id=999), "points at unknown image id 999"),
    (lambda d: d["annotations"][0].update(category_id=42), "unknown category id 42"),
    (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id 1"),
    (lambda d: d.update(images=[], annotations=[]), "no images"),
])
def test_bad_annotations(tiny_config, data_copy, tmp_path, capsys, change, expected):
    _edit(data_copy, change)
    _run(capsys, _train_args(tiny_config, data_copy, tmp_path), expected)


def test_boxes_with_negative_size_or_outside_are_skipped_and_counted(tiny_config, data_copy, tmp_path, capsys):
    def change(d):
        d["annotations"][0]["bbox"] = [10, 10, -5, 8]
        d["annotations"][1]["bbox"] = [500, 500, 10, 10]
    _edit(data_copy, change)
    assert main(_train_args(tiny_config, data_copy, tmp_path, "train.max_iter=1")) == 0
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "skipped 2 degenerate boxes" in log


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("damage,expected", [
    ("missing", "image file not found"),
    ("truncated", "cannot read image"),
    ("text", "cannot read image"),
])
def test_bad_image_files_name_the_file_and_keep_progress(tiny_config, data_copy, tmp_path, capsys, damage,
                                                         expected, workers):
    # with workers, the message must not come behind the worker's "Original Traceback" (_run
    # checks that no traceback is printed)
    path = data_copy / "train" / "000003.png"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_text("not an image")
    err = _run(capsys, _train_args(tiny_config, data_copy, tmp_path, "train.max_iter=10",
                                   "data.train.transforms=[]", f"data.num_workers={workers}"), expected)
    assert "000003.png" in err and "image id 3" in err
    if damage == "missing":  # found by the check before the first step
        assert "check data.train.img_dir" in err
        assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_a_bad_image_during_evaluation_with_workers(tiny_config, data_copy, tmp_path, capsys):
    (data_copy / "val" / "000002.png").write_text("not an image")
    err = _run(capsys, _train_args(tiny_config, data_copy, tmp_path, "train.max_iter=1", "data.num_workers=2"),
               "cannot read image")
    assert "000002.png" in err and "Original Traceback" not in err


@pytest.mark.parametrize("mode", ["I;16", "CMYK"])
def test_16_bit_and_cmyk_images_train(tiny_config, data_copy, tmp_path, mode):
    path = data_copy / "train" / "000001.png"
    rgb = Image.open(path).convert("RGB")
    if mode == "I;16":
        Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)).save(path)
    else:
        jpg = data_copy / "train" / "000001.jpg"
        rgb.convert("CMYK").save(jpg)
        _edit(data_copy, lambda d: d["images"][0].update(file_name="000001.jpg"))
    assert main(_train_args(tiny_config, data_copy, tmp_path, "train.max_iter=1")) == 0


@pytest.mark.parametrize("override,expected", [
    ("model.nonsense=1", "unknown config key 'model.nonsense'"),
    ("solver.base_lr=fast", "'solver.base_lr' must be a finite number"),
    ("solver.steps=[1, 2", "'solver.steps' must be a list"),
    ("justakey", "unrecognized arguments"),
])
def test_bad_config_and_overrides(tiny_config, tmp_path, capsys, override, expected):
    if override == "justakey":
        with pytest.raises(SystemExit) as e:
            main(["train", tiny_config, "--output-dir", str(tmp_path), override])
        assert e.value.code == 2 and expected in capsys.readouterr().err
        return
    _run(capsys, ["train", tiny_config, "--output-dir", str(tmp_path), override], expected)


def test_checkpoint_for_another_architecture(tiny_config, tmp_path, capsys):
    assert main(["train", tiny_config, "--output-dir", str(tmp_path / "run"), "train.max_iter=1",
                 "data.val.ann_file="]) == 0
    capsys.readouterr()
    _run(capsys, ["eval", tiny_config, "--weights", str(tmp_path / "run" / "model_final.pth"),
                  "model.backbone.name=resnet34"], "does not fit the model of this config")


def test_unwritable_output_dir(tiny_config, tmp_path, capsys):
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores permission bits
            blocker = tmp_path / "blocker"
            os.chmod(tmp_path, 0o700)
            blocker.write_text("a file where a directory should be")
            target = blocker / "out"
        else:
            target = tmp_path / "out"
        _run(capsys, ["train", tiny_config, "--output-dir", str(target)], "is not writable")
    finally:
        os.chmod(tmp_path, 0o700)


def test_non_finite_loss(tiny_config, tmp_path, capsys):
    _run(capsys, ["train", tiny_config, "--output-dir", str(tmp_path), "solver.base_lr=1e30",
                  "solver.optimizer=sgd", "solver.warmup_iters=0", "train.log_period=1"], "loss is not finite")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _evil_checkpoint(path):
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": _Evil()}, "iteration": 1}, f, protocol=2)


def test_malicious_checkpoints_are_refused_everywhere(tiny_config, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    _evil_checkpoint(evil)
    _run(capsys, ["eval", tiny_config, "--weights", str(evil)], "refused for safety")
    run = tmp_path / "run"
    run.mkdir()
    _evil_checkpoint(run / "model_0000001.pth")
    (run / "last_checkpoint").write_text("model_0000001.pth")
    _run(capsys, ["train", tiny_config, "--output-dir", str(run), "--resume"], "refused for safety")
    _run(capsys, ["train", tiny_config, "--output-dir", str(tmp_path / "b"), f"model.backbone.weights={evil}"],
         "refused for safety")
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_decompression_bomb_is_a_data_error_naming_the_file(tiny_config, data_copy, tmp_path, capsys, workers):
    from tests.data.test_image import write_bomb

    write_bomb(data_copy / "train" / "000003.png")
    err = _run(capsys, _train_args(tiny_config, data_copy, tmp_path, "train.max_iter=10", "data.train.transforms=[]",
                                   f"data.num_workers={workers}"), "000003.png")
    assert "image id 3" in err and "data.max_image_pixels" in err
    capsys.readouterr()
    args = _train_args(tiny_config, data_copy, tmp_path)
    assert main(["check-data", *[a for a in args[1:] if a not in ("--output-dir", str(tmp_path / "out"))
                                 and not a.startswith("train.")]]) == 2
    out = capsys.readouterr().out
    assert "000003.png" in out and "30000x30000" in out


def test_predict_refuses_a_decompression_bomb_by_name(tiny_config, tmp_path, capsys):
    from tests.data.test_image import write_bomb

    assert main(["train", tiny_config, "--output-dir", str(tmp_path / "run"), "train.max_iter=1",
                 "data.val.ann_file="]) == 0
    bomb = write_bomb(tmp_path / "bomb.png")
    err = _run(capsys, ["predict", tiny_config, "--weights", str(tmp_path / "run" / "model_final.pth"), str(bomb),
                        "--output-dir", str(tmp_path / "pred")], "bomb.png")
    assert "data.max_image_pixels" in err


def test_resume_after_the_architecture_changed_says_what_changed(tiny_config, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", tiny_config, "--output-dir", out, "train.max_iter=2", "data.val.ann_file="]) == 0
    capsys.readouterr()
    err = _run(capsys, ["train", tiny_config, "--output-dir", out, "--resume", "train.max_iter=4",
                        "data.val.ann_file=", "model.head.num_convs=2", "model.fpn.out_channels=16"],
               "--resume: ")
    assert "model.head.num_convs: 1 -> 2" in err and "model.fpn.out_channels: 32 -> 16" in err
    assert "in the checkpoint" in err and "in the model" in err  # the shapes that differ


def _check_data_args(tiny_config, root):
    return ["check-data", tiny_config, f"data.train.ann_file={_ann(root)}", f"data.train.img_dir={root / 'train'}",
            f"data.val.ann_file={_ann(root, 'val')}", f"data.val.img_dir={root / 'val'}"]


def test_odd_json_from_other_tools_is_read(tiny_config, data_copy, capsys):
    # a byte-order mark (Windows tools) and file names with Windows separators
    (data_copy / "train" / "sub").mkdir()
    os.rename(data_copy / "train" / "000001.png", data_copy / "train" / "sub" / "000001.png")
    _edit(data_copy, lambda d: d["images"][0].update(file_name="sub\\000001.png"))
    path = _ann(data_copy)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert main(_check_data_args(tiny_config, data_copy)) == 0, capsys.readouterr().err


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["images"][0].update(width=0), "images[0] (id 1) has width 0"),
    (lambda d: d["images"][0].update(height="64"), "images[0] (id 1) has height '64'"),
    (lambda d: d["images"][0].update(file_name=17), "images[0] (id 1) has file_name 17"),
])
def test_odd_image_entries_are_named(tiny_config, data_copy, tmp_path, capsys, change, expected):
    _edit(data_copy, change)
    _run(capsys, _train_args(tiny_config, data_copy, tmp_path), expected)


def test_an_annotation_path_that_is_a_directory_is_named(tiny_config, data_copy, tmp_path, capsys):
    args = _train_args(tiny_config, data_copy, tmp_path, f"data.train.ann_file={data_copy / 'annotations'}")
    _run(capsys, args, "is a directory; data.*.ann_file names the COCO-format json")


def test_predict_goes_on_past_an_unreadable_image_and_names_it(tiny_config, tiny_dataset, tmp_path, capsys):
    assert main(["train", tiny_config, "--output-dir", str(tmp_path / "run"), "train.max_iter=1",
                 "data.val.ann_file="]) == 0
    images = tmp_path / "images"
    shutil.copytree(os.path.join(tiny_dataset, "val"), images)
    (images / "000002.png").write_text("not an image")
    capsys.readouterr()
    err = _run(capsys, ["predict", tiny_config, "--weights", str(tmp_path / "run" / "model_final.pth"), str(images),
                        "--output-dir", str(tmp_path / "pred")], "1 of 8 images could not be read")
    assert "000002.png" in err
    records = json.load(open(tmp_path / "pred" / "predictions.json"))
    assert len(records) == 8 and sum("error" in r for r in records) == 1
    assert len(list((tmp_path / "pred").glob("*_pred.png"))) == 7


def test_running_out_of_cpu_memory_says_what_to_lower(tiny_config, monkeypatch, capsys):
    import detector.cli as cli

    def oom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 53687091200 bytes.")

    monkeypatch.setattr(cli, "cmd_config", oom)
    err = _run(capsys, ["config", tiny_config], "the CPU ran out of memory")
    assert "input.max_size" in err


@pytest.mark.parametrize("args", [["--num-train", "-5"], ["--num-val", "0"]])
def test_make_synthetic_refuses_counts_below_one(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as e:
        main(["make-synthetic", str(tmp_path / "x"), *args])
    assert e.value.code == 2 and "must be at least 1" in capsys.readouterr().err
