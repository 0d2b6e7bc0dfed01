"""The run configuration: a tree of typed dataclasses, loaded from YAML.

A YAML file may name ``_base_`` files (a path or a list of paths, relative to the file);
they are loaded first and deep-merged in order, then the file itself is merged on top.
``KEY=VALUE`` overrides (dotted paths, VALUE in YAML syntax) are applied last. Every key is
checked against the dataclasses below: an unknown key or a value of the wrong type is a
:class:`ConfigError` naming the key path and the file (or override) that set it.

Defaults are the paper's (RetinaNet R50-FPN, focal loss alpha 0.25, gamma 2); only the
``build_*`` functions read the config, modules take plain keyword arguments.
"""
import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .errors import UserError

OVERRIDE = "command-line override"


class ConfigError(UserError):
    """A configuration problem a user can fix; the message names the key and where it was set."""


# ----------------------------------------------------------------------------- the schema


@dataclass
class BackboneConfig:
    name: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101, or a registered name
    # None (random init), a torchvision weights name ("IMAGENET1K_V1" or
    # "ResNet50_Weights.IMAGENET1K_V1") or a local .pth file with a ResNet state dict.
    weights: Optional[str] = None
    norm: str = "frozen_bn"  # frozen_bn | bn | sync_bn | gn
    norm_eps: float = 1e-5
    # 0: train everything; 1: freeze the stem; k >= 2: also freeze res2 .. res_k (layer1..).
    freeze_at: int = 2


@dataclass
class FPNConfig:
    out_channels: int = 256
    p6_from: str = "c5"  # c5 (paper, detectron2) | p5 (torchvision v1)


@dataclass
class AnchorConfig:
    # One base size per level P3..P7, multiplied by each scale (paper: 2^0, 2^(1/3), 2^(2/3)).
    base_sizes: List[float] = field(default_factory=lambda: [32.0, 64.0, 128.0, 256.0, 512.0])
    scales: List[float] = field(default_factory=lambda: [1.0, 2 ** (1 / 3), 2 ** (2 / 3)])
    # Explicit per-level size lists; when set, replaces base_sizes x scales.
    sizes: Optional[List[List[float]]] = None
    aspect_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    # torchvision rounds the cell anchors to integers and takes each level's stride as
    # (padded input size) // (feature size); the paper and detectron2 do neither.
    round_to_int: bool = False
    stride_mode: str = "nominal"  # nominal (8, 16, .., 128) | input_over_feature


@dataclass
class HeadConfig:
    num_convs: int = 4
    norm: str = "none"  # none | gn
    prior_prob: float = 0.01


@dataclass
class MatcherConfig:
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    # Also match each ground-truth box to its best anchors when none reaches fg_iou_thresh
    # (detectron2 and torchvision do; the paper does not mention it).
    allow_low_quality_matches: bool = True


@dataclass
class BoxCoderConfig:
    weights: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    scale_clamp: float = math.log(1000.0 / 16)


@dataclass
class InferenceConfig:
    score_thresh: float = 0.05
    topk_candidates: int = 1000
    nms_thresh: float = 0.5
    max_detections_per_image: int = 100


@dataclass
class ModelConfig:
    num_classes: int = 80
    pixel_mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    box_coder: BoxCoderConfig = field(default_factory=BoxCoderConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Run the convolutions in channels-last (NHWC) memory format, the layout tensor cores
    # prefer on GPUs. (On the 2-core CPU demo it measured neither faster nor slower.)
    channels_last: bool = False


@dataclass
class InputConfig:
    min_size: int = 800
    max_size: int = 1333
    size_divisible: int = 32
    # False: training images keep the size the train transforms give them (multi-scale
    # augmentation lives there); True: the model resizes them to min_size/max_size as at
    # test time (torchvision's behaviour). null (auto): True when the train transforms do
    # not rescale (see data.transforms.RESCALING_TRANSFORMS), so that a model never trains
    # at the images' native sizes while it is tested at min_size.
    resize_in_training: Optional[bool] = None


def _default_train_transforms() -> List[Dict[str, Any]]:
    return [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "SmallestMaxSize", "max_size": [640, 672, 704, 736, 768, 800]},
        {"name": "LongestMaxSize", "max_size": 1333},
    ]


@dataclass
class SplitConfig:
    ann_file: str = ""  # COCO-format json; empty: the split is not used
    img_dir: str = ""
    # Images without (non-crowd) annotations: kept as all-background samples unless filtered.
    filter_empty: bool = False
    # albumentations transforms by class name and keyword arguments, applied in order.
    transforms: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class DataConfig:
    train: SplitConfig = field(default_factory=lambda: SplitConfig(transforms=_default_train_transforms()))
    val: SplitConfig = field(default_factory=SplitConfig)
    num_workers: int = 2
    aspect_ratio_grouping: bool = True
    # False: labels are 0..K-1 in the order of the category ids. True: the label is the
    # category id itself (torchvision's COCO models: 91 slots), model.num_classes = max id + 1.
    category_ids_as_labels: bool = False


@dataclass
class ClsLossConfig:
    name: str = "sigmoid_focal"  # sigmoid_focal | softmax_focal, or a registered name
    alpha: float = 0.25  # < 0 disables the alpha balancing
    gamma: float = 2.0


@dataclass
class BoxLossConfig:
    name: str = "smooth_l1"  # smooth_l1 | l1 | giou, or a registered name
    beta: float = 0.1  # smooth_l1 only
    weight: float = 1.0


@dataclass
class LossConfig:
    cls: ClsLossConfig = field(default_factory=ClsLossConfig)
    box: BoxLossConfig = field(default_factory=BoxLossConfig)
    # 0: divide by this batch's number of foreground anchors (the paper). In (0, 1): divide
    # by an exponential moving average of it with this momentum (detectron2 uses 0.9).
    normalizer_momentum: float = 0.0


