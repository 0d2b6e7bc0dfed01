"""The RetinaNet model; :func:`build_model` is the one place that reads ``cfg.model``."""
from ..data.transforms import resize_in_training
from ..losses import build_box_loss, build_cls_loss
from ..registry import REGISTRY, load_plugins
from . import backbone as _backbone  # noqa: F401  (registers the ResNets)
from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .fpn import FPN
from .head import RetinaNetHead
from .matcher import Matcher
from .preprocess import Preprocessor
from .retinanet import RetinaNet

PYRAMID_STRIDES = (8, 16, 32, 64, 128)  # P3..P7


def anchor_sizes(cfg) -> list:
    """Per-level anchor size lists: ``model.anchors.sizes`` or base_sizes x scales."""
    a = cfg.model.anchors
    if a.sizes is not None:
        return [list(s) for s in a.sizes]
    return [[base * scale for scale in a.scales] for base in a.base_sizes]


def build_model(cfg) -> RetinaNet:
    load_plugins(cfg.plugins)
    m = cfg.model
    cls_loss = build_cls_loss(cfg)
    backbone = REGISTRY.get("backbone", m.backbone.name)(cfg)
    fpn = FPN(backbone.out_channels, m.fpn.out_channels, m.fpn.p6_from)
    anchor_generator = AnchorGenerator(
        anchor_sizes(cfg), m.anchors.aspect_ratios, PYRAMID_STRIDES,
        round_to_int=m.anchors.round_to_int, stride_mode=m.anchors.stride_mode,
    )
    num_logits = m.num_classes + 1 if cls_loss.background_logit else m.num_classes
    head = RetinaNetHead(m.fpn.out_channels, anchor_generator.num_anchors, num_logits,
                         m.head.num_convs, m.head.norm, m.head.prior_prob)
    return RetinaNet(
        backbone=backbone,
        fpn=fpn,
        head=head,
        anchor_generator=anchor_generator,
        preprocessor=Preprocessor(m.pixel_mean, m.pixel_std, cfg.input.min_size, cfg.input.max_size,
                                  cfg.input.size_divisible, resize_in_training(cfg)),
        cls_loss=cls_loss,
        box_loss=build_box_loss(cfg),
        num_classes=m.num_classes,
        matcher=Matcher(m.matcher.fg_iou_thresh, m.matcher.bg_iou_thresh,
                        m.matcher.allow_low_quality_matches),
        box_coder=BoxCoder(m.box_coder.weights, m.box_coder.scale_clamp),
        box_loss_weight=cfg.loss.box.weight,
        normalizer_momentum=cfg.loss.normalizer_momentum,
        score_thresh=m.inference.score_thresh,
        topk_candidates=m.inference.topk_candidates,
        nms_thresh=m.inference.nms_thresh,
        max_detections_per_image=m.inference.max_detections_per_image,
        channels_last=m.channels_last,
    )


__all__ = ["AnchorGenerator", "BoxCoder", "FPN", "Matcher", "Preprocessor", "RetinaNet",
           "RetinaNetHead", "anchor_sizes", "build_model"]
