"""Loading ``.pth`` files safely: tensors and plain containers only."""
import os
from typing import Any

import torch


def safe_torch_load(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` with errors a user can act on.

    A file that would run code when unpickled (any object other than tensors, numbers,
    strings and plain containers) is refused.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError here
        raise ValueError(
            f"{path} is not a readable checkpoint: it is damaged, or holds objects other than "
            f"tensors, which are refused for safety ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
