"""Batched post-processing against a per-image, per-level reference written the way
torchvision's RetinaNet does it."""
import math

import pytest
import torch
from torchvision.ops import batched_nms

from detector.modeling import postprocess as postprocess_module
from detector.modeling.box_coder import BoxCoder
from detector.modeling.postprocess import _batched_nms, _nms_with_offsets, postprocess_detections

LEVEL_SIZES = [120, 60, 20]
NUM_CLASSES = 5
THRESH, TOPK, NMS, MAX_DET = 0.05, 30, 0.5, 25


def _inputs(seed=0, num_images=3):
    g = torch.Generator().manual_seed(seed)
    num_anchors = sum(LEVEL_SIZES)
    xy = torch.rand(num_anchors, 2, generator=g) * 80
    anchors = torch.cat([xy, xy + 10 + torch.rand(num_anchors, 2, generator=g) * 30], 1)
    logits = torch.randn(num_images, num_anchors, NUM_CLASSES, generator=g) - 2.5
    deltas = 0.2 * torch.randn(num_images, num_anchors, 4, generator=g)
    return logits, deltas, anchors


def _reference(logits, deltas, anchors, image_sizes):
    coder, out = BoxCoder(), []
    for i, (h, w) in enumerate(image_sizes):
        boxes_all, scores_all, labels_all, start = [], [], [], 0
        for size in LEVEL_SIZES:
            scores = logits[i, start:start + size].sigmoid().flatten()
            keep = torch.nonzero(scores > THRESH).squeeze(1)
            # torchvision takes topk here, which orders equal scores as it happens to; a stable
            # sort makes the reference's ties defined: the lower (anchor, class) index first
            top, idx = scores[keep].sort(descending=True, stable=True)
            top, idx = top[:TOPK], idx[:TOPK]
            idx = keep[idx]
            anchor_idx, labels = idx // NUM_CLASSES + start, idx % NUM_CLASSES
            boxes = coder.decode(deltas[i, anchor_idx], anchors[anchor_idx])
            boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                 boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
            boxes_all.append(boxes), scores_all.append(top), labels_all.append(labels)
            start += size
        boxes, scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
        keep = batched_nms(boxes, scores, labels, NMS)[:MAX_DET]
        out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return out


MIN_LOGIT = math.log(THRESH / (1 - THRESH))  # a sigmoid's score passes THRESH above this logit


def _run(logits, deltas, anchors, image_sizes, min_logit):
    return postprocess_detections(logits, torch.sigmoid, deltas, anchors, LEVEL_SIZES, image_sizes,
                                  BoxCoder(), THRESH, TOPK, NMS, MAX_DET, min_logit)


@pytest.mark.parametrize("prefilter", [True, False])
def test_matches_per_image_per_level_reference(prefilter, monkeypatch):
    monkeypatch.setattr(postprocess_module, "_BLOCK_ELEMENTS", 64)  # several blocks without the prefilter
    logits, deltas, anchors = _inputs()
    sizes = [(90, 100), (70, 60), (100, 100)]
    min_logit = MIN_LOGIT if prefilter else None
    got = _run(logits, deltas, anchors, sizes, min_logit)
    expected = _reference(logits, deltas, anchors, sizes)
    for g, e in zip(got, expected):
        assert len(e["boxes"]) > 5  # a comparison over real detections
        torch.testing.assert_close(g["scores"], e["scores"])
        torch.testing.assert_close(g["boxes"], e["boxes"])
        assert torch.equal(g["labels"], e["labels"])
        assert len(g["boxes"]) <= MAX_DET


def test_the_gpu_path_of_nms_matches_the_reference_too(monkeypatch):
    # On a GPU the batch's NMS is one call with the groups shifted apart; run here on the CPU
    # in place of the per-group path, it must give the reference's detections.
    monkeypatch.setattr(postprocess_module, "_nms_per_group", _nms_with_offsets)
    logits, deltas, anchors = _inputs(seed=1)
    sizes = [(90, 100), (70, 60), (100, 100)]
    for g, e in zip(_run(logits, deltas, anchors, sizes, MIN_LOGIT), _reference(logits, deltas, anchors, sizes)):
        assert len(e["boxes"]) > 5
        torch.testing.assert_close(g["scores"], e["scores"])
        torch.testing.assert_close(g["boxes"], e["boxes"])
        assert torch.equal(g["labels"], e["labels"])


def test_one_nms_call_for_an_evaluation_batchs_worth_of_boxes(monkeypatch):
    # 8 images x 80 classes, 40,000 candidate boxes (160,000 numbers): past torchvision's limit for
    # its one-call path on a GPU (100,000), where it loops over the groups with a host sync each.
    import torchvision

    calls = []
    original = torchvision.ops.nms
    monkeypatch.setattr(postprocess_module, "nms", lambda *a: calls.append(1) or original(*a))
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(40_000, 2, generator=g) * 1300
    boxes = torch.cat([xy, xy + 8 + torch.rand(40_000, 2, generator=g) * 120], 1)
    scores = torch.rand(40_000, generator=g)
    groups = torch.randint(0, 8 * 80, (40_000,), generator=g)
    kept = _nms_with_offsets(boxes, scores, groups, 0.5)
    assert len(calls) == 1
    expected = batched_nms(boxes, scores, groups, 0.5)  # torchvision, one NMS per class on the CPU
    assert 5_000 < len(expected) < 40_000  # NMS suppressed some, kept many
    assert torch.equal(kept.sort().values, expected.sort().values)
    assert torch.all(scores[kept][1:] <= scores[kept][:-1])  # by decreasing score


