"""The import graph of the package: layers only look down, and nothing imports in a circle.

Every import counts, also those inside functions (the CLI imports lazily). A unit is a
subpackage (``detector.modeling``) or a top-level module (``detector.export``); imports within
a unit are free, but not in a circle."""
import ast
import os

import detector

PACKAGE_DIR = os.path.dirname(detector.__file__)

# Lowest first. A unit may import units of lower layers only.
LAYERS = [
    {"errors", "version"},
    {"registry"},
    {"config", "comm", "structures", "serialization", "metadata", "progress"},
    {"data", "losses", "figures"},
    {"modeling"},
    {"evaluation", "analysis"},
    {"engine", "inference"},
    {"export", "check_data", "visualize"},
    {"ablation"},
    {"cli"},
    {"__main__", "__init__"},
]
LAYER = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _modules():
    """{dotted module name: path} for every module of the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                relative = os.path.relpath(os.path.join(root, name), os.path.dirname(PACKAGE_DIR))[:-3]
                parts = relative.split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(root, name)
    return found


def _imports(module: str, path: str, modules) -> set:
    """The package's modules that ``module`` imports, anywhere in its file."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # "from pkg import mod" imports the submodule; "from pkg import name" what pkg defines
            targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {t for t in targets if t in modules and t != module}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in _graph()} <= set(LAYER), {_unit(m) for m in _graph()} - set(LAYER)


def test_layers_only_look_down():
    upward = sorted(f"{src} -> {dst}" for src, targets in _graph().items() for dst in targets
                    if _unit(src) != _unit(dst) and LAYER[_unit(dst)] >= LAYER[_unit(src)])
    assert not upward, "imports that run up or sideways:\n" + "\n".join(upward)


def test_no_import_circle():
    graph, state, stack = _graph(), {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checks_can_fail():
    # the parser sees relative, absolute and function-level imports
    modules = _modules()
    trainer = _imports("detector.engine.trainer", modules["detector.engine.trainer"], modules)
    assert {"detector.evaluation", "detector.comm", "detector.engine.checkpoint"} <= trainer
    cli = _imports("detector.cli", modules["detector.cli"], modules)
    assert "detector.engine.trainer" in cli  # imported inside cmd_train
