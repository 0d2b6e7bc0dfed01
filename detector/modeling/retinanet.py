"""RetinaNet: backbone -> FPN -> head, with batched matching and losses (training) or
decoding and NMS (inference)."""
import math
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..structures import box_iou_aligned
from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .head import RetinaNetHead
from .matcher import BACKGROUND, IGNORE, Matcher
from .postprocess import postprocess_detections
from .preprocess import Preprocessor, rescale_boxes


class RetinaNet(nn.Module):
    """``model(images, targets=None)`` like torchvision's detection models.

    ``images`` is a list of ``[3, H_i, W_i]`` float tensors in 0..1 (or uint8 in 0..255). In training mode
    ``targets`` is a list of ``{"boxes": [G_i, 4] xyxy in input pixels, "labels": [G_i]
    int64 in 0..K-1}`` and the result is ``{"loss_cls", "loss_box"}``; in eval mode the
    result is a list of ``{"boxes", "scores", "labels"}`` with boxes in input pixels.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        fpn: nn.Module,
        head: RetinaNetHead,
        anchor_generator: AnchorGenerator,
        preprocessor: Preprocessor,
        cls_loss,
        box_loss,
        num_classes: int,
        matcher=None,
        box_coder: Optional[BoxCoder] = None,
        box_loss_weight: float = 1.0,
        normalizer_momentum: float = 0.0,
        score_thresh: float = 0.05,
        topk_candidates: int = 1000,
        nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.head = head
        self.anchor_generator = anchor_generator
        self.preprocessor = preprocessor
        self.cls_loss = cls_loss  # an nn.Module (one with state: ghm_c) is a submodule, saved with the weights
        self.background_logit = getattr(cls_loss, "background_logit", False)  # a softmax head: K + 1 logits
        self.box_loss = box_loss
        self.num_classes = num_classes
        self.matcher = matcher or Matcher()
        self.box_coder = box_coder or BoxCoder()
        self.box_loss_weight = box_loss_weight
        self.normalizer_momentum = normalizer_momentum
        # EMA of the foreground count (detectron2 starts it at 100); unused when momentum is 0.
        # Saved with the weights so that a resumed run continues the same average.
        self.register_buffer("fg_normalizer", torch.tensor(100.0))
        self.score_thresh = score_thresh
        self.topk_candidates = topk_candidates
        self.nms_thresh = nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        if self.training and targets is None:
            raise ValueError("training mode needs targets; call model.eval() for detections")
        out = self.dense_outputs(images, targets if self.training else None)
        if self.training:
            return self.losses(out["logits"], out["deltas"], out["anchors"], out["level_sizes"], out["targets"])
        detections = postprocess_detections(
            out["logits"], self.class_scores, out["deltas"], out["anchors"], out["level_sizes"], out["image_sizes"],
            self.box_coder, self.score_thresh, self.topk_candidates, self.nms_thresh, self.max_detections_per_image,
            self.min_logit(self.score_thresh),
        )
        for det, resized, image in zip(detections, out["image_sizes"], images):
            det["boxes"] = rescale_boxes(det["boxes"], resized, (image.shape[-2], image.shape[-1]))
        return detections

    def dense_outputs(self, images: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None):
        """Everything before the losses or the post-processing: ``logits`` ``[N, R, C]``,
        ``deltas`` ``[N, R, 4]``, ``anchors`` ``[R, 4]`` and ``level_sizes`` (anchors per level),
        each image's size after resizing (``image_sizes``), and the ``targets`` scaled to it."""
        batch, image_sizes, targets = self.preprocessor(images, targets)
        batch = batch.contiguous(memory_format=self.memory_format)
        features = self.fpn(self.backbone(batch))
        logits, deltas = self.head(features)
        shapes = [tuple(f.shape[-2:]) for f in features]
        return {"logits": logits, "deltas": deltas, "anchors": self.anchor_generator(tuple(batch.shape[-2:]), shapes,
                                                                                     batch.device),
                "level_sizes": self.anchor_generator.level_sizes(shapes), "image_sizes": image_sizes,
                "targets": targets}

    def class_scores(self, logits: Tensor) -> Tensor:
        """``[..., C]`` logits -> ``[..., K]`` class probabilities (float32): independent
        sigmoids, or for a head with a background logit (last) the softmax without it."""
        logits = logits.float()
        return logits.softmax(dim=-1)[..., :-1] if self.background_logit else logits.sigmoid()

    def min_logit(self, score: float) -> Optional[float]:
        """The logit at which a class's score reaches ``score`` when scores are elementwise
        (sigmoids): inference then skips every anchor whose best logit is below it. None for a
        softmax, whose score depends on the whole row."""
        if self.background_logit or not 0.0 < score < 1.0:
            return None
        return math.log(score / (1.0 - score))

    def label_anchors(self, anchors: Tensor, level_sizes: List[int], targets: List[Dict[str, Tensor]]):
        """Match every anchor of the batch to the ground truth (``level_sizes``: anchors per
        pyramid level, which ATSS needs).

        Returns:
            gt_labels ``[N, R]``: 0..K-1 the matched class, K background, -1 ignored;
            matched_boxes ``[N, R, 4]``: the matched ground-truth box for foreground anchors
            and the anchor itself elsewhere (so that box targets stay finite everywhere).
        """
        device = anchors.device
        num_gt = max(1, max(len(t["boxes"]) for t in targets))  # >= 1 so gathers have a source
        gt_boxes = anchors.new_zeros(len(targets), num_gt, 4)
        gt_classes = torch.full((len(targets), num_gt), -1, dtype=torch.int64, device=device)
        for i, t in enumerate(targets):  # padding only; matching below is batched
            gt_boxes[i, : len(t["boxes"])] = t["boxes"].to(device, torch.float32)
            gt_classes[i, : len(t["labels"])] = t["labels"].to(device)
        matches = self.matcher.assign(anchors, gt_boxes, gt_classes >= 0, level_sizes,
                                      self.anchor_generator.num_anchors)  # [N, R]
        fg = matches >= 0
        index = matches.clamp(min=0)
        labels = gt_classes.gather(1, index)
        labels = torch.where(fg, labels, torch.where(matches == BACKGROUND, self.num_classes, IGNORE))
        matched = gt_boxes.gather(1, index[..., None].expand(-1, -1, 4))
        matched = torch.where(fg[..., None], matched, anchors[None])
        return labels, matched

    def losses(self, logits: Tensor, deltas: Tensor, anchors: Tensor, level_sizes: List[int],
               targets: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Classification and box loss for the batch, each divided by the number of foreground
        anchors in the batch (or an EMA of it), computed in float32. Under DDP each rank's
        loss is its share of the whole batch's loss times the number of ranks.

        A classification loss with ``uses_quality`` (Varifocal, Quality Focal) also gets each
        anchor's localisation quality: the IoU of its predicted box (detached) with its matched
        ground truth, ``[N, R]``, computed here on the device for the whole batch."""
        gt_labels, matched_boxes = self.label_anchors(anchors, level_sizes, targets)
        fg = (gt_labels >= 0) & (gt_labels < self.num_classes)
        num_fg = fg.sum().float()  # stays on the device: no host sync
        world_size = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Normalise by the foreground count of the whole distributed batch, and undo DDP's
            # averaging of gradients over ranks: the step is then the one a single process
            # would take on the whole batch.
            world_size = torch.distributed.get_world_size()
            torch.distributed.all_reduce(num_fg)
        if self.normalizer_momentum > 0:
            m = self.normalizer_momentum
            self.fg_normalizer = m * self.fg_normalizer + (1 - m) * num_fg
            normalizer = self.fg_normalizer
        else:
            normalizer = num_fg
        normalizer = normalizer.clamp(min=1.0) / world_size
        if getattr(self.cls_loss, "uses_quality", False):
            # in float32 at least (AMP), float64 stays float64
            predicted = self.box_coder.decode(deltas.detach().to(torch.promote_types(deltas.dtype, torch.float32)),
                                              anchors[None])
            quality = torch.where(fg, box_iou_aligned(predicted, matched_boxes), 0.0)
            loss_cls = self.cls_loss(logits, gt_labels, quality)
        else:
            loss_cls = self.cls_loss(logits, gt_labels)
        if not getattr(self.cls_loss, "normalized", False):  # GHM-C divides by its own count
            loss_cls = loss_cls / normalizer
        expanded = anchors[None].expand_as(matched_boxes)
        if getattr(self.box_loss, "normalized", False):  # GHM-R: weighs and divides its foreground itself
            loss_box = self.box_loss(deltas, expanded, matched_boxes, self.box_coder, fg)
        else:
            loss_box = (self.box_loss(deltas, expanded, matched_boxes, self.box_coder) * fg).sum() / normalizer
        return {"loss_cls": loss_cls, "loss_box": self.box_loss_weight * loss_box}
