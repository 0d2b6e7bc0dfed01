"""Model weights from files: a checkpoint of this package, a bare state dict, or a
torchvision RetinaNet state dict, read safely (tensors only). :func:`load_model_weights`
loads them whole and says what does not fit (eval, predict, export); :func:`load_pretrained`
loads what fits, to fine-tune (``model.weights``)."""
import os
from dataclasses import dataclass, field
from typing import Dict, List

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


def is_torchvision_retinanet(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("backbone.body.", "head.classification_head.")) for k in state)


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor."""

    source: str
    total: int  # tensors of the model
    loaded: List[str] = field(default_factory=list)
    reinitialised: List[str] = field(default_factory=list)  # in both, another shape: "key (file) -> (model)"
    left_out: List[str] = field(default_factory=list)  # in the file, not in the model
    not_in_file: List[str] = field(default_factory=list)  # in the model, not in the file: its init kept

    def describe(self) -> str:
        lines = [f"model.weights {self.source}: loaded {len(self.loaded)} of the model's {self.total} tensors"]
        if self.reinitialised:
            lines.append("re-initialised (another shape: the class or anchor count differs): "
                         + ", ".join(self.reinitialised))
        for title, keys in (("left out (not in this model)", self.left_out),
                            ("not in the file (initialised as for training from scratch)", self.not_in_file)):
            if keys:
                lines.append(f"{title}: {len(keys)}: " + ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else ""))
        return "\n  ".join(lines)


def load_pretrained(model: torch.nn.Module, path: str) -> LoadReport:
    """Initialise ``model`` from the detector weights in ``path`` (a checkpoint of this package
    or a torchvision RetinaNet state dict, converted on the fly) wherever they fit: every
    tensor of the same name and shape is loaded. The rest keep the initialisation of training
    from scratch; in particular a classification layer for another class count keeps its
    prior-probability bias, and a box layer for another anchor count its fresh weights. The
    report says which tensors went which way (the trainer logs it)."""
    state = load_state_dict(path)
    if is_torchvision_retinanet(state):
        state = convert_torchvision_retinanet(state)
    own = model.state_dict()
    report = LoadReport(
        path, len(own), loaded=sorted(k for k in state if k in own and state[k].shape == own[k].shape),
        reinitialised=sorted(f"{k} {tuple(state[k].shape)} -> {tuple(own[k].shape)}" for k in state
                             if k in own and state[k].shape != own[k].shape),
        left_out=sorted(k for k in state if k not in own),
        not_in_file=sorted(k for k in own if k not in state))
    if not any(k.startswith("backbone.") for k in report.loaded):
        raise UserError(f"model.weights: {path} shares no backbone tensor with this model ({len(report.loaded)} "
                        f"of {len(own)} tensors fit): not weights of this architecture (model.backbone.name, "
                        f"model.fpn.out_channels ...)?")
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report


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
