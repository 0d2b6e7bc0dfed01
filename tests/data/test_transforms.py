import numpy as np
import pytest
import torch

from detector.data import BoxTransform, build_transforms, collate


def _image_with_square():
    image = np.zeros((60, 100, 3), dtype=np.uint8)
    image[10:30, 20:35] = 255  # object at x 20..35, y 10..30
    return image, np.array([[20.0, 10.0, 35.0, 30.0]], dtype=np.float32), np.array([2])


def _box_is_on_object(image, box):
    """The box and the object coincide: nearly all of the object's brightness lies inside the
    box, and the box is nearly all object (resizing blurs the edges a little)."""
    x1, y1, x2, y2 = np.round(box).astype(int)
    brightness = image.astype(np.float64).sum(axis=2)
    inside = brightness[y1:y2, x1:x2]
    assert inside.sum() > 0.97 * brightness.sum(), "part of the object is outside the box"
    assert inside.mean() > 0.9 * 3 * 255, "the box covers more than the object"


def test_flip_moves_the_box_with_the_object():
    image, boxes, labels = _image_with_square()
    out_image, out_boxes, out_labels = BoxTransform([{"name": "HorizontalFlip", "p": 1.0}])(image, boxes, labels)
    np.testing.assert_allclose(out_boxes, [[100 - 35, 10, 100 - 20, 30]])
    assert out_labels.tolist() == [2]
    _box_is_on_object(out_image, out_boxes[0])


def test_resize_scales_the_box_with_the_object():
    image, boxes, labels = _image_with_square()
    out_image, out_boxes, _ = BoxTransform([{"name": "SmallestMaxSize", "max_size": 120}])(image, boxes, labels)
    assert out_image.shape[:2] == (120, 200)
    np.testing.assert_allclose(out_boxes, boxes * 2, atol=0.01)
    _box_is_on_object(out_image, out_boxes[0])


def test_box_pushed_out_is_dropped_with_its_label():
    image, boxes, labels = _image_with_square()
    crop = BoxTransform([{"name": "Crop", "x_min": 50, "y_min": 0, "x_max": 100, "y_max": 60}])
    _, out_boxes, out_labels = crop(image, boxes, labels)
    assert out_boxes.shape == (0, 4) and out_labels.shape == (0,)


def test_empty_targets_pass_through():
    image, _, _ = _image_with_square()
    _, boxes, labels = BoxTransform([{"name": "HorizontalFlip", "p": 1.0}])(
        image, np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
    assert boxes.shape == (0, 4) and labels.shape == (0,)


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="transform 0: 'Flipp' is not an albumentations transform"):
        build_transforms([{"name": "Flipp"}])
    with pytest.raises(ValueError, match=r"transform 1 \(HorizontalFlip\): bad arguments"):
        build_transforms([{"name": "HorizontalFlip"}, {"name": "HorizontalFlip", "bogus": 1}])
    assert build_transforms([]) is None


def test_collate_keeps_sizes():
    batch = [(torch.zeros(3, 10, 20), {"boxes": torch.zeros(1, 4)}), (torch.zeros(3, 30, 5), {"boxes": torch.zeros(0, 4)})]
    images, targets = collate(batch)
    assert [im.shape for im in images] == [(3, 10, 20), (3, 30, 5)]
    assert len(targets) == 2 and targets[1]["boxes"].shape == (0, 4)


def test_training_resizes_like_testing_when_the_transforms_do_not_rescale(tiny_config):
    import torch

    from detector.config import load_config, resize_in_training, training_scale_note
    from detector.modeling import build_model

    flip_only = load_config(tiny_config)  # transforms: HorizontalFlip only; input 64 px
    assert resize_in_training(flip_only) and "auto" in training_scale_note(flip_only)[0]
    model = build_model(flip_only).train()
    photos = [torch.rand(3, 300, 200), torch.rand(3, 150, 400)]  # native sizes far from 64
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 200.0]]), "labels": torch.tensor([0])}] * 2
    batch, sizes, scaled = model.preprocessor(photos, targets)
    assert max(max(s) for s in sizes) == 64 and batch.shape[-2:] == (64, 64)
    (h, w) = sizes[0]
    expected = targets[0]["boxes"] * torch.tensor([w / 200, h / 300, w / 200, h / 300])
    torch.testing.assert_close(scaled[0]["boxes"], expected)  # the boxes move with the pixels

    rescaling = load_config(tiny_config, ["data.train.transforms=[{name: SmallestMaxSize, max_size: 64}]"])
    assert not resize_in_training(rescaling) and "rescaled by the train transforms" in training_scale_note(rescaling)[0]
    native = load_config(tiny_config, ["input.resize_in_training=false"])
    assert not build_model(native).preprocessor.resize_in_training
    note, warning = training_scale_note(native)
    assert warning and "input.resize_in_training=true" in note


def test_check_data_and_train_state_the_training_scale(tiny_config, tmp_path, capsys, caplog):
    from detector.cli import main

    assert main(["check-data", tiny_config, "input.resize_in_training=false"]) == 0
    assert "[scale] WARNING: train images keep their native sizes" in capsys.readouterr().out
    with caplog.at_level("WARNING", logger="detector"):
        assert main(["train", tiny_config, "--output-dir", str(tmp_path), "train.max_iter=1", "data.val.ann_file=",
                     "input.resize_in_training=false"]) == 0
    assert any("keep their native sizes" in r.getMessage() for r in caplog.records)
