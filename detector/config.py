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
import logging
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .errors import UserError
from .registry import REGISTRY, load_plugins

logger = logging.getLogger(__name__)

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


@dataclass
class ComponentConfig:
    """The config of a registered entry (a loss, a matcher): ``name`` selects the entry, and
    the entry's own dataclass, derived from this one beside its code, adds its keys with their
    defaults and valid ranges. Such a dataclass may add :meth:`problem` for a rule that ties
    two of its keys together."""

    name: str

    def problem(self) -> Optional[Tuple[str, str, Any]]:
        """``(key, what it must be, value)`` when two keys disagree, else None."""
        return None


def component(kind: str, default: str) -> Any:
    """A config field holding the config of a ``kind`` entry of the registry, ``default`` when
    the config names none: ``cls: ComponentConfig = component("cls_loss", "sigmoid_focal")``."""
    return field(default_factory=lambda: default_component(kind, default),
                 metadata={"component": kind, "default": default})


def default_component(kind: str, name: str) -> "ComponentConfig":
    """``name``'s config with its defaults."""
    load_plugins()
    return component_class(kind, name)(name=name)


def component_class(kind: str, name: str) -> type:
    """The config dataclass of entry ``name`` (an entry that declares none has only ``name``,
    and a box loss its ``weight`` too)."""
    return REGISTRY.config_class(kind, name) or (BoxLossConfig if kind == "box_loss" else ComponentConfig)


# The choices of the fields below, declared once: the code that acts on them does not check again.
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("step", "cosine")
AMP_DTYPES = ("auto", "bfloat16", "float16")  # auto: bfloat16 where the device has it, else float16
EVAL_BACKENDS = ("auto", "hotcoco", "faster_coco_eval", "pycocotools")  # auto: the first installed
HEAD_NORMS = ("none", "gn")

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
    norm: str = param("none", choices=HEAD_NORMS)
    prior_prob: float = param(0.01, gt=0.0, lt=1.0)


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
    # iou (the paper: IoU >= 0.5 foreground, < 0.4 background) | atss, or a registered name;
    # each with its own keys (modeling/matcher.py, modeling/atss.py)
    matcher: ComponentConfig = component("matcher", "iou")
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


# alpha as the focal loss family takes it: the weight of the positive term, or negative for none
ALPHA = {"le": 1.0, "text": "<= 1 (a weight in [0, 1], or negative for no balancing)"}


@dataclass
class BoxLossConfig(ComponentConfig):
    """What every box loss has: its weight against the classification loss (the model applies
    it). A box loss's own config derives from this one."""

    weight: float = param(1.0, **NOT_NEGATIVE)


@dataclass
class LossConfig:
    # sigmoid_focal | softmax_focal | focal_star | poly1_focal | varifocal | quality_focal |
    # ghm_c, or a registered name; each with its own keys (detector/losses/)
    cls: ComponentConfig = component("cls_loss", "sigmoid_focal")
    # smooth_l1 | l1 | giou | ghm_r, or a registered name; each with its own keys (losses/box.py, ghm.py)
    box: BoxLossConfig = component("box_loss", "smooth_l1")
    # 0: divide by this batch's number of foreground anchors (the paper). In (0, 1): divide
    # by an exponential moving average of it with this momentum (detectron2 uses 0.9).
    normalizer_momentum: float = param(0.0, ge=0.0, lt=1.0)


@dataclass
class SolverConfig:
    optimizer: str = param("sgd", choices=OPTIMIZERS)
    base_lr: float = param(0.01, **POSITIVE)  # for ims_per_batch images per step (paper: 0.01 at 16)
    momentum: float = param(0.9, ge=0.0, lt=1.0)  # sgd only
    weight_decay: float = param(1e-4, **NOT_NEGATIVE)  # not applied to biases and normalisation layers
    ims_per_batch: int = param(16, **AT_LEAST_ONE)  # in total, over all processes
    lr_schedule: str = param("step", choices=LR_SCHEDULES)
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
    amp_dtype: str = param("auto", choices=AMP_DTYPES)
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
    backend: str = param("auto", choices=EVAL_BACKENDS)
    ims_per_batch: int = param(8, **AT_LEAST_ONE)
    # confusion_matrix.png counts the detections that score at least this
    confusion_score_thresh: float = param(0.3, **FRACTION)


@dataclass
class ExportConfig:
    # the ONNX opset of `detector export` (--opset sets it): Resize with computed sizes and
    # NonMaxSuppression need 11; the newest depends on PyTorch's exporter (checked there)
    opset: int = param(17, ge=11)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    plugins: List[str] = field(default_factory=list)  # modules imported before building
    output_dir: str = param("output", pattern=r".*\S.*", text="a directory path")


def _component_sections(cls, prefix: str = "") -> Dict[str, str]:
    """``{dotted section: its default entry}`` for every registered entry's section of the schema."""
    found, hints = {}, typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "component" in f.metadata:
            found[prefix + f.name] = f.metadata["default"]
        elif dataclasses.is_dataclass(hints[f.name]):
            found.update(_component_sections(hints[f.name], f"{prefix}{f.name}."))
    return found


