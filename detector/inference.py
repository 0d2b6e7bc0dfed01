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

from .comm import resolve_device
from .config import Config, ConfigError, config_from_dict, load_config
from .data.coco import label_map, load_categories
from .data.image import DEFAULT_MAX_PIXELS, read_image
from .errors import UserError, require
from .metadata import CHECKPOINT_KEY, ONNX_KEY, ModelMetadata
from .progress import progress as progress_bar
from .serialization import safe_torch_load

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ONNX_INPUT = "image"
ONNX_OUTPUTS = ("boxes", "scores", "labels")
ONNX_CLASS_NAMES = "class_names"  # what graphs exported by earlier versions carry (names only)

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
    """A trained model with its classes: ``detector(image)`` -> ``{"boxes": [D, 4] xyxy in the
    input's pixels, "scores": [D], "labels": [D], "class_names": [D], "category_ids": [D]}``
    (numpy arrays and lists; category ids None where unknown), sorted by score; a list of images
    gives a list of results. ``metadata`` (:class:`~detector.metadata.ModelMetadata`) or plain
    ``class_names`` say what the labels are."""

    def __init__(self, model, class_names: Optional[Sequence[str]] = None, device: Union[str, torch.device] = "cpu",
                 max_image_pixels: int = DEFAULT_MAX_PIXELS, metadata: Optional[ModelMetadata] = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.metadata = metadata or ModelMetadata(list(class_names))
        self.max_image_pixels = max_image_pixels

    @property
    def class_names(self) -> List[str]:
        return self.metadata.class_names

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
        metadata = ModelMetadata(list(class_names)) if class_names is not None else checkpoint_metadata(state, cfg)
        if len(metadata.class_names) != cfg.model.num_classes:
            raise UserError(f"{len(metadata.class_names)} class names for a model of {cfg.model.num_classes} classes")
        return cls(model, device=resolve_device(device, "device"), max_image_pixels=cfg.data.max_image_pixels,
                   metadata=metadata)

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
        return labelled(det, self.metadata)


def labelled(det: Dict[str, np.ndarray], metadata: Optional[ModelMetadata]) -> Dict[str, Any]:
    """Detections with each label's class name and COCO category id (None where unknown)."""
    labels = [int(c) for c in det["labels"]]
    names = [metadata.class_names[c] if metadata else f"class_{c}" for c in labels]
    ids = [metadata.category_ids[c] if metadata and metadata.category_ids else None for c in labels]
    return {**det, "class_names": names, "category_ids": ids}


def checkpoint_metadata(state: Dict[str, Any], cfg: Config) -> ModelMetadata:
    """What a checkpoint says of its labels; for earlier checkpoints (class names only, or
    nothing), the config's annotation files fill in; else ``class_<i>``, with a warning."""
    if isinstance(state, dict) and isinstance(state.get(CHECKPOINT_KEY), dict):
        return ModelMetadata.from_dict(state[CHECKPOINT_KEY])
    saved = state.get("class_names") if isinstance(state, dict) else None  # what earlier versions kept
    saved = [str(n) for n in saved] if isinstance(saved, list) else None
    for split in (cfg.data.train, cfg.data.val):
        if split.ann_file and os.path.isfile(split.ann_file):
            to_label, names = label_map(load_categories(split.ann_file), split.ann_file,
                                        cfg.data.category_ids_as_labels)
            if len(names) == cfg.model.num_classes and saved in (None, names):
                return ModelMetadata.from_label_map(names, {label: cid for cid, label in to_label.items()})
    if saved is not None:
        return ModelMetadata(saved)
    logger.warning("the checkpoint carries no class names and the config's annotation files give none: "
                   "the classes are called class_0 .. class_%d", cfg.model.num_classes - 1)
    return ModelMetadata([f"class_{i}" for i in range(cfg.model.num_classes)])


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
        saved = self.session.get_modelmeta().custom_metadata_map
        if class_names is not None:
            self.metadata: Optional[ModelMetadata] = ModelMetadata(list(class_names))
        elif ONNX_KEY in saved:
            self.metadata = ModelMetadata.from_json(saved[ONNX_KEY])
        elif ONNX_CLASS_NAMES in saved:  # a graph of an earlier version
            self.metadata = ModelMetadata(json.loads(saved[ONNX_CLASS_NAMES]))
        else:
            self.metadata = None
        self.max_image_pixels = max_image_pixels

    @property
    def class_names(self) -> Optional[List[str]]:
        return self.metadata.class_names if self.metadata else None

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]):
        single = not isinstance(images, (list, tuple))
        results = []
        for image in [images] if single else images:
            array = np.ascontiguousarray(to_array(image, self.max_image_pixels))
            boxes, scores, labels = self.session.run(None, {ONNX_INPUT: array})
            results.append(labelled({"boxes": boxes, "scores": scores, "labels": labels}, self.metadata))
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


