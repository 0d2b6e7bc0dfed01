"""Model weights from files: a checkpoint of this package, a bare state dict, or a
torchvision RetinaNet state dict, read safely (tensors only) and checked against the model."""
import os
from typing import Dict

import torch

from ..errors import UserError
from ..serialization import safe_torch_load, state_dict_mismatch
from .convert import convert_torchvision_retinanet


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model state dict in ``path``: a checkpoint ``{"model": ...}`` or a bare state dict.

    Only tensors and plain containers are read (``weights_only=True``): a file that would run
    code when unpickled is refused.
    """
    data = safe_torch_load(path)
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path} holds no model state dict")
    return data


def load_model_weights(model: torch.nn.Module, path: str) -> None:
    """Load ``path`` into ``model``; a checkpoint of another architecture or class count is an
    error that says which tensors do not fit."""
    state = load_state_dict(path)
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise UserError(f"{path} does not fit the model of this config: {problem}")
    model.load_state_dict(state)


def describe_mismatch(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]) -> str:
    """Which tensors of ``state`` do not fit a model whose state dict is ``own``, with their
    shapes ("" when all fit)."""
    missing, unexpected, wrong = state_dict_mismatch(own, state)
    if not (missing or unexpected or wrong):
        return ""
    parts = [f"{len(missing)} tensors missing, {len(unexpected)} unexpected, {len(wrong)} of another shape"]
    parts += [f"{k}: {tuple(state[k].shape)} in the checkpoint, {tuple(own[k].shape)} in the model" for k in wrong[:3]]
    parts += [f"missing: {', '.join(missing[:3])}"] if missing else []
    parts += [f"unexpected: {', '.join(unexpected[:3])}"] if unexpected else []
    message = "; ".join(parts) + "."
    if any(k.startswith("head.cls_score") for k in wrong):
        message += (f" The classification layer has {state['head.cls_score.weight'].shape[0]} outputs in the "
                    f"checkpoint and {own['head.cls_score.weight'].shape[0]} in the model: check model.num_classes "
                    "and loss.cls.name.")
    return message


def convert_checkpoint(source: str, input_path: str, output_path: str) -> int:
    """Convert ``input_path`` and save the result; returns the number of tensors written.

    ``torchvision``: a torchvision RetinaNet state dict -> ``{"model": state}`` for our model.
    ``backbone``: one of our checkpoints -> its ResNet's state dict alone, in torchvision's
    ResNet key layout, which ``model.backbone.weights`` loads: a trained detector's backbone
    as the starting point of another detector (as an ImageNet-trained one would be).
    """
    state = load_state_dict(input_path)
    if source == "torchvision":
        converted = convert_torchvision_retinanet(state)
        saved = {"model": converted}
    elif source == "backbone":
        converted = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        if not converted:
            raise UserError(f"{input_path} holds no backbone.* tensors: not a checkpoint of this package")
        saved = converted
    else:
        raise UserError(f"unknown source '{source}'; valid: torchvision, backbone")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    torch.save(saved, output_path)
    return len(converted)
