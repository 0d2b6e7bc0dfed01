"""The RetinaNet model; :func:`build_model` is the one place that reads ``cfg.model``."""
from ..config import ConfigError, resize_in_training, where_set
from ..losses import build_box_loss, build_cls_loss
from ..registry import REGISTRY, load_plugins
from . import backbone as _backbone  # noqa: F401  (registers the ResNets)
from .anchors import AnchorGenerator
from .atss import ATSSMatcher
from .box_coder import BoxCoder
from .fpn import FPN
from .head import RetinaNetHead
from .matcher import Matcher
from .preprocess import Preprocessor
from .retinanet import RetinaNet

PYRAMID_STRIDES = (8, 16, 32, 64, 128)  # P3..P7


def build_anchor_generator(cfg) -> AnchorGenerator:
    """``cfg.model.anchors`` -> the generator the model, the anchor statistics and the export use."""
    a = cfg.model.anchors
    sizes = ([list(s) for s in a.sizes] if a.sizes is not None
             else [[base * scale for scale in a.scales] for base in a.base_sizes])
    return AnchorGenerator(sizes, a.aspect_ratios, PYRAMID_STRIDES, round_to_int=a.round_to_int,
                           stride_mode=a.stride_mode)


def build_matcher(cfg):
    """``cfg.model.matcher`` -> the anchor-to-box assignment of training and the anchor
    statistics (:class:`Matcher`, :class:`ATSSMatcher` or a plugin's)."""
    return REGISTRY.build("matcher", cfg.model.matcher)


def build_preprocessor(cfg) -> Preprocessor:
    return Preprocessor(cfg.model.pixel_mean, cfg.model.pixel_std, cfg.input.min_size, cfg.input.max_size,
                        cfg.input.size_divisible, resize_in_training(cfg))


def check_names(cfg) -> None:
    """The backbone the config names exists (plugins imported first): what the schema cannot
    check, since plugins add names. (The losses and the matcher are checked when the config
    loads, against their own configs.) A :class:`ConfigError` names the key otherwise."""
    load_plugins(cfg.plugins)
    name = cfg.model.backbone.name
    if name not in REGISTRY.names("backbone"):
        raise ConfigError(f"config key 'model.backbone.name' must be one of {', '.join(REGISTRY.names('backbone'))} "
                          f"(or a plugin's name), got {name!r}{where_set(cfg, 'model.backbone.name')}")


def build_model(cfg) -> RetinaNet:
    load_plugins(cfg.plugins)
    m = cfg.model
    cls_loss = build_cls_loss(cfg)
    backbone = REGISTRY.get("backbone", m.backbone.name)(cfg)
    anchor_generator = build_anchor_generator(cfg)
    num_logits = m.num_classes + 1 if cls_loss.background_logit else m.num_classes
    return RetinaNet(
        backbone=backbone,
        fpn=FPN(backbone.out_channels, m.fpn.out_channels, m.fpn.p6_from),
        head=RetinaNetHead(m.fpn.out_channels, anchor_generator.num_anchors, num_logits, m.head.num_convs,
                           m.head.norm, m.head.prior_prob),
        anchor_generator=anchor_generator,
        preprocessor=build_preprocessor(cfg),
        cls_loss=cls_loss,
        box_loss=build_box_loss(cfg),
        num_classes=m.num_classes,
        matcher=build_matcher(cfg),
        box_coder=BoxCoder(m.box_coder.weights, m.box_coder.scale_clamp),
        box_loss_weight=cfg.loss.box.weight,
        normalizer_momentum=cfg.loss.normalizer_momentum,
        score_thresh=m.inference.score_thresh,
        topk_candidates=m.inference.topk_candidates,
        nms_thresh=m.inference.nms_thresh,
        max_detections_per_image=m.inference.max_detections_per_image,
        channels_last=m.channels_last,
    )


__all__ = ["ATSSMatcher", "AnchorGenerator", "BoxCoder", "FPN", "Matcher", "PYRAMID_STRIDES", "Preprocessor",
           "RetinaNet", "RetinaNetHead", "build_anchor_generator", "build_matcher", "build_model",
           "build_preprocessor", "check_names"]
