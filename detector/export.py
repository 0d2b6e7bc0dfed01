"""``detector export``: the whole detector, image pixels to NMS-ed detections, as one ONNX graph.

The graph takes one image, ``[H, W, 3]`` uint8 RGB of any height and width (what an image
decoder gives), and returns ``boxes`` ``[D, 4]`` float32 xyxy in that image's pixels,
``scores`` ``[D]`` float32 and ``labels`` ``[D]`` int64 (0..K-1), sorted by decreasing score,
D <= ``model.inference.max_detections_per_image``. Inside: normalisation, resize to
``input.min_size``/``max_size``, padding to ``input.size_divisible``, backbone, FPN, head,
anchors, score threshold, top-k per level, decoding, class-aware NMS and the rescale to the
input's pixels: the eager model's own inference code, traced (its few tracing branches are
in ``modeling/preprocess.py`` and ``postprocess.py``), as torchvision's detection models do.
"""
import copy
import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .config import ExportConfig
from .errors import UserError, require
from .inference import ONNX_INPUT, ONNX_OUTPUTS, Detector, OnnxDetector
from .metadata import ONNX_KEY, ModelMetadata
from .modeling.retinanet import RetinaNet

DEFAULT_OPSET = ExportConfig.opset


class ExportError(UserError):
    """An export the user asked for that cannot be made; the message says which option."""


class ExportableRetinaNet(nn.Module):
    """``[H, W, 3]`` uint8 -> ``(boxes [D, 4], scores [D], labels [D])``: the model's own eval
    forward (preprocessing to NMS, :mod:`detector.modeling.preprocess` and ``postprocess``),
    traced with dynamic H and W."""

    def __init__(self, model: RetinaNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        detections = self.model([image.permute(2, 0, 1).float().div(255)])[0]
        return detections["boxes"], detections["scores"], detections["labels"]


def max_opset() -> int:
    """The newest opset the TorchScript-based exporter of this PyTorch writes."""
    from torch.onnx import _constants

    return getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)


def export_onnx(model: RetinaNet, output: str, opset: int = DEFAULT_OPSET,
                metadata: Optional[ModelMetadata] = None) -> str:
    """Write ``model`` as one ONNX graph to ``output``, with ``metadata`` (class names and COCO
    category ids, what ``predict`` and :class:`~detector.inference.OnnxDetector` label detections
    with) in its metadata properties;
    returns the path. The graph is traced on the CPU; a model on another device is copied
    there, and the caller's model stays where it is."""
    newest = max_opset()  # the oldest (11) is the config's rule (export.opset)
    if opset > newest:
        raise ExportError(f"--opset {opset} is newer than this PyTorch's exporter writes ({newest}); use "
                          f"--opset {ExportConfig.opset} or another one up to {newest}")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise OSError(f"cannot write {output}: {directory} is not a writable directory")
    onnx = require("onnx", "export", "detector export")
    if any(t.device.type != "cpu" for t in [*model.parameters(), *model.buffers()]):
        model = copy.deepcopy(model).cpu()
    was_training = model.training
    wrapper = ExportableRetinaNet(model).eval()
    example = torch.zeros(96, 128, 3, dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            # torchvision's NMS is scripted while tracing (a FutureWarning about torch.jit.script),
            # and the tracer warns about shape arithmetic, which here is meant to be traced.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # Advanced indexing exports as Gather, wrong only for negative indices; ours never are.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            # The TorchScript-based exporter (dynamo=False), as torchvision's detection models use:
            # it follows the data-dependent shapes of thresholding and NMS into ONNX ops. PyTorch
            # calls it legacy (a DeprecationWarning); tests/test_export.py shows when it breaks.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper, (example,), output, dynamo=False, opset_version=opset,
                input_names=[ONNX_INPUT], output_names=list(ONNX_OUTPUTS),
                dynamic_axes={ONNX_INPUT: {0: "height", 1: "width"}, **{n: {0: "detections"} for n in ONNX_OUTPUTS}},
            )
    finally:
        model.train(was_training)
    if metadata is not None:
        graph = onnx.load(output)
        entry = graph.metadata_props.add()
        entry.key, entry.value = ONNX_KEY, metadata.to_json()
        onnx.save(graph, output)
    return output


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
    names = [f"class_{i}" for i in range(model.num_classes)]
    onnx_detect, eager_detect = OnnxDetector(onnx_path), Detector(model, names, next(model.parameters()).device)
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
