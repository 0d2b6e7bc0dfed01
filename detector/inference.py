"""Running a trained detector on images: the Python API (:class:`Detector`), the same call on
an exported graph in ONNX Runtime (:class:`OnnxDetector`), and :func:`predict`, which writes
what either finds for a list of files (``detector predict``).

    from detector import Detector
    det = Detector.from_checkpoint("output/demo/shapes_focal/model_final.pth")
    result = det("photo.jpg")   # or a numpy HWC uint8 array, a PIL image, or a list of them
    result["boxes"], result["scores"], result["labels"], result["class_names"]
"""
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from .comm import resolve_device
from .config import Config, ConfigError, config_from_dict, load_config
from .data.coco import class_names_from_annotations
from .data.image import DEFAULT_MAX_PIXELS, read_image
from .errors import UserError, require
from .serialization import safe_torch_load

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ONNX_INPUT = "image"
ONNX_OUTPUTS = ("boxes", "scores", "labels")
ONNX_CLASS_NAMES = "class_names"  # the metadata key of an exported graph

ImageLike = Union[np.ndarray, "PIL.Image.Image", str, os.PathLike]  # noqa: F821


def to_array(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from a numpy HWC uint8 array, a PIL image or a file path."""
    if isinstance(image, (str, os.PathLike)):
        try:
            return read_image(os.fspath(image), max_pixels)
        except (OSError, SyntaxError) as e:
            raise UserError(f"cannot read image {image}: {e}") from None
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(f"a numpy image must be [H, W, 3] uint8 RGB, got {image.shape} {image.dtype}")
        return image
    if hasattr(image, "convert"):  # a PIL image
        return np.asarray(image.convert("RGB"))
    raise UserError(f"expected a numpy array, a PIL image or a path, got {type(image).__name__}")


class Detector:
    """A trained model with its class names: ``detector(image)`` -> ``{"boxes": [D, 4] xyxy in
    the input's pixels, "scores": [D], "labels": [D], "class_names": [D]}`` (numpy arrays and a
    list), sorted by score; a list of images gives a list of results."""

    def __init__(self, model, class_names: Sequence[str], device: Union[str, torch.device] = "cpu",
                 max_image_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.max_image_pixels = max_image_pixels

    @classmethod
    def from_checkpoint(cls, path: str, config: Optional[str] = None, overrides: Sequence[str] = (),
                        class_names: Optional[Sequence[str]] = None, device: str = "auto") -> "Detector":
        """The model of ``path`` (a checkpoint of ``detector train``), built from ``config``
        (a YAML file; default: the config saved in the checkpoint), with the class names saved
        in the checkpoint unless ``class_names`` are given.

        ``device="auto"`` is the best device of this machine (CUDA when available), not the one
        the checkpoint trained on: a model trained on a GPU loads on a laptop."""
        from .modeling import build_model, check_names
        from .modeling.weights import load_model_weights

        state = safe_torch_load(path)
        cfg = load_config(config, overrides) if config else _checkpoint_config(state, path, overrides)
        check_names(cfg)
        model = build_model(cfg)
        load_model_weights(model, path)
        names = list(class_names) if class_names is not None else checkpoint_class_names(state, cfg)
        if len(names) != cfg.model.num_classes:
            raise UserError(f"{len(names)} class names for a model of {cfg.model.num_classes} classes")
        return cls(model, names, resolve_device(device, "device"), cfg.data.max_image_pixels)

    @torch.no_grad()
    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]):
        single = not isinstance(images, (list, tuple))
        arrays = [to_array(im, self.max_image_pixels) for im in ([images] if single else images)]
        # torch.as_tensor copies a read-only array (an image decoded by PIL) instead of warning;
        # uint8 crosses to the device, where the model converts it
        tensors = [torch.as_tensor(np.array(a, copy=not a.flags.writeable)).permute(2, 0, 1).to(self.device)
                   for a in arrays]
        results = [self._result({k: v.cpu().numpy() for k, v in det.items()}) for det in self.model(tensors)]
        return results[0] if single else results

    def _result(self, det: Dict[str, np.ndarray]) -> Dict[str, Any]:
        return {**det, "class_names": [self.class_names[int(c)] for c in det["labels"]]}


def checkpoint_class_names(state: Dict[str, Any], cfg: Config) -> List[str]:
    """The class names a checkpoint carries; for older checkpoints, those of the config's
    annotation files; else ``class_<i>``, with a warning."""
    if isinstance(state, dict) and isinstance(state.get("class_names"), list):
        return [str(n) for n in state["class_names"]]
    for split in (cfg.data.train, cfg.data.val):
        if split.ann_file and os.path.isfile(split.ann_file):
            names = class_names_from_annotations(split.ann_file, cfg.data.category_ids_as_labels)
            if len(names) == cfg.model.num_classes:
                return names
    logger.warning("the checkpoint carries no class names and the config's annotation files give none: "
                   "the classes are called class_0 .. class_%d", cfg.model.num_classes - 1)
    return [f"class_{i}" for i in range(cfg.model.num_classes)]


def _checkpoint_config(state: Any, path: str, overrides: Sequence[str]) -> Config:
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise UserError(f"{path} holds no config (a bare state dict?): pass the config it was trained with")
    try:
        return config_from_dict(state["config"], f"the config saved in {path}", overrides)
    except ConfigError as e:
        raise UserError(f"{e}; pass the config it was trained with") from None


class OnnxDetector:
    """An exported graph run by ONNX Runtime on the CPU, with the same call and results as
    :class:`Detector` (the class names come from the graph's metadata)."""

    def __init__(self, path: str, threads: int = 0, class_names: Optional[Sequence[str]] = None,
                 max_image_pixels: int = DEFAULT_MAX_PIXELS) -> None:
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
        if inputs != [ONNX_INPUT] or outputs != list(ONNX_OUTPUTS):
            raise UserError(f"{path} was not written by 'detector export': inputs {inputs}, outputs {outputs} "
                            f"(expected [{ONNX_INPUT!r}] and {list(ONNX_OUTPUTS)})")
        saved = self.session.get_modelmeta().custom_metadata_map.get(ONNX_CLASS_NAMES)
        self.class_names = list(class_names) if class_names is not None else (json.loads(saved) if saved else None)
        self.max_image_pixels = max_image_pixels

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]):
        single = not isinstance(images, (list, tuple))
        results = []
        for image in [images] if single else images:
            array = np.ascontiguousarray(to_array(image, self.max_image_pixels))
            boxes, scores, labels = self.session.run(None, {ONNX_INPUT: array})
            names = [self.class_names[int(c)] if self.class_names else f"class_{int(c)}" for c in labels]
            results.append({"boxes": boxes, "scores": scores, "labels": labels, "class_names": names})
        return results[0] if single else results


