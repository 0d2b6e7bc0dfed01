"""The one registry: the parts a user plugs in, found by kind and name.

Kinds: ``cls_loss`` (classification losses), ``box_loss`` (box regression losses),
``matcher`` (anchor assignment) and ``backbone``. An entry of the first three declares its
own typed config beside its code, a dataclass derived from
:class:`~detector.config.ComponentConfig` (fields, defaults, valid ranges), and its factory
takes that config::

    @dataclass
    class MyLossConfig(ComponentConfig):
        scale: float = param(1.0, gt=0)

    @REGISTRY.register("cls_loss", "my_loss", config=MyLossConfig)
    def build_my_loss(c: MyLossConfig):
        return MyLoss(scale=c.scale)

``loss.cls: {name: my_loss, scale: 2}`` is then checked against those fields. Backbones take
the whole config (they share ``model.backbone``).

Entries register themselves when their module is imported: the package's own are in
:data:`BUILTIN_MODULES`, imported before a config is read (as a plugin package's modules are);
third-party ones through the ``detector.plugins`` entry-point group or a
``plugins: [module, ...]`` list in the config.
"""
import importlib
import logging
from importlib import metadata
from typing import Callable, Dict, Iterable, NamedTuple, Optional

from .errors import UserError

logger = logging.getLogger(__name__)

KINDS = ("cls_loss", "box_loss", "matcher", "backbone")
ENTRY_POINT_GROUP = "detector.plugins"
# The package's own entries, registered when these modules are imported. Imported by name, like
# the plugins: the registry sits below the layers that fill it.
BUILTIN_MODULES = ("detector.losses", "detector.modeling")


class Entry(NamedTuple):
    factory: Callable
    config: Optional[type]  # the entry's own config dataclass (None for backbones)


class Registry:
    def __init__(self) -> None:
        self._entries: Dict[str, Dict[str, Entry]] = {kind: {} for kind in KINDS}

    def register(self, kind: str, name: str, config: Optional[type] = None) -> Callable[[Callable], Callable]:
        """Decorator: ``@REGISTRY.register("cls_loss", "my_loss", config=MyLossConfig)`` on a
        class or factory that takes that config. ``config`` None: the entry has no keys but
        ``name`` (backbones: the whole config is passed)."""
        table = self._table(kind)

        def add(obj: Callable) -> Callable:
            if name in table and table[name].factory is not obj:
                raise UserError(f"{kind} '{name}' is registered twice ({table[name].factory} and {obj})")
            table[name] = Entry(obj, config)
            return obj

        return add

    def get(self, kind: str, name: str) -> Callable:
        return self.entry(kind, name).factory

    def config_class(self, kind: str, name: str) -> Optional[type]:
        """The config dataclass ``name`` declared (None: it declared none)."""
        return self.entry(kind, name).config

    def build(self, kind: str, config):
        """The object of the entry that ``config`` (an entry's config, with its ``name``) selects."""
        return self.get(kind, config.name)(config)

    def entry(self, kind: str, name: str) -> Entry:
        load_builtins()
        table = self._table(kind)
        if name not in table:
            valid = ", ".join(sorted(table)) or "(none)"
            raise UserError(f"unknown {kind} '{name}'; valid names: {valid}")
        return table[name]

    def names(self, kind: str) -> list:
        load_builtins()
        return sorted(self._table(kind))

    def _table(self, kind: str) -> Dict[str, Callable]:
        if kind not in self._entries:
            raise UserError(f"unknown registry kind '{kind}'; valid kinds: {', '.join(KINDS)}")
        return self._entries[kind]


REGISTRY = Registry()


def load_builtins() -> None:
    """Import the package's own entries (once: Python keeps imported modules)."""
    for name in BUILTIN_MODULES:
        importlib.import_module(name)


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the package's own entries, the modules named in the config and every
    ``detector.plugins`` entry point."""
    load_builtins()
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"plugin module '{name}' from the config 'plugins' list: {e}") from e
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        logger.debug("loading plugin %s", entry_point.value)
        entry_point.load()
