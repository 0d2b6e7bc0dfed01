"""Reading and writing checkpoints, and converting other frameworks' weights."""
import os
from typing import Any, Dict

import torch

from .modeling.convert import convert_torchvision_retinanet


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model state dict in ``path``: a checkpoint ``{"model": ...}`` or a bare state dict.

    Only tensors and plain containers are read (``weights_only=True``): a file that would run
    code when unpickled is refused.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError here
        raise ValueError(
            f"{path} is not a readable checkpoint: it is damaged, or holds objects other than "
            f"tensors, which are refused for safety ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path} holds no model state dict")
    return data


def convert_checkpoint(source: str, input_path: str, output_path: str) -> int:
    """Convert ``input_path`` from ``source``'s layout and save ``{"model": state}``;
    returns the number of tensors written."""
    if source != "torchvision":
        raise ValueError(f"unknown source '{source}'; valid: torchvision")
    state = convert_torchvision_retinanet(load_state_dict(input_path))
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    torch.save({"model": state}, output_path)
    return len(state)
