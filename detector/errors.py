"""The project's error type for problems a user can fix, and the import of optional packages.

The CLI prints a :class:`UserError`'s message and exits with code 2; any other exception is
a bug and keeps its traceback (exit 1). Subclasses: ``config.ConfigError`` (a key or value of
the config), ``data.DatasetError`` (an annotation file or image), ``export.ExportError``,
``engine.lock.DirectoryInUse``, ``engine.checkpoint.CheckpointWriteError``.
It derives from ValueError, the type Python code expects for a bad argument value.
"""
import importlib
from types import ModuleType


class UserError(ValueError):
    """A problem the user can fix; the message says what, where, and what to do."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which of the project's extras installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{purpose} needs the '{module}' package, which is not installed: pip install "
                        f"'detector[{extra}]' (make installs every extra)") from None
