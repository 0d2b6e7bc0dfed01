import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detector.data import CocoDetection, DatasetError


def _write_dataset(root, images=None, annotations=None, categories=None, sizes=None):
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    images = images if images is not None else [
        {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
    ]
    for im in images:
        Image.new("RGB", (im.get("width", 40), im.get("height", 30)), (200, 10, 10)).save(
            os.path.join(root, "img", im["file_name"]))
    data = {
        "images": images,
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 8], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [30, 20, 20, 20]},  # clipped to 10x10
        ],
        "categories": categories if categories is not None else [
            {"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
    }
    path = os.path.join(root, "ann.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path, os.path.join(root, "img")


def test_id_mapping_both_ways_and_targets(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    ds = CocoDetection(ann, img)
    assert ds.category_id_to_label == {3: 0, 7: 1}  # contiguous labels in the order of the ids
    assert ds.label_to_category_id == {0: 3, 1: 7}
    assert ds.class_names == ["three", "seven"]
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.uint8 and image.is_contiguous()
    torch.testing.assert_close(target["boxes"], torch.tensor([[2.0, 3.0, 12.0, 11.0], [30.0, 20.0, 40.0, 30.0]]))
    assert target["labels"].tolist() == [1, 0]
    assert target["image_id"] == 10


def test_empty_image_is_background_unless_filtered(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    ds = CocoDetection(ann, img)
    assert len(ds) == 2
    _, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert len(CocoDetection(ann, img, filter_empty=True)) == 1


def test_crowd_and_degenerate_boxes_are_skipped_and_counted(tmp_path):
    anns = [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 8], "iscrowd": 1},
        {"id": 2, "image_id": 10, "category_id": 7, "bbox": [5, 5, 0.5, 10]},  # 0.5 px wide
        {"id": 3, "image_id": 10, "category_id": 7, "bbox": [39.5, 5, 10, 10]},  # 0.5 px after clipping
        {"id": 4, "image_id": 10, "category_id": 7, "bbox": [5, 5, -4, 10]},  # negative size
        {"id": 5, "image_id": 10, "category_id": 3, "bbox": [1, 1, 5, 5]},
    ]
    ann, img = _write_dataset(str(tmp_path), annotations=anns)
    ds = CocoDetection(ann, img)
    assert ds.num_crowd == 1 and ds.num_degenerate == 3
    _, target = ds[0]
    assert target["labels"].tolist() == [0]
    stats = ds.statistics()
    assert stats["crowd_boxes_skipped"] == 1 and stats["degenerate_boxes_skipped"] == 3
    assert stats["images_without_boxes"] == 1 and stats["box_sizes"]["small"] == 1


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_image_modes_become_rgb(tmp_path, mode):
    ann, img = _write_dataset(str(tmp_path))
    path = os.path.join(img, "a.png" if mode != "CMYK" else "a.jpg")
    if mode == "I;16":
        Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(path)
    elif mode == "CMYK":
        Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path)
        with open(ann) as f:
            data = json.load(f)
        data["images"][0]["file_name"] = "a.jpg"
        with open(ann, "w") as f:
            json.dump(data, f)
    else:
        Image.new("RGB", (40, 30), (200, 10, 10)).convert(mode).save(path)
    image, _ = CocoDetection(ann, img)[0]
    assert image.shape == (3, 30, 40)
    if mode == "I;16":
        assert image.max().item() == 255


def _expect(tmp_path, match, **kwargs):
    ann, img = _write_dataset(str(tmp_path), **kwargs)
    with pytest.raises(DatasetError, match=match):
        CocoDetection(ann, img)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match="annotation file not found: .*nope.json"):
        CocoDetection(str(tmp_path / "nope.json"), str(tmp_path))


def test_truncated_json(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    with open(ann) as f:
        text = f.read()
    with open(ann, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(DatasetError, match=r"ann.json: not valid JSON .*truncated"):
        CocoDetection(ann, img)


def test_missing_required_keys(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    with open(ann) as f:
        data = json.load(f)
    del data["categories"]
    with open(ann, "w") as f:
        json.dump(data, f)
    with pytest.raises(DatasetError, match="missing required key 'categories'"):
        CocoDetection(ann, img)
    _expect(tmp_path / "b", r"annotations\[0\] \(id 1\) is missing required key 'bbox'",
            annotations=[{"id": 1, "image_id": 10, "category_id": 7}])


def test_unknown_ids(tmp_path):
    _expect(tmp_path / "a", "annotation 1 points at unknown image id 99",
            annotations=[{"id": 1, "image_id": 99, "category_id": 7, "bbox": [0, 0, 5, 5]}])
    _expect(tmp_path / "b", r"annotation 1 has unknown category id 8 \(known: \[3, 7\]\)",
            annotations=[{"id": 1, "image_id": 10, "category_id": 8, "bbox": [0, 0, 5, 5]}])


def test_duplicate_ids(tmp_path):
    _expect(tmp_path / "a", "duplicate image id 10", images=[
        {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 10, "file_name": "b.png", "width": 40, "height": 30}])
    _expect(tmp_path / "b", "duplicate annotation id 1", annotations=[
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [0, 0, 5, 5]},
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [0, 0, 5, 5]}])
    _expect(tmp_path / "c", "duplicate category id 7", categories=[{"id": 7, "name": "a"}, {"id": 7, "name": "b"}])


def test_malformed_bbox_and_empty_categories(tmp_path):
    _expect(tmp_path / "a", r"annotation 1 has a malformed bbox \[0, 0, 5\]",
            annotations=[{"id": 1, "image_id": 10, "category_id": 7, "bbox": [0, 0, 5]}])
    _expect(tmp_path / "b", "annotation 1 has a malformed bbox",
            annotations=[{"id": 1, "image_id": 10, "category_id": 7, "bbox": [0, 0, float("nan"), 5]}])
    _expect(tmp_path / "c", "'categories' is empty", categories=[], annotations=[])


def test_empty_dataset(tmp_path):
    _expect(tmp_path, "no images", images=[], annotations=[])


def test_missing_image_dir(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="image directory not found: .*elsewhere"):
        CocoDetection(ann, str(tmp_path / "elsewhere"))


def test_missing_and_broken_image_files_name_file_and_id(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    os.remove(os.path.join(img, "a.png"))
    with open(os.path.join(img, "b.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
    ds = CocoDetection(ann, img)
    with pytest.raises(DatasetError, match=r"image file not found: .*a.png \(image id 10"):
        ds[0]
    with pytest.raises(DatasetError, match=r"cannot read image .*b.png \(image id 11"):
        ds[1]
    problems = ds.check_images(progress=False)
    assert len(problems) == 2


def test_category_ids_as_labels(tmp_path):
    ann, img = _write_dataset(str(tmp_path))
    ds = CocoDetection(ann, img, category_ids_as_labels=True)
    assert ds.num_classes == 8 and ds.label_to_category_id[7] == 7
    assert ds.class_names[3] == "three" and ds.class_names[0] == "unused_0"
    _, target = ds[0]
    assert target["labels"].tolist() == [7, 3]