def test_no_candidates_gives_empty_detections():
    logits, deltas, anchors = _inputs()
    out = _run(logits - 20, deltas, anchors, [(90, 100)] * 3, MIN_LOGIT)
    assert [len(d["boxes"]) for d in out] == [0, 0, 0]
    assert out[0]["boxes"].shape == (0, 4)


def test_cpu_group_nms_equals_torchvision_batched_nms():
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(400, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(400, 2, generator=g) * 20], 1)
    scores = torch.rand(400, generator=g)
    groups = torch.randint(0, 7, (400,), generator=g)
    assert torch.equal(_batched_nms(boxes, scores, groups, 0.5), batched_nms(boxes, scores, groups, 0.5))
    assert _batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_the_model_scores_sigmoid_and_softmax_heads_and_prefilters_only_sigmoids(tiny_config):
    from detector.config import load_config
    from detector.modeling import build_model

    sigmoid = build_model(load_config(tiny_config))
    assert torch.sigmoid(torch.tensor(sigmoid.min_logit(0.05))).item() == pytest.approx(0.05)
    assert sigmoid.min_logit(0.0) is None
    logits = torch.randn(2, 4, 5)
    torch.testing.assert_close(sigmoid.class_scores(logits[..., :4]), logits[..., :4].sigmoid())
    softmax = build_model(load_config(tiny_config, ["loss.cls.name=softmax_focal", "loss.cls.alpha=-1"]))
    assert softmax.min_logit(0.05) is None  # a softmax score depends on the whole row
    scores = softmax.class_scores(logits)
    assert scores.shape == (2, 4, 4)  # the background column is dropped
    torch.testing.assert_close(scores, logits.softmax(-1)[..., :4])


def _tied_inputs():
    """Scores that tie: across the classes of one anchor, across levels, and between
    overlapping boxes of one class that NMS must break by order."""
    logits, deltas, anchors = _inputs(seed=4, num_images=2)
    logits[:] = -20.0  # nothing scores but what is set here
    deltas[:] = 0.0  # boxes are the anchors
    anchors[3] = torch.tensor([10.0, 10.0, 40.0, 40.0])
    anchors[7] = torch.tensor([11.0, 11.0, 41.0, 41.0])  # IoU 0.88 with anchor 3: one of them goes
    anchors[130] = torch.tensor([50.0, 50.0, 90.0, 90.0])  # level 1
    anchors[190] = torch.tensor([50.0, 50.0, 90.0, 90.0])  # level 2, the same box
    for image in range(2):
        logits[image, 3, :] = 1.0  # every class of anchor 3 ties
        logits[image, 7, 2] = 1.0  # ties with anchor 3's class 2 and overlaps it
        logits[image, 130, 4] = 0.5  # the same score on two levels, same box and class
        logits[image, 190, 4] = 0.5
    return logits, deltas, anchors


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu path", "gpu path"])
def test_ties_are_broken_by_candidate_order(device_path, monkeypatch):
    # Among equal scores the candidate with the lower (image, anchor, class) index comes first and
    # is the one NMS keeps, in the fast path as in the reference (whose top-k is a stable sort).
    if device_path:
        monkeypatch.setattr(postprocess_module, "_nms_per_group", _nms_with_offsets)
    logits, deltas, anchors = _tied_inputs()
    sizes = [(100, 100)] * 2
    got, expected = _run(logits, deltas, anchors, sizes, MIN_LOGIT), _reference(logits, deltas, anchors, sizes)
    for g, e in zip(got, expected):
        # anchor 3's five classes in class order; anchor 7 suppressed by anchor 3 in class 2 (the
        # earlier of the two); the level-1 box of class 4 (the level-2 one, the same box, suppressed)
        assert e["labels"].tolist() == [0, 1, 2, 3, 4, 4]
        assert torch.equal(g["labels"], e["labels"]) and torch.equal(g["scores"], e["scores"])
        torch.testing.assert_close(g["boxes"], e["boxes"])
        assert not any(torch.equal(b, anchors[7]) for b in g["boxes"])


def test_the_top_k_comes_back_in_candidate_order():
    # topk returns its picks by score, ties in no particular order; NMS's stable sort then breaks
    # ties by input order, so the picks go back in (image, anchor, class) order.
    from detector.modeling.postprocess import _top_k_per_level

    g = torch.Generator().manual_seed(6)
    scores = 0.5 * torch.rand(100, generator=g)
    scores[::2] = 0.9  # 50 tied candidates, more than k
    rows, flat = torch.arange(100), torch.arange(0, 200, 2)  # one image, one level of 100 anchors, K = 2
    keep = _top_k_per_level(rows, flat, scores, 2, 1, 100, [100], 30)
    assert torch.equal(keep, keep.sort().values) and len(keep) == 30
    assert torch.all(scores[keep] == 0.9)
