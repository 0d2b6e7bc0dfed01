import contextlib
import copy
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.evaluation import STAT_NAMES, detections_to_coco_results, evaluate_coco, format_table


def _gt(num_images=6, seed=0):
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 200, "height": 150})
        for _ in range(rng.integers(1, 5)):
            w, h = rng.uniform(8, 120, 2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 150 - h)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.choice([2, 5, 9])),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    cats = [{"id": 2, "name": "a"}, {"id": 5, "name": "b"}, {"id": 9, "name": "c"}]
    return {"images": images, "annotations": anns, "categories": cats}


def _noisy_results(gt, seed=1):
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        if rng.random() < 0.8:
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                            "bbox": list(np.array([x, y, w, h]) + jitter), "score": float(rng.uniform(0.3, 1))})
        results.append({"image_id": ann["image_id"], "category_id": int(rng.choice([2, 5, 9])),
                        "bbox": list(rng.uniform(0, 100, 4) + [0, 0, 5, 5]), "score": float(rng.uniform(0, 0.6))})
    return results


def _direct_cocoeval(gt, results):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_perfect_detections_give_ap_1():
    gt = _gt()
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    stats = evaluate_coco(gt, results, backend="pycocotools")
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in stats["per_class_AP"].values())


def test_same_numbers_as_a_direct_cocoeval_call():
    gt = _gt()
    results = _noisy_results(gt)
    stats = evaluate_coco(gt, results, backend="pycocotools")
    expected = _direct_cocoeval(gt, results)
    assert [stats[n] for n in STAT_NAMES] == pytest.approx(list(expected), abs=1e-12)
    assert 0.1 < stats["AP"] < 0.95
    assert set(stats["per_class_AP"]) == {"a", "b", "c"}


def test_faster_coco_eval_gives_the_same_12_stats():
    pytest.importorskip("faster_coco_eval")
    gt = _gt(num_images=20, seed=3)
    results = _noisy_results(gt, seed=4)
    ref = evaluate_coco(gt, results, backend="pycocotools")
    fast = evaluate_coco(gt, results, backend="faster_coco_eval")
    assert [fast[n] for n in STAT_NAMES] == pytest.approx([ref[n] for n in STAT_NAMES], abs=1e-6)


def test_no_detections():
    stats = evaluate_coco(_gt(), [], backend="pycocotools")
    assert all(stats[n] == 0.0 for n in STAT_NAMES)


def test_detections_to_results_maps_labels_and_boxes():
    det = [{"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1])}]
    results = detections_to_coco_results(det, [7], {0: 2, 1: 5})
    assert results == [{"image_id": 7, "category_id": 5, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.9}]


def test_table_shows_missing_stats_as_dash():
    stats = dict.fromkeys(STAT_NAMES, 0.5)
    stats["APl"] = -1.0
    stats["per_class_AP"] = {"a": 0.25}
    table = format_table(stats)
    assert " 50.0 " in table and "    - " in table and "a |  25.0" in table


@pytest.mark.parametrize("seed", [0, 3])
def test_hotcoco_gives_pycocotools_12_stats_exactly(seed):
    pytest.importorskip("hotcoco")
    gt = _gt(num_images=20, seed=seed)
    results = _noisy_results(gt, seed=seed + 1)
    ref = evaluate_coco(gt, results, backend="pycocotools")
    hot = evaluate_coco(gt, results, backend="hotcoco")
    assert [hot[n] for n in STAT_NAMES] == [ref[n] for n in STAT_NAMES]  # identical, not close
    assert hot["per_class_AP"] == pytest.approx(ref["per_class_AP"], abs=1e-12)
    np.testing.assert_array_equal(hot["precision"], ref["precision"])


def _error_case():
    """Two images, hand-built: one correct detection, a duplicate of it, one badly placed box of
    the right class (IoU 0.14 with its object: above TIDE's background threshold 0.1, so a
    localisation error) and one box on empty background."""
    gt = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"},
                     {"id": 2, "width": 100, "height": 100, "file_name": "b.png"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [11, 10, 30, 30], "score": 0.8},
               {"image_id": 2, "category_id": 2, "bbox": [60, 60, 20, 20], "score": 0.7},
               {"image_id": 2, "category_id": 1, "bbox": [0, 80, 10, 10], "score": 0.6}]
    return gt, results


@pytest.mark.parametrize("backend", ["pycocotools", "hotcoco"])
def test_error_decomposition_and_calibration_by_hand(backend):
    pytest.importorskip("hotcoco")
    stats = evaluate_coco(*_error_case(), backend=backend)
    counts = stats["tide"]["counts"]
    assert counts == {"Cls": 0, "Loc": 1, "Both": 0, "Dupe": 1, "Bkg": 1, "Miss": 0}
    # class a has AP50 1 (the duplicate and the background box come after its true positive);
    # class b has 0 until its box is placed right: mean AP50 0.5, and fixing localisation gives 1.
    assert stats["tide"]["ap50"] == pytest.approx(0.5)
    assert stats["tide"]["delta_ap"]["Loc"] == pytest.approx(0.5)
    # calibration, 10 bins at IoU 0.5: the 0.9 detection is right (gap 0.1), the other three wrong
    # (gaps 0.8, 0.7, 0.6), one per bin: ECE = (0.1 + 0.8 + 0.7 + 0.6) / 4, MCE = 0.8
    assert stats["calibration"]["ece"] == pytest.approx(0.55)
    assert stats["calibration"]["mce"] == pytest.approx(0.8)
    table = format_table(stats)
    assert "errors (TIDE" in table and "0.550" in table


def test_auto_prefers_hotcoco():
    pytest.importorskip("hotcoco")
    from detector.evaluation.coco_eval import resolve_backend

    assert resolve_backend("auto") == "hotcoco"
