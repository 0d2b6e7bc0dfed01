"""ResNet backbones from torchvision, returning C3, C4, C5 (strides 8, 16, 32)."""
import logging
import os
import urllib.error
from typing import List

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from ..errors import UserError
from ..registry import REGISTRY
from ..serialization import safe_torch_load, state_dict_mismatch
from .norm import group_norm

logger = logging.getLogger(__name__)

NORMS = ("frozen_bn", "bn", "gn")


def _norm_layer(norm: str, eps: float):
    if norm == "frozen_bn":
        return lambda channels: FrozenBatchNorm2d(channels, eps=eps)
    if norm == "bn":
        return lambda channels: nn.BatchNorm2d(channels, eps=eps)
    if norm == "gn":
        return lambda channels: group_norm(channels, eps)
    raise UserError(f"model.backbone.norm must be one of {', '.join(NORMS)}, got '{norm}'")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier; ``forward`` returns ``[C3, C4, C5]``.

    The submodules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``),
    so torchvision's ImageNet state dicts load as they are.
    """

    def __init__(self, depth: int = 50, norm: str = "frozen_bn", norm_eps: float = 1e-5,
                 freeze_at: int = 2) -> None:
        super().__init__()
        arch = f"resnet{depth}"
        if not hasattr(torchvision.models, arch):
            raise UserError(f"no torchvision ResNet of depth {depth}")
        resnet = getattr(torchvision.models, arch)(weights=None, norm_layer=_norm_layer(norm, norm_eps))
        self.arch = arch
        self.conv1, self.bn1, self.maxpool = resnet.conv1, resnet.bn1, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        expansion = 4 if depth >= 50 else 1
        self.out_channels: List[int] = [128 * expansion, 256 * expansion, 512 * expansion]
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Freeze the stem (``freeze_at >= 1``) and res2..res_k (``freeze_at = k``).

        Frozen stages also get frozen normalisation statistics: a trainable BatchNorm in a
        frozen stage would still drift with every batch.
        """
        if not 0 <= freeze_at <= 5:
            raise UserError(f"model.backbone.freeze_at must be in 0..5, got {freeze_at}")
        if freeze_at >= 1:
            for p in [*self.conv1.parameters(), *self.bn1.parameters()]:
                p.requires_grad_(False)
            self.bn1 = _frozen(self.bn1)
        for stage in [self.layer1, self.layer2, self.layer3, self.layer4][: max(freeze_at - 1, 0)]:
            for p in stage.parameters():
                p.requires_grad_(False)
            _freeze_batchnorm(stage)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.maxpool(F.relu(conv_norm(self.conv1, self.bn1, x)))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = _residual_block(block, x)
            features.append(x)
        return features[1:]  # C3, C4, C5


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))``. A frozen BatchNorm is an affine map per channel, so it is folded
    into the convolution's weights and bias: one pass over the activations instead of three
    (conv, multiply, add), forward and backward; the result is the same up to rounding."""
    if not isinstance(norm, FrozenBatchNorm2d):
        return norm(conv(x))
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return F.conv2d(x, conv.weight * scale[:, None, None, None], shift, conv.stride, conv.padding,
                    conv.dilation, conv.groups)


def _residual_block(block: nn.Module, x: Tensor) -> Tensor:
    """torchvision's Bottleneck / BasicBlock forward, with :func:`conv_norm` for conv + norm."""
    if isinstance(block, torchvision.models.resnet.Bottleneck):
        out = F.relu(conv_norm(block.conv1, block.bn1, x), inplace=True)
        out = F.relu(conv_norm(block.conv2, block.bn2, out), inplace=True)
        out = conv_norm(block.conv3, block.bn3, out)
    else:
        out = F.relu(conv_norm(block.conv1, block.bn1, x), inplace=True)
        out = conv_norm(block.conv2, block.bn2, out)
    identity = x if block.downsample is None else conv_norm(block.downsample[0], block.downsample[1], x)
    return F.relu(out + identity, inplace=True)


def _frozen(module: nn.Module) -> nn.Module:
    """A BatchNorm2d as a FrozenBatchNorm2d with the same statistics; anything else as it is."""
    if not isinstance(module, nn.BatchNorm2d):
        return module
    frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
    frozen.weight.copy_(module.weight.detach())
    frozen.bias.copy_(module.bias.detach())
    frozen.running_mean.copy_(module.running_mean)
    frozen.running_var.copy_(module.running_var)
    return frozen


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every BatchNorm2d below ``module`` by a frozen copy."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _frozen(child))
        else:
            _freeze_batchnorm(child)


def load_backbone_weights(backbone: ResNetBackbone, weights: str) -> None:
    """Load ImageNet weights: a torchvision weights name or a local ``.pth`` file."""
    if os.path.isfile(weights):
        state = safe_torch_load(weights)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        source = weights
    elif os.sep in weights or weights.endswith((".pth", ".pt")):
        raise FileNotFoundError(f"model.backbone.weights: no such file: {weights}")
    else:
        state, source = _torchvision_state_dict(backbone.arch, weights), f"torchvision {weights}"
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    # BatchNorm counters may be absent (FrozenBatchNorm) or extra (plain BatchNorm): not weights
    missing, unexpected, wrong = state_dict_mismatch(backbone.state_dict(), state, "num_batches_tracked")
    if missing or unexpected or wrong:
        raise UserError(
            f"model.backbone.weights: {source} does not fit {backbone.arch}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape "
            f"(first: {(missing + unexpected + wrong)[0]})"
        )
    backbone.load_state_dict(state, strict=False)
    logger.info("loaded backbone weights from %s", source)


def _torchvision_state_dict(arch: str, name: str) -> dict:
    try:
        if "." in name:
            spec = torchvision.models.get_weight(name)
        else:
            spec = torchvision.models.get_model_weights(arch)[name]
    except (KeyError, ValueError):
        valid = [w.name for w in torchvision.models.get_model_weights(arch)]
        raise UserError(
            f"model.backbone.weights: '{name}' is neither a file nor a torchvision weights name "
            f"for {arch} (valid: {', '.join(valid)})"
        ) from None
    try:
        return spec.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise UserError(
            f"could not download the torchvision weights {spec} ({e}). This machine may be "
            f"offline: download {spec.url} on a machine with internet access and pass the file, "
            f"e.g. model.backbone.weights=/path/to/{os.path.basename(spec.url)}"
        ) from None


def _register_resnet(depth: int) -> None:
    @REGISTRY.register("backbone", f"resnet{depth}")
    def build(cfg) -> ResNetBackbone:
        b = cfg.model.backbone
        backbone = ResNetBackbone(depth, norm=b.norm, norm_eps=b.norm_eps, freeze_at=b.freeze_at)
        if b.weights:
            load_backbone_weights(backbone, b.weights)
        return backbone


for _depth in (18, 34, 50, 101):
    _register_resnet(_depth)
