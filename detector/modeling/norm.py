"""The normalisation layer the head and the backbone share."""
from torch import nn


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with 32 groups (the GN paper's choice) for 128+ channels, and groups of at
    least 4 channels below that, so that a 1x1 map (P7 of a small image) still normalises
    over more than one value."""
    return nn.GroupNorm(max(1, min(32, channels // 4)), channels, eps=eps)