_DEFAULT_NAMES = _component_sections(Config)  # loss.cls, loss.box, model.matcher
_NAME_KEYS = {f"{section}.name" for section in _DEFAULT_NAMES}


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
    # An override that names another entry (loss.cls.name=varifocal) starts that entry afresh,
    # so it goes first: the overrides of that entry's keys, in any order, then apply to it.
    parsed = [parse_override(item) for item in overrides]
    for key, value in sorted(parsed, key=lambda kv: kv[0] not in _NAME_KEYS):
        if key in _NAME_KEYS:
            section = key.rsplit(".", 1)[0]
            parent = data
            for part in section.split(".")[:-1]:
                parent = parent.get(part) if isinstance(parent.get(part), dict) else {}
            _start_entry(parent, section.rsplit(".", 1)[-1], section, value, origins)
        _set_dotted(data, key, value)
        origins[key] = OVERRIDE
    plugins = data.get("plugins")
    load_plugins(plugins if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins) else ())
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
        _merge(merged, base_data, origins)
        origins.update(base_origins)
    _merge(merged, raw, origins)
    origins.update(_key_paths(raw, path))
    return merged, origins


def _merge(dst: Dict[str, Any], src: Dict[str, Any], origins: Dict[str, str], prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst``: mappings merge, anything else replaces; a registered
    entry's section that ``src`` gives another ``name`` starts afresh (:func:`_start_entry`)."""
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and "name" in value:
            _start_entry(dst, key, dotted, value["name"], origins)
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, origins, dotted + ".")
        else:
            dst[key] = value


def _start_entry(parent: Dict[str, Any], key: str, section: str, name: Any, origins: Dict[str, str]) -> None:
    """Where a later file or an override names another entry for ``section`` (``loss.cls``,
    ``parent[key]``), drop what earlier files set there: the new entry starts from its own
    defaults, and keys given beside its name must be its own (``loss.cls: {name: varifocal}``
    over a focal base does not inherit the focal loss's alpha)."""
    node = parent.get(key)
    if section in _DEFAULT_NAMES and isinstance(node, dict) and node.get("name", _DEFAULT_NAMES[section]) != name:
        node.clear()
        for dotted in [k for k in origins if k.startswith(section + ".")]:
            del origins[dotted]


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


def from_dict(cls, data: Any, origins: Optional[Dict[str, str]] = None, prefix: str = "", entry: str = ""):
    """Build dataclass ``cls`` from nested dicts, checking every key and type (``entry``: the
    registered entry whose config ``cls`` is, for the messages)."""
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
            under = f" of {entry}" if entry else f" under {prefix.rstrip('.')}" if prefix else ""
            raise ConfigError(f"unknown config key '{dotted}'{_where(origins, dotted)}; valid keys{under}: {valid}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = f"{prefix}{f.name}"
            if "component" in f.metadata:
                kwargs[f.name] = _component(f.metadata["component"], data[f.name], key, origins)
                continue
            kwargs[f.name] = value = _coerce(hints[f.name], data[f.name], key, origins)
            rule = f.metadata.get("rule")
            if rule is not None:
                _check_rule(rule, value, key, origins)
    return cls(**kwargs)


def _component(kind: str, data: Any, key: str, origins: Dict[str, str]) -> ComponentConfig:
    """A registered entry's section (``loss.cls``): its ``name`` picks the entry, whose own
    config dataclass checks the other keys. A section written by an earlier version, which
    held every loss's keys in one shared config, loads with the keys its entry lacks dropped."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{key}' must be a mapping with a name, got {data!r}{_where(origins, key)}")
    name = data.get("name", _DEFAULT_NAMES[key])
    if not isinstance(name, str) or name not in REGISTRY.names(kind):
        raise ConfigError(f"config key '{key}.name' must be one of {', '.join(REGISTRY.names(kind))} (or a "
                          f"plugin's name), got {name!r}{_where(origins, key + '.name')}")
    config_class = component_class(kind, name)
    own = {f.name for f in dataclasses.fields(config_class)}
    if set(data) >= _SHARED_KEYS[key] and set(data) - own:  # a whole section of the shared schema
        logger.info("%s: the keys %s of the earlier shared config are not %s's: dropped", key,
                    ", ".join(sorted(set(data) - own)), name)
        # null there meant "the loss's own default", which is now its config's default
        data = {k: v for k, v in data.items() if k in own and v is not None}
    section = from_dict(config_class, {**data, "name": name}, origins, key + ".", f"{kind} '{name}'")
    problem = section.problem()
    if problem is not None:
        inner, allowed, value = problem
        raise ConfigError(f"config key '{key}.{inner}' must be {allowed}, got {value!r}"
                          f"{_where(origins, f'{key}.{inner}')}")
    return section


# The keys of the one config every entry of a section shared before each declared its own: what
# the runs of earlier versions saved.
_SHARED_KEYS = {
    "loss.cls": {"name", "alpha", "gamma", "beta", "epsilon", "bins", "momentum"},
    "loss.box": {"name", "beta", "weight"},
    "model.matcher": {"name", "fg_iou_thresh", "bg_iou_thresh", "allow_low_quality_matches", "topk"},
}


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
