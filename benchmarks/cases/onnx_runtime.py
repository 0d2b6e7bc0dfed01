"""The exported graph in ONNX Runtime against the eager model it came from (CPU)."""
import os
import tempfile
from typing import List

import torch

from benchmarks.cases.inference import set_candidate_share
from benchmarks.common import CheckFailed, alternate, build_pair, random_images, row


def run(args) -> List[dict]:
    """The exported graph in ONNX Runtime against the eager model it came from, on the CPU:
    both from a uint8 image to NMS-ed detections in its pixels."""
    from detector.export import compare_detections, export_onnx
    from detector.inference import Detector, OnnxDetector

    height, width = 800, 1333
    tv, ours = build_pair(height, width)
    ours.eval()
    image_t = random_images(1, height, width)
    share = set_candidate_share(tv, ours, image_t, 0.03)
    image = (image_t[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(ours, os.path.join(tmp, "r50.onnx"))
        onnx_detect = OnnxDetector(path, threads=args.threads)
        eager_detect = Detector(ours, [f"class_{i}" for i in range(ours.num_classes)], "cpu")
        with torch.inference_mode():
            expected, got = eager_detect(image), onnx_detect(image)
            problems, box_diff, score_diff = compare_detections(got, expected, box_atol=1e-3 * width / 1333)
            if problems:
                raise CheckFailed("ONNX Runtime and eager differ, not timing it:\n" + "\n".join(problems[:5]))
            t = alternate({"ort": lambda: onnx_detect(image), "eager": lambda: eager_detect(image)}, args.repeats)
    check = (f"same {len(expected['boxes'])} detections (boxes within {box_diff:.1e} px, scores {score_diff:.1e} "
             "relative)")
    setting = (f"R50-FPN {height}x{width}, batch 1, uint8 image to detections, {100 * share:.1f}% of pairs over "
               f"0.05, ONNX Runtime {_ort_version()} CPU, {args.threads} threads")
    return [row("ONNX Runtime inference", setting, t["ort"], t["eager"], None, reference="eager PyTorch (ours)",
                check=check)]


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