def find_images(inputs: Sequence[str]) -> List[str]:
    """Image files named directly or found in the named directories (sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in directory {item}")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"no such image or directory: {item}")
    return paths


def predict(detect, paths: Sequence[str], output_dir: str, score_thresh: float = 0.3,
            progress: bool = True) -> List[Dict[str, Any]]:
    """Write ``output_dir/predictions.json`` and a drawn copy of each image (``<stem>_pred.png``);
    return the records. ``detect`` is a :class:`Detector` or an :class:`OnnxDetector`. An image
    that cannot be read is listed with its error and the others go on: a run over thousands of
    files does not end at the first bad one (the command then exits 2, naming them)."""
    from .figures import draw_boxes, save_image

    os.makedirs(output_dir, exist_ok=True)
    records = []
    for path in tqdm(paths, desc="predicting", unit="img", disable=not progress):
        try:
            array = to_array(path, detect.max_image_pixels)
        except UserError as e:
            records.append({"file_name": os.path.basename(path), "path": path, "error": str(e)})
            continue
        det = detect(array)
        keep = det["scores"] >= score_thresh
        names = [n for n, k in zip(det["class_names"], keep) if k]
        boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
        records.append({"file_name": os.path.basename(path), "path": path, "boxes": boxes.tolist(),
                        "scores": scores.tolist(), "labels": labels.tolist(), "category_names": names})
        captions = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())]
        stem = os.path.splitext(os.path.basename(path))[0]
        save_image(draw_boxes(array, boxes, captions), os.path.join(output_dir, f"{stem}_pred.png"))
    with open(os.path.join(output_dir, "predictions.json"), "w") as f:
        json.dump(records, f, indent=1)
    return records
