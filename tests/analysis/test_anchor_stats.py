"""Anchor statistics on hand-built cases: counts worked out from the anchor layout."""
import json

import pytest

from detector.analysis.anchor_stats import anchor_statistics, format_anchor_statistics
from detector.config import load_config

# One anchor per cell (scale 1, ratio 1) of sizes 16..256 at strides 8..128 on a 64 x 64
# input: 8x8 + 4x4 + 2x2 + 1 + 1 = 86 anchors, P3's centred on multiples of 8.
ONE_ANCHOR = ["model.anchors.scales=[1.0]", "model.anchors.aspect_ratios=[1.0]", "input.min_size=64",
              "input.max_size=64", "model.num_classes=1"]


@pytest.fixture()
def hand_built(tmp_path):
    (tmp_path / "img").mkdir()
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64},
                   {"id": 2, "file_name": "b.png", "width": 64, "height": 64}],
        "annotations": [
            # exactly the P3 anchor centred at (8, 8): IoU 1; its neighbours overlap it 1/3 (< 0.4)
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 16, 16], "iscrowd": 0},
            # 3 x 3 px: inside the four P3 anchors centred at (40|48, 40|48), IoU 9/256 with each
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 40, 3, 3], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return [f"data.train.ann_file={path}", f"data.train.img_dir={tmp_path / 'img'}"]


def test_counts_by_hand(tiny_config, hand_built):
    stats = anchor_statistics(load_config(tiny_config, ONE_ANCHOR + hand_built))
    assert stats["images"] == 2 and stats["anchors"]["mean"] == 86
    # image 1: the exact box's anchor + the small box's four tied best anchors (low-quality matches)
    assert stats["positives"] == {"mean": 2.5, "median": 2.5, "p95": pytest.approx(4.75)}
    assert stats["ignored"]["mean"] == 0
    assert stats["negatives"]["mean"] == (81 + 86) / 2
    assert stats["negatives_per_positive"] == pytest.approx(167 / 5)
    assert stats["boxes"] == {"small": 2, "medium": 0, "large": 0}
    assert stats["below_fg_thresh"]["small"] == 1 and stats["no_anchor"]["small"] == 0
    text = format_anchor_statistics(stats)
    assert "foreground:background = 1:33" in text and "no anchor at IoU >= 0.5: 1 (small 1/2" in text


def test_without_low_quality_matches_the_small_box_gets_no_anchor(tiny_config, hand_built):
    stats = anchor_statistics(load_config(tiny_config, ONE_ANCHOR + hand_built
                                          + ["model.matcher.allow_low_quality_matches=false"]))
    assert stats["positives"]["mean"] == 0.5 and stats["no_anchor"]["small"] == 1


def test_ignored_band(tiny_config, hand_built):
    # the exact box cut to 16 x 12 px: IoU 192/256 = 0.75 with its anchor, 96/352 = 0.27 with the
    # next one; with bg 0.7 / fg 0.9 and no low-quality matches, 0.75 falls in the ignored band
    path = hand_built[0].split("=", 1)[1]
    data = json.load(open(path))
    data["annotations"][0]["bbox"] = [0, 0, 16, 12]
    json.dump(data, open(path, "w"))
    overrides = ONE_ANCHOR + hand_built + ["model.matcher.bg_iou_thresh=0.7", "model.matcher.fg_iou_thresh=0.9",
                                           "model.matcher.allow_low_quality_matches=false"]
    stats = anchor_statistics(load_config(tiny_config, overrides))
    assert stats["ignored"]["mean"] == 0.5 and stats["positives"]["mean"] == 0
    assert stats["negatives_per_positive"] == float("inf")
    assert stats["no_anchor"]["small"] == 2


def test_subsampling_and_the_demo_data(tiny_config):
    stats = anchor_statistics(load_config(tiny_config), max_images=5)
    assert stats["images"] <= 5 < stats["images_in_split"] or stats["images"] == stats["images_in_split"]
    assert stats["negatives_per_positive"] > 1
