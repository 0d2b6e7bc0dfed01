"""Reading a run's files safely: ``.pth`` files with tensors and plain containers only, and
JSON-lines logs that a killed process may have left with a half-written last line."""
import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import torch

from .errors import UserError

logger = logging.getLogger(__name__)


def read_jsonl(path: str) -> List[Dict[str, Any]]:
    """The rows of a JSON-lines file. A line that is not JSON (the last one, cut short when the
    process that wrote it was killed or its node went down) is skipped with a warning."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s: line %d is not JSON (cut short by a process that was killed?): skipped",
                               path, number)
    return rows


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
        raise UserError(
            f"{path} is not a readable checkpoint: it is damaged, or holds objects other than "
            f"tensors, which are refused for safety ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None


def state_dict_mismatch(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor],
                        ignore_suffix: Optional[str] = None) -> Tuple[List[str], List[str], List[str]]:
    """Keys of ``own`` missing from ``state``, keys of ``state`` that ``own`` lacks, and
    shared keys whose shapes differ (each sorted); keys ending in ``ignore_suffix`` (when
    given) are counted on neither side."""
    own_keys = {k for k in own if not (ignore_suffix and k.endswith(ignore_suffix))}
    state_keys = {k for k in state if not (ignore_suffix and k.endswith(ignore_suffix))}
    wrong = sorted(k for k in own_keys & state_keys if own[k].shape != state[k].shape)
    return sorted(own_keys - state_keys), sorted(state_keys - own_keys), wrong
