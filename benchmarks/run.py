"""Side-by-side benchmarks against torchvision's RetinaNet: ``make bench`` or
``python benchmarks/run.py [--json OUT.json] [--cases loss_path,postprocess,...]``.

Every case first checks that ours and the reference compute the same numbers, then times
both in this process, on the same inputs and threads, interleaved, after a warm-up, and
reports the medians and the ratio reference time / our time (above 1: we are faster).
The memory row reports our peak / torchvision's (below 1: we use less).
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    TORCHVISION_PRESET,
    alternate,
    build_pair,
    peak_memory,
    random_images,
    random_targets,
)
from detector.config import load_config  # noqa: E402
from detector.modeling import build_model  # noqa: E402
from detector.modeling.postprocess import postprocess_detections  # noqa: E402

CASES: Dict[str, Callable[[argparse.Namespace], List[dict]]] = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def _row(name: str, setting: str, ours_s: float, ref_s: float, target: Optional[float], reference="torchvision",
         check: str = "") -> dict:
    """A timing row; ``target`` None: measured, with no target set."""
    ratio = ref_s / ours_s
    return {"case": name, "setting": setting, "reference": reference, "ours_s": ours_s, "reference_s": ref_s,
            "ratio": ratio, "target": "-" if target is None else f">= {target}x",
            "met": None if target is None else ratio >= target, "check": check}


def _assert_close(name: str, got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> str:
    try:
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)
    except AssertionError as e:
        raise SystemExit(f"{name}: ours and torchvision differ, not timing it:\n{e}")
    return f"{name} equal (rtol {rtol:g}, atol {atol:g})"


# ---------------------------------------------------------------------------------------
# Loss path: matching, classification loss and box loss, forward and backward, on fixed
# head outputs.
# ---------------------------------------------------------------------------------------

def _head_outputs(tv, ours, num_images: int, size: int):
    """Fixed head outputs for a batch: logits around the prior (mostly easy negatives, as
    in training), small box deltas, and the anchors of both models (checked equal)."""
    from torchvision.models.detection.image_list import ImageList

    features = [torch.zeros(num_images, 256, size // s, size // s) for s in (8, 16, 32, 64, 128)]
    anchors = ours.anchor_generator((size, size), [tuple(f.shape[-2:]) for f in features], torch.device("cpu"))
    image_list = ImageList(torch.zeros(num_images, 3, size, size), [(size, size)] * num_images)
    tv_anchors = tv.anchor_generator(image_list, features)
    _assert_close("anchors", tv_anchors[0], anchors, 0, 0)
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(num_images, anchors.shape[0], 91, generator=g) - 4.6
    deltas = 0.1 * torch.randn(num_images, anchors.shape[0], 4, generator=g)
    return logits, deltas, anchors, tv_anchors


def _ours_loss(ours, logits, deltas, anchors, targets):
    losses = ours.losses(logits, deltas, anchors, targets)
    return losses["loss_cls"], losses["loss_box"]


def _tv_loss(tv, logits, deltas, tv_anchors, targets):
    losses = tv.compute_loss(targets, {"cls_logits": logits, "bbox_regression": deltas}, tv_anchors)
    return losses["classification"], losses["bbox_regression"]


@case
def loss_path(args) -> List[dict]:
    n, size = 4, 640
    tv, ours = build_pair(size, size)
    logits, deltas, anchors, tv_anchors = _head_outputs(tv, ours, n, size)
    targets = random_targets(n, size, size, boxes_per_image=8)

    # Same numbers, image by image (torchvision divides each image's loss by its own
    # foreground count and averages; ours divides the batch's sum by the batch's count,
    # so the two agree exactly for one image), with the gradients of the first image.
    checks = []
    for i in range(n):
        x1, d1 = logits[i:i + 1].clone().requires_grad_(), deltas[i:i + 1].clone().requires_grad_()
        x2, d2 = logits[i:i + 1].clone().requires_grad_(), deltas[i:i + 1].clone().requires_grad_()
        cls1, box1 = _ours_loss(ours, x1, d1, anchors, targets[i:i + 1])
        cls2, box2 = _tv_loss(tv, x2, d2, tv_anchors[i:i + 1], targets[i:i + 1])
        checks.append(_assert_close(f"image {i} losses", torch.stack([cls1, box1]),
                                    torch.stack([cls2, box2]), 1e-4, 0))
        if i == 0:
            (cls1 + box1).backward()
            (cls2 + box2).backward()
            _assert_close("logit gradients", x1.grad, x2.grad, 1e-4, 1e-9)
            _assert_close("delta gradients", d1.grad, d2.grad, 1e-4, 1e-9)

    x1, d1 = logits.clone().requires_grad_(), deltas.clone().requires_grad_()
    x2, d2 = logits.clone().requires_grad_(), deltas.clone().requires_grad_()

    def run_ours():
        x1.grad = d1.grad = None
        sum(_ours_loss(ours, x1, d1, anchors, targets)).backward()

    def run_tv():
        x2.grad = d2.grad = None
        sum(_tv_loss(tv, x2, d2, tv_anchors, targets)).backward()

    t = alternate({"ours": run_ours, "tv": run_tv}, args.repeats * 3)
    setting = f"R50-FPN {size}x{size}, batch {n}, 91 classes, 8 boxes/img, fwd+bwd"
    return [_row("loss path", setting, t["ours"], t["tv"], 4.0,
                 check=f"per-image losses and gradients equal (rtol 1e-4), {len(checks)} images")]


# ---------------------------------------------------------------------------------------
# Post-processing: scores, decode, threshold, top-k per level, NMS, for a batch.
# ---------------------------------------------------------------------------------------

def _canonical(det: dict) -> dict:
    """Detections ordered by score, then label and box: equal scores may come in any order."""
    b = det["boxes"]
    order = np.lexsort((b[:, 1].numpy(), b[:, 0].numpy(), det["labels"].numpy(), -det["scores"].numpy()))
    order = torch.from_numpy(order)
    return {k: v[order] for k, v in det.items()}


def _same_detections(expected: List[dict], got: List[dict], near_ties: bool = False) -> str:
    """Detections equal, in any order among equal scores. With ``near_ties`` (random weights
    that put almost every pair over the threshold, so that thousands of candidates score
    within float rounding of each other), float rounding may pick one near-tied candidate
    for another: then the score lists must still agree, and the share of identical boxes
    is reported."""
    if near_ties:
        try:
            return _same_detections(expected, got)
        except SystemExit:
            pass
        same, total = 0, 0
        for i, (e, o) in enumerate(zip(expected, got)):
            e, o = _canonical(e), _canonical(o)
            if len(e["boxes"]) != len(o["boxes"]):
                raise SystemExit(f"image {i}: torchvision keeps {len(e['boxes'])} detections, ours {len(o['boxes'])}")
            _assert_close(f"image {i} scores", o["scores"], e["scores"], 0, 1e-5)
            found = (torch.cdist(o["boxes"], e["boxes"], p=float("inf")) <= 1e-3).any(dim=1)
            same, total = same + int(found.sum()), total + len(found)
        if same < 0.95 * total:
            raise SystemExit(f"only {same} of {total} boxes are torchvision's")
        return (f"same scores; {same} of {total} boxes identical, the others near-tied candidates that float "
                "rounding ordered differently")
    for i, (e, o) in enumerate(zip(expected, got)):
        e, o = _canonical(e), _canonical(o)
        if len(e["boxes"]) != len(o["boxes"]):
            raise SystemExit(f"image {i}: torchvision keeps {len(e['boxes'])} detections, ours {len(o['boxes'])}")
        _assert_close(f"image {i} boxes", o["boxes"], e["boxes"], 1e-5, 1e-3)
        _assert_close(f"image {i} scores", o["scores"], e["scores"], 0, 1e-5)
        if not torch.equal(o["labels"], e["labels"]):
            raise SystemExit(f"image {i}: labels differ")
    return f"same detections ({sum(len(e['boxes']) for e in expected)} in {len(expected)} images)"


@case
def postprocess(args) -> List[dict]:
    n, size = 4, 640
    tv, ours = build_pair(size, size)
    tv.eval()
    ours.eval()
    logits, deltas, anchors, tv_anchors = _head_outputs(tv, ours, n, size)
    logits -= 1.4  # about 8,000 candidates over the 0.05 threshold per image, most of them background
    shapes = [(size // s, size // s) for s in (8, 16, 32, 64, 128)]
    level_sizes = ours.anchor_generator.level_sizes(shapes)
    image_sizes = [(size, size)] * n

    def run_ours():
        return postprocess_detections(
            logits, ours.cls_loss.scores, deltas, anchors, level_sizes, image_sizes, ours.box_coder,
            ours.score_thresh, ours.topk_candidates, ours.nms_thresh, ours.max_detections_per_image,
            ours.cls_loss.min_logit(ours.score_thresh))

    def run_tv():  # what torchvision's RetinaNet.forward does between the head and the resize back
        outputs = {"cls_logits": logits, "bbox_regression": deltas}
        split = {k: list(v.split(level_sizes, dim=1)) for k, v in outputs.items()}
        split_anchors = [list(a.split(level_sizes)) for a in tv_anchors]
        return tv.postprocess_detections(split, split_anchors, image_sizes)

    with torch.inference_mode():
        check = _same_detections(run_tv(), run_ours())
        t = alternate({"ours": run_ours, "tv": run_tv}, args.repeats * 3)
    setting = f"R50-FPN {size}x{size}, batch {n}, 91 classes, eval"
    return [_row("post-processing", setting, t["ours"], t["tv"], 2.0, check=check)]


# ---------------------------------------------------------------------------------------
# Full training step and its peak memory; end-to-end inference.
# ---------------------------------------------------------------------------------------

# Ours runs with its CPU-friendly switches; torchvision has no such switches.
OURS_OVERRIDES = ["model.channels_last=true"]


def _gradient_check(tv, ours) -> str:
    """Largest relative difference ||ours - tv|| / ||tv|| between the two models' gradients,
    parameter by parameter (matched through the converter's key map). Float32 is the point
    here (the timed step is float32), so the check stays float32: rounding through 50 layers
    of a random network differs between two convolution algorithms (NCHW and NHWC, folded
    and separate BatchNorm) by about 1e-3 on an AVX-512 CPU and 1.2e-3 to 1.5e-3 on an AVX2
    one (docs/results/benchmark_cpu.md); 5e-3 leaves a margin of three on either."""
    from detector.modeling.convert import convert_torchvision_retinanet

    tv_grads = {k: p.grad for k, p in tv.named_parameters() if p.grad is not None}
    ours_grads = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    mapped = convert_torchvision_retinanet(tv_grads)
    mapped.pop("fg_normalizer")
    if mapped.keys() != ours_grads.keys():
        raise SystemExit("the two models train different parameters")
    errors = {k: float((ours_grads[k] - g).norm() / g.norm().clamp(min=1e-12)) for k, g in mapped.items()}
    worst = max(errors.values())
    if worst > 5e-3:
        raise SystemExit(f"gradients differ: largest relative difference {worst:.2e}")
    return f"{len(mapped)} parameter gradients within {worst:.1e} (relative)"


def _train_pair(size: int, n: int, tv=None, ours=None):
    if tv is None:
        tv, ours = build_pair(size, size, OURS_OVERRIDES)
    images, targets = random_images(n, size, size), random_targets(n, size, size)
    optimizers = {name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9,
                                        weight_decay=1e-4) for name, m in (("ours", ours), ("tv", tv))}

    def step(name, model, images, targets):
        optimizers[name].zero_grad(set_to_none=True)
        losses = model(images, [dict(t) for t in targets])
        loss = sum(losses.values())
        loss.backward()
        return losses

    # Same numbers first: one image (see the loss path for why), losses and gradients.
    got = step("ours", ours, images[:1], targets[:1])
    expected = step("tv", tv, images[:1], targets[:1])
    check = _assert_close("losses", torch.stack([got["loss_cls"], got["loss_box"]]),
                          torch.stack([expected["classification"], expected["bbox_regression"]]), 1e-4, 0)
    check += "; " + _gradient_check(tv, ours)

    def run(name, model):
        def fn():
            step(name, model, images, targets)
            optimizers[name].step()
        return fn

    return {"ours": run("ours", ours), "tv": run("tv", tv)}, check


@case
def train_step(args) -> List[dict]:
    n, size = 2, 512
    fns, check = _train_pair(size, n)
    t = alternate(fns, args.repeats)
    setting = f"R50-FPN {size}x{size}, batch {n}, fwd+bwd+SGD, ours channels_last"
    row = _row("training step", setting, t["ours"], t["tv"], 1.2, check=check)
    peak = {name: peak_memory(fn, torch.device("cpu")) for name, fn in fns.items()}
    memory = {"case": "peak memory, training step", "setting": setting, "reference": "torchvision",
              "unit": "bytes", "ours": peak["ours"], "reference_value": peak["tv"],
              "ratio": peak["ours"] / peak["tv"], "target": "<= 1.0x", "met": peak["ours"] <= peak["tv"],
              "check": "tensor memory allocated during the step, above what was live before"}
    args.train_images_per_s = n / t["ours"]
    return [row, memory]


@case
def train_step_defaults(args) -> List[dict]:
    """The training step again with the preset's defaults (no channels_last): what a user who
    turns no switch on gets."""
    n, size = 2, 512
    tv, ours = build_pair(size, size)
    fns, check = _train_pair(size, n, tv, ours)
    t = alternate(fns, args.repeats)
    setting = f"R50-FPN {size}x{size}, batch {n}, fwd+bwd+SGD, preset defaults (no channels_last)"
    return [_row("training step", setting, t["ours"], t["tv"], 1.2, check=check)]


def _set_candidate_share(tv, ours, images, share: float) -> float:
    """Make the classifiers of both models score like a trained one: spread logits (random
    initial weights give nearly equal scores everywhere, so that float rounding alone decides
    among thousands of near-ties) with biases set so that ``share`` of the (anchor, class)
    pairs of ``images`` score over 0.05; returns the share measured."""
    threshold = math.log(0.05 / 0.95)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        ours.head.cls_score.weight.copy_(torch.randn(ours.head.cls_score.weight.shape, generator=g))
        ours.head.cls_score.bias.zero_()
        batch, _, _ = ours.preprocessor(images)
        logits, _ = ours.head(ours.fpn(ours.backbone(batch)))
        # logits linear in the weight: scale it for a logit spread of 1.5 (a top score near 0.9)
        spread = 1.5 / logits.flatten()[:: max(1, logits.numel() // 4_000_000)].float().std().item()
        ours.head.cls_score.weight.mul_(spread)
        tv.head.classification_head.cls_logits.weight.copy_(ours.head.cls_score.weight)
        flat = logits.flatten() * spread
        cut = flat[:: max(1, flat.numel() // 4_000_000)].float().quantile(1.0 - share).item()
        bias = threshold - cut
        ours.head.cls_score.bias.fill_(bias)
        tv.head.classification_head.cls_logits.bias.fill_(bias)
        return float((flat + bias > threshold).float().mean())


def _inference_row(args, share: Optional[float], overrides: Sequence[str], switches: str) -> dict:
    """The check runs ours with the preset's defaults, the convolution kernels torchvision runs:
    with switches such as channels_last the NHWC kernels round differently, which reorders
    near-equal scores (with random weights, most of them) and so which boxes survive top-k
    and NMS. The timed model is the same weights with the switches on."""
    height, width = 800, 1333
    tv, ours = build_pair(height, width)
    timed = build_model(load_config(TORCHVISION_PRESET, [f"input.min_size={height}", f"input.max_size={width}",
                                                         *overrides])) if overrides else ours
    tv.eval()
    ours.eval()
    images = random_images(1, height, width)
    if share is None:  # almost every (anchor, class) a candidate: post-processing's worst case
        with torch.no_grad():
            tv.head.classification_head.cls_logits.bias.fill_(-2.0)
            ours.head.cls_score.bias.fill_(-2.0)
        measured = "98%"
    else:
        measured = f"{100 * _set_candidate_share(tv, ours, images, share):.1f}%"
    if timed is not ours:
        timed.load_state_dict(ours.state_dict())
        timed.eval()
    with torch.inference_mode():
        check = _same_detections(tv(images), ours(images), near_ties=True)
        if timed is not ours:
            check += f" (checked with the preset defaults; timed with {switches})"
        t = alternate({"ours": lambda: timed(images), "tv": lambda: tv(images)}, args.repeats)
    setting = (f"R50-FPN {height}x{width}, batch 1, end to end, {measured} of 18M (anchor, class) pairs over 0.05, "
               f"{switches}")
    return _row("inference", setting, t["ours"], t["tv"], 1.2, check=check)


@case
def inference(args) -> List[dict]:
    """Three settings: the worst case for post-processing with our switch on (flatters us),
    and a trained model's few percent of candidates with the switch on and with the preset's
    defaults (the ordinary setting)."""
    return [_inference_row(args, None, OURS_OVERRIDES, "ours channels_last"),
            _inference_row(args, 0.03, OURS_OVERRIDES, "ours channels_last"),
            _inference_row(args, 0.03, (), "preset defaults")]


@case
def onnx_runtime(args) -> List[dict]:
    """The exported graph in ONNX Runtime against the eager model it came from, on the CPU:
    both from a uint8 image to NMS-ed detections in its pixels."""
    from detector.export import OnnxDetector, compare_detections, export_onnx, torch_detector

    height, width = 800, 1333
    tv, ours = build_pair(height, width)
    ours.eval()
    image_t = random_images(1, height, width)
    share = _set_candidate_share(tv, ours, image_t, 0.03)
    image = (image_t[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(ours, os.path.join(tmp, "r50.onnx"))
        onnx_detect, eager_detect = OnnxDetector(path, threads=args.threads), torch_detector(ours, torch.device("cpu"))
        with torch.inference_mode():
            expected, got = eager_detect(image), onnx_detect(image)
            problems, box_diff, score_diff = compare_detections(got, expected, box_atol=1e-3 * width / 1333)
            if problems:
                raise SystemExit("ONNX Runtime and eager differ, not timing it:\n" + "\n".join(problems[:5]))
            t = alternate({"ort": lambda: onnx_detect(image), "eager": lambda: eager_detect(image)}, args.repeats)
    check = (f"same {len(expected['boxes'])} detections (boxes within {box_diff:.1e} px, scores {score_diff:.1e} "
             "relative)")
    setting = (f"R50-FPN {height}x{width}, batch 1, uint8 image to detections, {100 * share:.1f}% of pairs over "
               f"0.05, ONNX Runtime {_ort_version()} CPU, {args.threads} threads")
    return [_row("ONNX Runtime inference", setting, t["ort"], t["eager"], None, reference="eager PyTorch (ours)",
                 check=check)]


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# ---------------------------------------------------------------------------------------
# COCO evaluation: our evaluator with the faster-coco-eval backend against pycocotools.
# ---------------------------------------------------------------------------------------

def synthetic_coco(num_images: int, dets_per_image: int = 100, num_classes: int = 80, seed: int = 0):
    """A COCO ground-truth dict and results list: 1..15 objects per image of all sizes,
    detections that are noisy copies of them (some with the wrong class) plus clutter."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = 640, 480
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        count = int(rng.integers(1, 16))
        wh = np.exp(rng.uniform(np.log(8), np.log(400), (count, 2)))
        xy = rng.uniform(0, 1, (count, 2)) * (np.array([width, height]) - wh).clip(min=1)
        labels = rng.integers(1, num_classes + 1, count)
        for (x, y), (w, h), c in zip(xy, wh, labels):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c),
                                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                                "iscrowd": int(rng.random() < 0.02)})
        source = rng.integers(0, count, dets_per_image)
        noise = rng.normal(0, 0.1, (dets_per_image, 4)) * np.repeat(wh[source], 2, axis=1)
        boxes = np.concatenate([xy[source], wh[source]], 1) + noise
        boxes[:, 2:] = boxes[:, 2:].clip(min=1)
        clutter = rng.random(dets_per_image) < 0.3
        wrong_class = rng.integers(1, num_classes + 1, dets_per_image)
        cats = np.where(rng.random(dets_per_image) < 0.8, labels[source], wrong_class)
        scores = rng.random(dets_per_image) * np.where(clutter, 0.5, 1.0)
        for box, c, score in zip(boxes, cats, scores):
            results.append({"image_id": image_id, "category_id": int(c), "score": round(float(score), 5),
                            "bbox": [round(float(v), 2) for v in box]})
    categories = [{"id": i, "name": f"class_{i}"} for i in range(1, num_classes + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


@case
def coco_eval(args) -> List[dict]:
    import time

    from detector.evaluation.coco_eval import STAT_NAMES, evaluate_coco

    num_images = args.coco_images
    gt, results = synthetic_coco(num_images)
    # The same evaluator on every backend, so only the backend differs (the error analysis,
    # the same hotcoco pass for all, is timed on its own); that its pycocotools backend equals
    # a direct COCOeval call is checked by tests/evaluation/test_coco_eval.py. pycocotools
    # takes over a minute here: one timed call per backend instead of a median.
    stats, seconds = {}, {}
    for backend in ("hotcoco", "faster_coco_eval", "pycocotools"):
        start = time.perf_counter()
        stats[backend] = evaluate_coco(gt, results, backend=backend, analysis=False)
        seconds[backend] = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_coco(gt, results, backend="hotcoco")
    analysis_s = time.perf_counter() - start - seconds["hotcoco"]
    reference = [stats["pycocotools"][name] for name in STAT_NAMES]
    rows = []
    for backend, target in (("faster_coco_eval", 3.0), ("hotcoco", None)):
        ours_stats = [stats[backend][name] for name in STAT_NAMES]
        if ours_stats != reference:
            raise SystemExit(f"COCO stats differ:\n {backend} {ours_stats}\n pycocotools {reference}")
        check = f"all 12 stats identical (AP {100 * stats[backend]['AP']:.2f})"
        if backend == "hotcoco":
            check += f"; the TIDE + calibration analysis every evaluation adds: {analysis_s:.1f} s"
        setting = f"{num_images} synthetic images x 100 detections, 80 classes, one call each, backend {backend}"
        rows.append(_row("COCO evaluation", setting, seconds[backend], seconds["pycocotools"], target,
                         reference="pycocotools", check=check))
    return rows


# ---------------------------------------------------------------------------------------
# Data loading: is the train loader faster than the step it feeds?
# ---------------------------------------------------------------------------------------

@case
def train_loader(args) -> List[dict]:
    import time

    from detector.config import load_config
    from detector.data import build_dataset, build_train_loader, make_synthetic_dataset
    from detector.modeling import build_model

    batches = 12
    with tempfile.TemporaryDirectory() as root:
        paths = make_synthetic_dataset(root, num_train=16 * (batches + 2), num_val=1, seed=0)
        cfg = load_config("configs/demo/shapes_focal.yaml", [
            f"data.train.ann_file={paths['train']}", f"data.train.img_dir={os.path.join(root, 'train')}",
            "data.num_workers=2"])
        dataset = build_dataset(cfg, "train", training=True)
        loader = iter(build_train_loader(cfg, dataset, cfg.solver.ims_per_batch))
        images, targets = next(loader)  # workers started
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        loader_rate = batches * cfg.solver.ims_per_batch / (time.perf_counter() - start)
        del loader

    # The step that loader feeds: the demo's model, batch and optimizer settings, on the CPU.
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        sum(model(images, [dict(t) for t in targets]).values()).backward()
        optimizer.step()

    step_s = alternate({"step": step}, args.repeats)["step"]
    step_rate = len(images) / step_s
    return [{"case": "train loader", "setting": "demo config (shapes, 128 px, batch 16): loader with 2 workers "
             "vs the training step it feeds", "reference": "demo training step", "unit": "images/s",
             "ours": loader_rate, "reference_value": step_rate, "ratio": loader_rate / step_rate,
             "target": "> 1x (not the bottleneck)", "met": loader_rate > step_rate,
             "check": f"{batches} batches of {cfg.solver.ims_per_batch} after the first" + (
                 f"; the R50-FPN 512 px training step above runs {args.train_images_per_s:.2f} img/s"
                 if hasattr(args, "train_images_per_s") else "")}]


def _shown_ratio(ratio: float, target: str) -> str:
    """Two decimals, rounded towards missing the target, so that a printed ratio never
    looks met when it is not (1.1999 against >= 1.2 prints 1.19)."""
    hundredths = ratio * 100
    return f"{(math.ceil(hundredths) if target.startswith('<') else math.floor(hundredths)) / 100:.2f}"


def _format_table(rows: List[dict]) -> str:
    lines = ["| case | setting | reference | ours | reference | ratio | target | met |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        if r.get("unit") == "bytes":
            ours, ref = f"{r['ours'] / 2**20:.0f} MiB", f"{r['reference_value'] / 2**20:.0f} MiB"
        elif r.get("unit") == "images/s":
            ours, ref = f"{r['ours']:.1f} img/s", f"{r['reference_value']:.1f} img/s"
        else:
            ours, ref = f"{1000 * r['ours_s']:.1f} ms", f"{1000 * r['reference_s']:.1f} ms"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['case']} | {r['setting']} | {r['reference']} | {ours} | {ref} | "
                     f"{_shown_ratio(r['ratio'], r['target'])}x | {r['target']} | {met} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side for the slow cases")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--coco-images", type=int, default=5000, help="images in the COCO evaluation case")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(CASES)}")
    rows: List[dict] = []
    for name in names:
        print(f"[{name}] ...", flush=True)
        for row in CASES[name](args):
            rows.append(row)
            print(_format_table([row]).splitlines()[-1], flush=True)
    print()
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"float32, medians of interleaved calls")
    print(_format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "rows": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