def drawing_names(paths: Sequence[str]) -> List[str]:
    """A file name for each input's drawing, none shared: ``<stem>_pred.png``; where another
    input has the same stem (``cam1/a.jpg`` and ``cam2/a.jpg``, ``a.jpg`` and ``a.png``), its
    folder and extension join the name (``cam2_a_jpg_pred.png``), then a number if need be."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    shared = {stem for stem in stems if stems.count(stem) > 1}
    names, used = [], set()
    for path, stem in zip(paths, stems):
        if stem in shared:
            folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
            stem = f"{folder}_{stem}_{os.path.splitext(path)[1].lstrip('.')}"
        name, number = f"{stem}_pred.png", 2
        while name in used:
            name, number = f"{stem}_{number}_pred.png", number + 1
        used.add(name)
        names.append(name)
    return names


def predict(detect, paths: Sequence[str], output_dir: str, score_thresh: float = 0.3, progress: bool = True,
            image_ids: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
    """Write ``output_dir/predictions.json`` and a drawn copy of each image (its file named in
    the record's ``drawing``); return the records. ``detect`` is a :class:`Detector` or an
    :class:`OnnxDetector`. Each record has the detections scoring ``score_thresh`` or more, with
    their labels, class names and COCO category ids. With ``image_ids`` (the images of a data
    split), ``coco_results.json`` also gets every detection in COCO's results format
    (``image_id``, ``category_id``, ``bbox`` xywh, ``score``: what pycocotools' ``loadRes`` reads).

    An image that cannot be read is listed with its error and the others go on: a run over
    thousands of files does not end at the first bad one (the command then exits 2, naming them)."""
    from .evaluation.coco_eval import detections_to_coco_results
    from .figures import draw_boxes, save_image

    metadata = getattr(detect, "metadata", None)
    if image_ids is not None and (metadata is None or metadata.category_ids is None):
        raise UserError("the model carries no COCO category ids (a checkpoint or graph of an earlier version): "
                        "coco_results.json needs them; train or export it again, or map its labels yourself")
    os.makedirs(output_dir, exist_ok=True)
    records, results = [], []
    inputs = list(zip(paths, drawing_names(paths)))
    for index, (path, drawing) in enumerate(progress_bar(inputs, desc="predicting", unit="img", disable=not progress)):
        try:
            array = to_array(path, detect.max_image_pixels)
        except UserError as e:
            records.append({"file_name": os.path.basename(path), "path": path, "error": str(e)})
            continue
        det = detect(array)
        if image_ids is not None:  # the conversion the evaluation's detections.json gets
            results += detections_to_coco_results([{k: torch.as_tensor(det[k]) for k in ONNX_OUTPUTS}],
                                                  [image_ids[index]], dict(enumerate(metadata.category_ids)))
        keep = (det["scores"] >= score_thresh).tolist()
        picked = {key: [v for v, k in zip(det[key], keep) if k] for key in ("class_names", "category_ids")}
        boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
        records.append({"file_name": os.path.basename(path), "path": path, "drawing": drawing,
                        "boxes": boxes.tolist(), "scores": scores.tolist(), "labels": labels.tolist(),
                        "category_names": picked["class_names"], "category_ids": picked["category_ids"]})
        captions = [f"{n} {s:.2f}" for n, s in zip(picked["class_names"], scores.tolist())]
        save_image(draw_boxes(array, boxes, captions), os.path.join(output_dir, drawing))
    with open(os.path.join(output_dir, "predictions.json"), "w") as f:
        json.dump(records, f, indent=1)
    if image_ids is not None:
        with open(os.path.join(output_dir, "coco_results.json"), "w") as f:
            json.dump(results, f)
    return records
