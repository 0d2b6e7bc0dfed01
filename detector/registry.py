"""The one registry: the parts a user plugs in, found by kind and name.

Kinds: ``cls_loss`` (classification losses), ``box_loss`` (box regression losses) and
``backbone``. Entries register themselves when their module is imported: the package's own
in ``detector.losses`` and ``detector.modeling.backbone`` (which ``detector.modeling`` imports),
third-party ones by importing :data:`REGISTRY` and calling ``REGISTRY.register(kind, name)``;
their modules are imported through the ``detector.plugins`` entry-point group or a
``plugins: [module, ...]`` list in the config.
"""
import importlib
import logging
from importlib import metadata
from typing import Callable, Dict, Iterable

from .errors import UserError

logger = logging.getLogger(__name__)

KINDS = ("cls_loss", "box_loss", "backbone")
ENTRY_POINT_GROUP = "detector.plugins"


class Registry:
    def __init__(self) -> None:
        self._entries: Dict[str, Dict[str, Callable]] = {kind: {} for kind in KINDS}

    def register(self, kind: str, name: str) -> Callable[[Callable], Callable]:
        """Decorator: ``@REGISTRY.register("cls_loss", "my_loss")`` on a class or factory."""
        table = self._table(kind)

        def add(obj: Callable) -> Callable:
            if name in table and table[name] is not obj:
                raise UserError(f"{kind} '{name}' is registered twice ({table[name]} and {obj})")
            table[name] = obj
            return obj

        return add

    def get(self, kind: str, name: str) -> Callable:
        table = self._table(kind)
        if name not in table:
            valid = ", ".join(sorted(table)) or "(none)"
            raise UserError(f"unknown {kind} '{name}'; valid names: {valid}")
        return table[name]

    def names(self, kind: str) -> list:
        return sorted(self._table(kind))

    def _table(self, kind: str) -> Dict[str, Callable]:
        if kind not in self._entries:
            raise UserError(f"unknown registry kind '{kind}'; valid kinds: {', '.join(KINDS)}")
        return self._entries[kind]


REGISTRY = Registry()


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the modules named in the config and every ``detector.plugins`` entry point."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"plugin module '{name}' from the config 'plugins' list: {e}") from e
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        logger.debug("loading plugin %s", entry_point.value)
        entry_point.load()
