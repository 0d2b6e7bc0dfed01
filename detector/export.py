"""``detector export``: the whole detector, image pixels to NMS-ed detections, as one ONNX graph.

The graph takes one image, ``[H, W, 3]`` uint8 RGB of any height and width (what an image
decoder gives), and returns ``boxes`` ``[D, 4]`` float32 xyxy in that image's pixels,
``scores`` ``[D]`` float32 and ``labels`` ``[D]`` int64 (0..K-1), sorted by decreasing score,
D <= ``model.inference.max_detections_per_image``. Inside: normalisation, resize to
``input.min_size``/``max_size``, padding to ``input.size_divisible``, backbone, FPN, head,
anchors, score threshold, top-k per level, decoding, class-aware NMS and the rescale to the
input's pixels: the eager model's inference, written with ops the ONNX tracer follows
(shapes as tensors, masks instead of host-side loops), as torchvision's detection models do.
"""
import os
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from .errors import UserError, require
from .modeling.retinanet import RetinaNet

MIN_OPSET = 11  # Resize with dynamic sizes and NonMaxSuppression need opset 11
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "labels")


class ExportError(UserError):
    """An export the user asked for that cannot be made; the message says which option."""


class ExportableRetinaNet(nn.Module):
    """``[H, W, 3]`` uint8 -> ``(boxes [D, 4], scores [D], labels [D])`` with the weights and
    inference settings of ``model``; traceable with dynamic H and W."""

    def __init__(self, model: RetinaNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        m, pre = self.model, self.model.preprocessor
        # Shapes as tensors, so that the graph computes them for every input size.
        shape = torch.onnx.operators.shape_as_tensor(image)
        height, width = shape[0], shape[1]
        x = image.permute(2, 0, 1).float().div(255)
        x = (x - pre.pixel_mean) / pre.pixel_std
        # The eager model resizes with scale_factor=s and recompute_scale_factor=True: the output
        # size is floor(side * s), s computed in double precision; so it is here.
        h64, w64 = height.to(torch.float64), width.to(torch.float64)
        scale = torch.minimum(pre.min_size / torch.minimum(h64, w64), pre.max_size / torch.maximum(h64, w64))
        out_h = torch.floor(h64 * scale).to(torch.int64)
        out_w = torch.floor(w64 * scale).to(torch.int64)
        x = F.interpolate(x[None], size=(out_h, out_w), mode="bilinear", align_corners=False)
        stride = pre.size_divisible
        pad_h = (out_h + stride - 1) // stride * stride - out_h
        pad_w = (out_w + stride - 1) // stride * stride - out_w
        x = F.pad(x, (0, pad_w, 0, pad_h))
        x = x.contiguous(memory_format=m.memory_format)

        features = m.fpn(m.backbone(x))
        logits, deltas = m.head(features)  # [1, R, C], [1, R, 4]
        gen = m.anchor_generator
        padded = (x.shape[-2], x.shape[-1])
        anchors = [gen.grid_anchors(padded, f.shape[-2:], level, x.device) for level, f in enumerate(features)]
        boxes, scores, labels = self._detections(logits[0], deltas[0], anchors, out_h, out_w)
        # To the input's pixels: float32 ratios, as the eager rescale_boxes computes them.
        ratio_w = width.to(torch.float32) / out_w.to(torch.float32)
        ratio_h = height.to(torch.float32) / out_h.to(torch.float32)
        boxes = boxes * torch.stack([ratio_w, ratio_h, ratio_w, ratio_h])
        return boxes, scores, labels

    def _detections(self, logits: Tensor, deltas: Tensor, anchors: List[Tensor], out_h: Tensor,
                    out_w: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Threshold, top-k per level, decode, clip to the resized image, NMS per class."""
        m = self.model
        all_boxes, all_scores, all_labels = [], [], []
        start = 0
        for level_anchors in anchors:
            count = level_anchors.shape[0]
            level_scores = m.cls_loss.scores(logits[start:start + count].float())  # [r, K]
            level_deltas = deltas[start:start + count]
            start = start + count
            num_classes = level_scores.shape[1]
            flat = level_scores.flatten()
            keep = torch.where(flat > m.score_thresh)[0]
            kept_scores = flat[keep]
            num_top = torch.clamp(torch.onnx.operators.shape_as_tensor(keep)[0], max=m.topk_candidates)
            kept_scores, order = kept_scores.topk(num_top)
            keep = keep[order]
            anchor_idx = torch.div(keep, num_classes, rounding_mode="floor")
            all_labels.append(keep % num_classes)
            all_scores.append(kept_scores)
            all_boxes.append(m.box_coder.decode(level_deltas[anchor_idx].float(), level_anchors[anchor_idx]))
        boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
        limits = torch.stack([out_w, out_h, out_w, out_h]).to(boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), limits)
        kept = batched_nms(boxes, scores, labels, m.nms_thresh)[: m.max_detections_per_image]
        return boxes[kept], scores[kept], labels[kept]


def export_onnx(model: RetinaNet, output: str, opset: int = DEFAULT_OPSET) -> str:
    """Write ``model`` as one ONNX graph to ``output``; returns the path."""
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is not supported: the graph needs opset {MIN_OPSET} or newer "
                          "(Resize with computed sizes, NonMaxSuppression)")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise OSError(f"cannot write {output}: {directory} is not a writable directory")
    require("onnx", "export", "detector export")
    was_training = model.training
    wrapper = ExportableRetinaNet(model).cpu().eval()
    example = torch.zeros(96, 128, 3, dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            # torchvision's NMS is scripted while tracing (a FutureWarning about torch.jit.script),
            # and the tracer warns about shape arithmetic, which here is meant to be traced.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The TorchScript-based exporter (dynamo=False), as torchvision's detection models use:
            # it follows the data-dependent shapes of thresholding and NMS into ONNX ops. PyTorch
            # calls it legacy (a DeprecationWarning); tests/test_export.py shows when it breaks.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper, (example,), output, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {0: "height", 1: "width"}, **{n: {0: "detections"} for n in OUTPUT_NAMES}},
            )
    finally:
        model.train(was_training)
    return output


class OnnxDetector:
    """An exported graph run by ONNX Runtime on the CPU: ``detector(image)`` with ``image``
    ``[H, W, 3]`` uint8 RGB returns ``{"boxes", "scores", "labels"}`` as numpy arrays."""

    def __init__(self, path: str, threads: int = 0) -> None:
        ort = require("onnxruntime", "export", "running an exported .onnx graph")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such ONNX file: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (all cores)
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own Fail / InvalidGraph / InvalidProtobuf types
            raise UserError(f"{path} is not an ONNX graph ONNX Runtime can load: {e}") from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
            raise UserError(f"{path} was not written by 'detector export': inputs {inputs}, outputs {outputs} "
                            f"(expected [{INPUT_NAME!r}] and {list(OUTPUT_NAMES)})")

    def __call__(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        boxes, scores, labels = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(image, dtype=np.uint8)})
        return {"boxes": boxes, "scores": scores, "labels": labels}


def torch_detector(model: RetinaNet, device: torch.device):
    """The eager counterpart of :class:`OnnxDetector`: the same call, the same outputs."""
    model.eval()

    @torch.no_grad()
    def detect(image: np.ndarray) -> Dict[str, np.ndarray]:
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        det = model([tensor.to(device)])[0]
        return {k: v.cpu().numpy() for k, v in det.items()}

    return detect


def compare_detections(got: Dict[str, np.ndarray], expected: Dict[str, np.ndarray], box_atol: float = 1e-3,
                       score_rtol: float = 1e-4) -> Tuple[List[str], float, float]:
    """Whether two detection sets are the same, in any order among equal scores: every expected
    detection has its own counterpart with the same label, each box coordinate within
    ``box_atol`` pixels and the score within ``score_rtol`` relative.

    Returns the problems found (empty when the sets agree), the largest box difference and
    the largest relative score difference over the matched pairs.
    """
    if len(got["boxes"]) != len(expected["boxes"]):
        return [f"{len(got['boxes'])} detections, expected {len(expected['boxes'])}"], float("nan"), float("nan")
    free = np.ones(len(got["boxes"]), dtype=bool)
    problems, box_diff, score_diff = [], 0.0, 0.0
    for i, (box, score, label) in enumerate(zip(expected["boxes"], expected["scores"], expected["labels"])):
        box_err = np.abs(got["boxes"] - box).max(axis=1) if len(got["boxes"]) else np.zeros(0)
        score_err = np.abs(got["scores"] - score) / max(abs(float(score)), 1e-12)
        ok = free & (got["labels"] == label) & (box_err <= box_atol) & (score_err <= score_rtol)
        if not ok.any():
            problems.append(f"detection {i} (label {int(label)}, score {float(score):.6f}, box "
                            f"{np.round(box, 3).tolist()}) has no counterpart")
            continue
        j = int(np.flatnonzero(ok)[np.argmin(box_err[ok])])
        free[j] = False
        box_diff, score_diff = max(box_diff, float(box_err[j])), max(score_diff, float(score_err[j]))
    return problems, box_diff, score_diff


def check_against_eager(model: RetinaNet, onnx_path: str, images: Sequence[np.ndarray], box_atol: float = 1e-3,
                        score_rtol: float = 1e-4) -> Dict[str, object]:
    """Run ``images`` through the eager model and the exported graph and compare.

    ``box_atol`` is in pixels of the network's input (after the resize): an image scaled by s
    to reach ``input.min_size`` is allowed ``box_atol / s`` pixels, the same float32 rounding
    seen at the image's own scale.
    """
    onnx_detect, eager_detect = OnnxDetector(onnx_path), torch_detector(model, next(model.parameters()).device)
    pre = model.preprocessor
    report = {"images": len(images), "detections": 0, "max_box_diff_px": 0.0, "max_score_rel_diff": 0.0,
              "problems": []}
    for index, image in enumerate(images):
        h, w = image.shape[:2]
        scale = min(pre.min_size / min(h, w), pre.max_size / max(h, w))
        expected, got = eager_detect(image), onnx_detect(image)
        problems, box_diff, score_diff = compare_detections(got, expected, box_atol / scale, score_rtol)
        report["problems"] += [f"image {index} ({h}x{w}): {p}" for p in problems]
        report["detections"] += len(expected["boxes"])
        if not problems:
            report["max_box_diff_px"] = max(report["max_box_diff_px"], box_diff)
            report["max_score_rel_diff"] = max(report["max_score_rel_diff"], score_diff)
    return report


def sample_images(cfg, count: int) -> Tuple[List[np.ndarray], str]:
    """Images to check an export on: up to ``count`` val images, plus the first of them
    resized to two other aspect ratios (a wide and a tall one); random images when the
    config has no readable val split. Returns the images and a description of them."""
    from PIL import Image

    from .data import build_dataset

    if cfg.data.val.ann_file and os.path.isfile(cfg.data.val.ann_file):
        dataset = build_dataset(cfg, "val", training=False)
        images = [dataset.load_image(i) for i in range(min(count, len(dataset)))]
        h, w = images[0].shape[:2]
        for size in ((max(16, h // 2), w * 2), (h * 2, max(16, int(w * 0.7)))):  # (H, W)
            images.append(np.asarray(Image.fromarray(images[0]).resize(size[::-1], Image.BILINEAR)))
        return images, f"images (val {len(images) - 2} + 2 resized to other aspect ratios)"
    rng = np.random.default_rng(0)
    sizes = [(cfg.input.min_size, cfg.input.min_size), (200, 333), (480, 150), (97, 131)][:max(count, 1)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes], "random images"