@dataclass
class SolverConfig:
    optimizer: str = "sgd"  # sgd | adamw
    base_lr: float = 0.01  # for ims_per_batch images per step (paper: 0.01 at 16)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4  # not applied to biases and normalisation layers
    ims_per_batch: int = 16  # in total, over all processes
    lr_schedule: str = "step"  # step | cosine
    steps: List[int] = field(default_factory=lambda: [60000, 80000])  # step schedule only
    gamma: float = 0.1  # step schedule only
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    clip_grad_norm: float = 0.0  # 0: no clipping


@dataclass
class TrainConfig:
    max_iter: int = 90000
    device: str = "auto"  # auto (cuda when available) | cuda | cpu | cuda:N
    amp: bool = False  # mixed precision (autocast); losses stay float32
    amp_dtype: str = "auto"  # auto (bfloat16 where supported, else float16) | bfloat16 | float16 (CUDA, scaled)
    compile: bool = False  # torch.compile the backbone, FPN and head (the dense layers)
    log_period: int = 20
    checkpoint_period: int = 5000
    keep_checkpoints: int = 0  # keep only the newest K periodic checkpoints; 0 keeps all
    sync_bn: bool = False  # SyncBatchNorm across DDP processes (CUDA only), for norm: bn
    eval_period: int = 0  # 0: evaluate only at the end
    seed: int = 0


@dataclass
class EvalConfig:
    backend: str = "auto"  # auto | pycocotools | faster_coco_eval
    ims_per_batch: int = 8


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    plugins: List[str] = field(default_factory=list)  # modules imported before building
    output_dir: str = "output"


# ----------------------------------------------------------------------------- loading


def load_config(path: str, overrides: Sequence[str] = ()) -> Config:
    """Load ``path`` with its ``_base_`` files, apply ``KEY=VALUE`` overrides, type-check."""
    data, origins = _load_yaml_tree(path, ())
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
        origins[key] = OVERRIDE
    return from_dict(Config, data, origins)


def parse_override(item: str) -> Tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", value)``; VALUE is read as YAML (ints, floats, bools,
    lists, null); anything YAML cannot read is kept as a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override '{item}' is not of the form KEY=VALUE with a dotted KEY, "
            "e.g. model.num_classes=3"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _load_yaml_tree(path: str, stack: Tuple[str, ...]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Read ``path`` and its ``_base_`` files into one merged dict.

    Returns the dict and, for every dotted key, the file that set it last.
    """
    real = os.path.realpath(path)
    if real in stack:
        chain = " -> ".join(list(stack) + [real])
        raise ConfigError(f"_base_ inheritance cycle: {chain}")
    if not os.path.isfile(path):
        where = f" (a _base_ of {stack[-1]})" if stack else ""
        raise ConfigError(f"config file not found: {path}{where}")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    bases = raw.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    for base in bases:
        base_data, base_origins = _load_yaml_tree(
            os.path.join(os.path.dirname(path), base), stack + (real,)
        )
        _merge(merged, base_data)
        origins.update(base_origins)
    _merge(merged, raw)
    origins.update(_key_paths(raw, path))
    return merged, origins


def _merge(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    """Deep-merge ``src`` into ``dst``: mappings merge, anything else replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


def _key_paths(data: Dict[str, Any], origin: str, prefix: str = "") -> Dict[str, str]:
    """``{dotted key: origin}`` for every key of a nested dict."""
    paths = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        paths[dotted] = origin
        if isinstance(value, dict):
            paths.update(_key_paths(value, origin, dotted + "."))
    return paths


def _set_dotted(data: Dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


# ----------------------------------------------------------------------------- type checks


def from_dict(cls, data: Any, origins: Optional[Dict[str, str]] = None, prefix: str = ""):
    """Build dataclass ``cls`` from nested dicts, checking every key and type."""
    origins = origins or {}
    if not isinstance(data, dict):
        key = prefix.rstrip(".") or "<root>"
        raise ConfigError(f"'{key}' must be a mapping, got {data!r}{_where(origins, key)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            dotted = f"{prefix}{key}"
            valid = ", ".join(sorted(names))
            raise ConfigError(
                f"unknown config key '{dotted}'{_where(origins, dotted)}; "
                f"valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {valid}"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{prefix}{f.name}", origins)
    return cls(**kwargs)


def _where(origins: Dict[str, str], dotted: str) -> str:
    origin = origins.get(dotted)
    while origin is None and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
        origin = origins.get(dotted)
    return f" (set in {origin})" if origin else ""


def _coerce(tp, value: Any, key: str, origins: Dict[str, str]):
    origin_type = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, origins, key + ".")
    if origin_type is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, origins)
    if tp is Any:
        return value
    if origin_type in (list, List):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            _type_error(key, "a list", value, origins)
        return [_coerce(args[0], v, f"{key}[{i}]", origins) for i, v in enumerate(value)]
    if origin_type in (dict, Dict):
        if not isinstance(value, dict):
            _type_error(key, "a mapping", value, origins)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        _type_error(key, "true or false", value, origins)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        _type_error(key, "an integer", value, origins)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        _type_error(key, "a number", value, origins)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        _type_error(key, "a string", value, origins)
    raise TypeError(f"config schema: unsupported type {tp} for '{key}'")


def _type_error(key, expected, value, origins):
    raise ConfigError(
        f"config key '{key}' must be {expected}, got {value!r}{_where(origins, _strip_index(key))}"
    )


def _strip_index(key: str) -> str:
    return key.split("[", 1)[0]


# ----------------------------------------------------------------------------- output


def to_dict(cfg) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
