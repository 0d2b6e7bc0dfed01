"""Per-element targets for the losses written on ``[N, R, K]`` tensors (the successors of the
focal loss): one-hot class targets from the matcher's labels, optionally soft."""
from typing import Optional, Tuple

import torch
from torch import Tensor


def at_least_float32(x: Tensor) -> Tensor:
    """Half and bfloat16 are computed in float32; float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def element_targets(logits: Tensor, gt_labels: Tensor, quality: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """For ``logits`` ``[..., K]`` and ``gt_labels`` ``[...]`` (0..K-1 object class, K
    background, -1 ignored): targets ``[..., K]`` (1 at the object's class, or its ``quality``
    ``[...]`` where given; 0 elsewhere) and ``valid`` ``[..., 1]`` (0 for ignored anchors), in
    the dtype the loss computes in (at least float32)."""
    num_classes, dtype = logits.shape[-1], at_least_float32(logits).dtype
    # a comparison, not F.one_hot, which checks its input's range and so waits for the GPU;
    # background (K) and ignored (-1) labels match no class
    one_hot = (gt_labels[..., None] == torch.arange(num_classes, device=gt_labels.device)).to(dtype)
    if quality is not None:
        one_hot = one_hot * quality.to(dtype)[..., None]
    return one_hot, (gt_labels >= 0).to(dtype)[..., None]
