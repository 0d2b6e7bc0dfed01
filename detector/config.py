"""The run configuration: a tree of typed dataclasses, loaded from YAML.

A YAML file may name ``_base_`` files (a path or a list of paths, relative to the file);
they are loaded first and deep-merged in order, then the file itself is merged on top.
``KEY=VALUE`` overrides (dotted paths, VALUE in YAML syntax) are applied last. Every key is
checked against the dataclasses below: an unknown key or a value of the wrong type is a
:class:`ConfigError` naming the key path and the file (or override) that set it.

Defaults are the paper's (RetinaNet R50-FPN, focal loss alpha 0.25, gamma 2); only the
``build_*`` functions read the config, modules take plain keyword arguments.
"""
import copy
import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .errors import UserError

OVERRIDE = "command-line override"
NUM_LEVELS = 5  # the pyramid levels P3..P7, one anchor size list each


class ConfigError(UserError):
    """A configuration problem a user can fix; the message names the key and where it was set."""


# ----------------------------------------------------------------------------- valid values


@dataclass(frozen=True)
class Rule:
    """What a field accepts beyond its type: bounds for numbers, a list of choices or a
    pattern for strings. A list field applies it to each element; None passes (Optional)."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Tuple[str, ...] = ()
    pattern: Optional[str] = None  # a regular expression the whole string must match
    text: Optional[str] = None  # says what is allowed where the bounds alone would not

    def allows(self, value: Any) -> bool:
        if self.choices and value not in self.choices:
            return False
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return False
        # written as "not (v >= b)" so that NaN fails every bound
        return not any(bound is not None and not test(value, bound) for bound, test in (
            (self.ge, lambda v, b: v >= b), (self.gt, lambda v, b: v > b),
            (self.le, lambda v, b: v <= b), (self.lt, lambda v, b: v < b)))

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}" if self.gt is not None else ""
        high = f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}" if self.lt is not None else ""
        return " and ".join(part for part in (low, high) if part)


def param(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **rule) -> Any:
    """A config field with its :class:`Rule`: ``lr: float = param(0.01, gt=0)``."""
    return field(default=default, default_factory=factory, metadata={"rule": Rule(**rule)})


FRACTION = {"ge": 0.0, "le": 1.0}
POSITIVE = {"gt": 0.0}
AT_LEAST_ONE = {"ge": 1}
NOT_NEGATIVE = {"ge": 0}


# ----------------------------------------------------------------------------- the schema


@dataclass
class BackboneConfig:
    # resnet18 | resnet34 | resnet50 | resnet101, or a registered name
    name: str = "resnet50"
    # None (random init), a torchvision weights name ("IMAGENET1K_V1" or
    # "ResNet50_Weights.IMAGENET1K_V1") or a local .pth file with a ResNet state dict.
    weights: Optional[str] = None
    # SyncBatchNorm across processes is train.sync_bn on top of bn.
    norm: str = param("frozen_bn", choices=("frozen_bn", "bn", "gn"))
    norm_eps: float = param(1e-5, **POSITIVE)
    # 0: train everything; 1: freeze the stem; k >= 2: also freeze res2 .. res_k (layer1..).
    freeze_at: int = param(2, ge=0, le=5)


@dataclass
class FPNConfig:
    out_channels: int = param(256, **AT_LEAST_ONE)
    p6_from: str = param("c5", choices=("c5", "p5"))  # c5: the paper, detectron2; p5: torchvision v1


@dataclass
class AnchorConfig:
    # One base size per level P3..P7, multiplied by each scale (paper: 2^0, 2^(1/3), 2^(2/3)).
    base_sizes: List[float] = param(factory=lambda: [32.0, 64.0, 128.0, 256.0, 512.0], **POSITIVE)
    scales: List[float] = param(factory=lambda: [1.0, 2 ** (1 / 3), 2 ** (2 / 3)], **POSITIVE)
    # Explicit per-level size lists; when set, replaces base_sizes x scales.
    sizes: Optional[List[List[float]]] = None
    aspect_ratios: List[float] = param(factory=lambda: [0.5, 1.0, 2.0], **POSITIVE)  # height / width
    # torchvision rounds the cell anchors to integers and takes each level's stride as
    # (padded input size) // (feature size); the paper and detectron2 do neither.
    round_to_int: bool = False
    stride_mode: str = param("nominal", choices=("nominal", "input_over_feature"))


@dataclass
class HeadConfig:
    num_convs: int = param(4, **NOT_NEGATIVE)
    norm: str = param("none", choices=("none", "gn"))
    prior_prob: float = param(0.01, gt=0.0, lt=1.0)


@dataclass
class MatcherConfig:
    # iou: IoU >= fg_iou_thresh foreground, < bg_iou_thresh background, ignored between (the
    # paper); atss: adaptive thresholds from the topk anchors per level nearest each box.
    name: str = param("iou", choices=("iou", "atss"))
    fg_iou_thresh: float = param(0.5, **FRACTION)
    bg_iou_thresh: float = param(0.4, **FRACTION)
    # Also match each ground-truth box to its best anchors when none reaches fg_iou_thresh
    # (detectron2 and torchvision do; the paper does not mention it). iou only.
    allow_low_quality_matches: bool = True
    topk: int = param(9, **AT_LEAST_ONE)  # atss only: candidate anchors per level and box


@dataclass
class BoxCoderConfig:
    weights: List[float] = param(factory=lambda: [1.0, 1.0, 1.0, 1.0], **POSITIVE)
    scale_clamp: float = param(math.log(1000.0 / 16), **POSITIVE)


@dataclass
class InferenceConfig:
    score_thresh: float = param(0.05, ge=0.0, lt=1.0)
    topk_candidates: int = param(1000, **AT_LEAST_ONE)
    nms_thresh: float = param(0.5, **FRACTION)
    max_detections_per_image: int = param(100, **AT_LEAST_ONE)


@dataclass
class ModelConfig:
    num_classes: int = param(80, **AT_LEAST_ONE)
    pixel_mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: List[float] = param(factory=lambda: [0.229, 0.224, 0.225], **POSITIVE)
    # Initialise the whole detector from these weights before training (fine-tuning): a
    # checkpoint of this package or a torchvision RetinaNet state dict. Tensors whose shape fits
    # are loaded; the rest (a classifier for another class count) keep their initialisation.
    # A run that resumes (--resume with a checkpoint) continues from its checkpoint instead.
    weights: Optional[str] = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    box_coder: BoxCoderConfig = field(default_factory=BoxCoderConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Run the convolutions in channels-last (NHWC) memory format, the layout tensor cores
    # prefer on GPUs.
    channels_last: bool = False


@dataclass
class InputConfig:
    min_size: int = param(800, **AT_LEAST_ONE)
    max_size: int = param(1333, **AT_LEAST_ONE)
    size_divisible: int = param(32, **AT_LEAST_ONE)
    # False: training images keep the size the train transforms give them (multi-scale
    # augmentation lives there); True: the model resizes them to min_size/max_size as at
    # test time (torchvision's behaviour). null (auto): True when the train transforms do
    # not rescale (see RESCALING_TRANSFORMS), so that a model never trains at the images'
    # native sizes while it is tested at min_size.
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
    num_workers: int = param(2, **NOT_NEGATIVE)
    aspect_ratio_grouping: bool = True
    # False: labels are 0..K-1 in the order of the category ids. True: the label is the
    # category id itself (torchvision's COCO models: 91 slots), model.num_classes = max id + 1.
    category_ids_as_labels: bool = False
    # An image whose header claims more pixels is refused unread (a decompression bomb: a
    # few KB of PNG that decodes to gigabytes); 0: no limit. 200M admits a 108 MP photo.
    max_image_pixels: int = param(200_000_000, **NOT_NEGATIVE)


@dataclass
class ClsLossConfig:
    # sigmoid_focal | softmax_focal | focal_star | poly1_focal | varifocal | quality_focal |
    # ghm_c, or a registered name
    name: str = "sigmoid_focal"
    alpha: float = param(0.25, le=1.0, text="<= 1 (a weight in [0, 1], or negative for no balancing)")
    gamma: float = param(2.0, **NOT_NEGATIVE)
    # focal_star: the shift of gamma * x_t + beta (default 1); quality_focal: the exponent of
    # |y - sigma| (default 2); null: the loss's own default.
    beta: Optional[float] = None
    epsilon: float = 1.0  # poly1_focal: the weight of the (1 - p_t)^(gamma + 1) term
    bins: int = param(10, **AT_LEAST_ONE)  # ghm_c: gradient-norm bins
    momentum: float = param(0.75, ge=0.0, lt=1.0)  # ghm_c: momentum of the bin counts


@dataclass
class BoxLossConfig:
    name: str = "smooth_l1"  # smooth_l1 | l1 | giou, or a registered name
    beta: float = param(0.1, **NOT_NEGATIVE)  # smooth_l1 only
    weight: float = param(1.0, **NOT_NEGATIVE)


@dataclass
class LossConfig:
    cls: ClsLossConfig = field(default_factory=ClsLossConfig)
    box: BoxLossConfig = field(default_factory=BoxLossConfig)
    # 0: divide by this batch's number of foreground anchors (the paper). In (0, 1): divide
    # by an exponential moving average of it with this momentum (detectron2 uses 0.9).
    normalizer_momentum: float = param(0.0, ge=0.0, lt=1.0)


@dataclass
class SolverConfig:
    optimizer: str = param("sgd", choices=("sgd", "adamw"))
    base_lr: float = param(0.01, **POSITIVE)  # for ims_per_batch images per step (paper: 0.01 at 16)
    momentum: float = param(0.9, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = param(1e-4, **NOT_NEGATIVE)  # not applied to biases and normalisation layers
    ims_per_batch: int = param(16, **AT_LEAST_ONE)  # in total, over all processes
    lr_schedule: str = param("step", choices=("step", "cosine"))
    steps: List[int] = param(factory=lambda: [60000, 80000], **NOT_NEGATIVE)  # step schedule only
    gamma: float = param(0.1, gt=0.0, le=1.0)  # step schedule only
    warmup_iters: int = param(1000, **NOT_NEGATIVE)
    warmup_factor: float = param(0.001, gt=0.0, le=1.0)
    clip_grad_norm: float = param(0.0, **NOT_NEGATIVE)  # 0: no clipping


@dataclass
class TrainConfig:
    max_iter: int = param(90000, **AT_LEAST_ONE)
    # auto (cuda when available) | cpu | cuda | cuda:N
    device: str = param("auto", pattern=r"auto|cpu|cuda(:\d+)?", text="auto, cpu, cuda or cuda:N")
    amp: bool = False  # mixed precision (autocast); losses stay float32
    # auto (bfloat16 where supported, else float16) | bfloat16 | float16 (CUDA, scaled)
    amp_dtype: str = param("auto", choices=("auto", "bfloat16", "float16"))
    compile: bool = False  # torch.compile the backbone, FPN and head (the dense layers)
    log_period: int = param(20, **AT_LEAST_ONE)
    checkpoint_period: int = param(5000, **AT_LEAST_ONE)
    keep_checkpoints: int = param(0, **NOT_NEGATIVE)  # keep only the newest K periodic checkpoints; 0 keeps all
    sync_bn: bool = False  # SyncBatchNorm across DDP processes (CUDA only), for backbone.norm bn
    # DDP: how long a process waits for the others at a collective before the run fails. Rank 0
    # alone computes the anchor statistics at the start and COCOeval at each evaluation, while
    # the others wait in the next step's all-reduce (NCCL's default gives up after 10 minutes).
    dist_timeout_min: int = param(60, **AT_LEAST_ONE)
    eval_period: int = param(0, **NOT_NEGATIVE)  # 0: evaluate only at the end
    seed: int = param(0, ge=0, lt=2 ** 32)  # NumPy takes seeds in [0, 2^32)


@dataclass
class EvalConfig:
    backend: str = param("auto", choices=("auto", "hotcoco", "faster_coco_eval", "pycocotools"))
    ims_per_batch: int = param(8, **AT_LEAST_ONE)
    # confusion_matrix.png counts the detections that score at least this
    confusion_score_thresh: float = param(0.3, **FRACTION)


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
    output_dir: str = param("output", pattern=r".*\S.*", text="a directory path")


# ----------------------------------------------------------------------------- loading


def load_config(path: str, overrides: Sequence[str] = ()) -> Config:
    """Load ``path`` with its ``_base_`` files, apply ``KEY=VALUE`` overrides, type-check."""
    data, origins = _load_yaml_tree(path, ())
    return _resolve(data, origins, overrides)


def config_from_dict(data: Dict[str, Any], source: str, overrides: Sequence[str] = ()) -> Config:
    """The same for a config held as a dict (the one saved in a checkpoint); ``source`` says
    where it came from, in error messages."""
    return _resolve(copy.deepcopy(data), _key_paths(data, source), overrides)


def _resolve(data: Dict[str, Any], origins: Dict[str, str], overrides: Sequence[str]) -> Config:
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
        origins[key] = OVERRIDE
    cfg = from_dict(Config, data, origins)
    _check_relations(cfg, origins)
    cfg._origins = origins  # not a field: for where_set(), which names the file behind a key
    return cfg


def where_set(cfg: Config, key: str) -> str:
    """`` (set in FILE)`` for a dotted key of a loaded config, to end an error message with."""
    return _where(getattr(cfg, "_origins", {}), key)


def _check_relations(cfg: Config, origins: Dict[str, str]) -> None:
    """The few rules that tie one field to another."""
    m = cfg.model
    problems = []
    if m.matcher.bg_iou_thresh > m.matcher.fg_iou_thresh:
        problems.append(("model.matcher.bg_iou_thresh", f"<= model.matcher.fg_iou_thresh ({m.matcher.fg_iou_thresh})",
                         m.matcher.bg_iou_thresh))
    if cfg.input.max_size < cfg.input.min_size:
        problems.append(("input.max_size", f">= input.min_size ({cfg.input.min_size})", cfg.input.max_size))
    for key, values, length in (("model.pixel_mean", m.pixel_mean, 3), ("model.pixel_std", m.pixel_std, 3),
                                ("model.box_coder.weights", m.box_coder.weights, 4),
                                ("model.anchors.base_sizes", m.anchors.base_sizes, NUM_LEVELS)):
        if len(values) != length:
            problems.append((key, f"a list of {length} numbers", values))
    if m.anchors.sizes is not None:
        sizes = m.anchors.sizes
        if len(sizes) != NUM_LEVELS or len({len(level) for level in sizes}) != 1 or not sizes[0] or \
                not all(v > 0 for level in sizes for v in level):
            problems.append(("model.anchors.sizes", f"{NUM_LEVELS} lists (P3..P7) of as many positive sizes each",
                             sizes))
    if not m.anchors.scales or not m.anchors.aspect_ratios:
        problems.append(("model.anchors.scales", "non-empty, as must aspect_ratios", m.anchors.scales))
    if problems:
        key, allowed, value = problems[0]
        raise ConfigError(f"config key '{key}' must be {allowed}, got {value!r}{_where(origins, key)}")


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
            key = f"{prefix}{f.name}"
            kwargs[f.name] = value = _coerce(hints[f.name], data[f.name], key, origins)
            rule = f.metadata.get("rule")
            if rule is not None:
                _check_rule(rule, value, key, origins)
    return cls(**kwargs)


def _check_rule(rule: Rule, value: Any, key: str, origins: Dict[str, str]) -> None:
    values = value if isinstance(value, list) else [value]
    for index, v in enumerate(values):
        if v is not None and not rule.allows(v):
            element = f"{key}[{index}]" if isinstance(value, list) else key
            raise ConfigError(f"config key '{element}' must be {rule.describe()}, got {v!r}{_where(origins, key)}")


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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        _type_error(key, "a finite number", value, origins)
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


# ----------------------------------------------------------------------------- the training scale

# albumentations transforms that rescale the image: a train pipeline with one of them sets the
# training scale; without one, images would train at their native sizes.
RESCALING_TRANSFORMS = ("Resize", "SmallestMaxSize", "LongestMaxSize", "RandomScale", "RandomResizedCrop",
                        "RandomSizedCrop", "RandomSizedBBoxSafeCrop", "Affine", "ShiftScaleRotate")


def rescales(transforms: Sequence[Dict[str, Any]]) -> bool:
    """Whether a transform list rescales its images (one of :data:`RESCALING_TRANSFORMS`)."""
    return any(spec.get("name") in RESCALING_TRANSFORMS for spec in transforms)


def resize_in_training(cfg: Config) -> bool:
    """``input.resize_in_training``, with null (auto) resolved: the model resizes training
    images like test images exactly when the train transforms do not rescale them."""
    if cfg.input.resize_in_training is not None:
        return cfg.input.resize_in_training
    return not rescales(cfg.data.train.transforms)


def training_scale_note(cfg: Config) -> Tuple[str, bool]:
    """One line on how training images are scaled, against the test scale, and whether it is a
    warning: training would see the images' native sizes while testing resizes them."""
    test = f"input.min_size={cfg.input.min_size}, input.max_size={cfg.input.max_size}"
    if resize_in_training(cfg):
        why = "" if cfg.input.resize_in_training else " (auto: the train transforms do not rescale)"
        return f"train images are resized by the model like test images ({test}){why}", False
    if rescales(cfg.data.train.transforms):
        return f"train images are rescaled by the train transforms; test images by the model ({test})", False
    return (f"train images keep their native sizes (input.resize_in_training=false and no rescaling transform) "
            f"while test images are resized ({test}); set input.resize_in_training=true or add a "
            "SmallestMaxSize/LongestMaxSize transform", True)


# ----------------------------------------------------------------------------- output


def differences(before: Dict[str, Any], after: Dict[str, Any], prefix: str = "") -> List[str]:
    """``"key: A -> B"`` for every dotted key whose value differs between two config dicts."""
    lines = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


def to_dict(cfg) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
