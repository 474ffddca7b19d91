"""The library's shape, checked: small modules and functions, a declared layer order, task packages
that do not reach into each other, no import cycle, no private name imported across packages
(docs/architecture.md).

Imports are read anywhere in a module: at module level, inside functions (the lazy imports that
keep ``import nlp_transfer`` light) and under ``if TYPE_CHECKING:``. ``import a.b`` and
``from a import b`` both count; ``from pkg import name`` where ``name`` is a submodule is an import
of that submodule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlp_transfer"
ROOT = PACKAGE.name
TASKS = ("text", "vision", "adaptation")
# Task packages that may import another: domain adaptation trains a text classifier.
TASK_BUILDS_ON = {"adaptation": {"text"}}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80

# ------------------------------------------------------------------------------------------------
# The layer order, bottom to top. EDIT HERE when a package moves or is added.
#
# A "unit" is a subpackage (``nlp_transfer/data/``) or a top-level module (``nlp_transfer/api.py``)
# by its name; ``__init__`` is ``nlp_transfer/__init__.py`` itself. An entry is one unit or a
# tuple of units that share a layer. A unit may import units of its own layer or of a layer below,
# never above. Units of one layer may import each other, except the task packages (TASKS), which
# must not (test_task_packages_do_not_import_each_other; TASK_BUILDS_ON names the one exception).
# Names of units that do not exist yet are allowed, so that the list can lead a refactor; every
# unit that exists must be placed (test_every_unit_has_a_layer).
LAYERS: list[str | tuple[str, ...]] = [
    # leaves: import nothing of the library (registries, flag helpers, optional packages)
    ("args", "optional", "console", "tasks", "hub"),
    "metrics",  # classification, multi-label, regression (scikit-learn, scipy)
    "models",  # the block view of any encoder
    "data",  # reading labelled files and built-in sets: checks, labels, splits, samplers
    "transfer",  # the strategies and their mechanisms
    "training",  # the Trainer, its callbacks, the run's arguments
    "reporting",  # metrics.json, config.yaml, plots, the model card
    ("text", "vision"),  # the task packages: neither imports the other
    "adaptation",  # domain adaptation of a text classifier: builds on text
    "audit",  # label errors, duplicates, leakage, outliers of a labelled set: builds on text
    "serving",  # the HTTP server of a saved text model
    ("api", "search", "race", "export", "cli", "__main__", "__init__"),
]
# Known debts, named exactly so that they can only shrink: each entry must still exist (the test
# fails when one is paid off, so that it is removed here too).
UPWARD_ALLOWED: set[tuple[str, str]] = set()
CYCLES_ALLOWED: list[list[str]] = []
# Imports under ``if TYPE_CHECKING:`` never run, so they cannot make an import cycle at run time:
# test_no_import_cycle_between_modules exempts them. The layer check still counts them (a type
# from a higher layer in a signature is a dependency in the wrong direction); set this to False
# to exempt them there too.
LAYERS_COUNT_TYPE_CHECKING_IMPORTS = True


def _layer_of() -> dict[str, int]:
    layer = {}
    for i, entry in enumerate(LAYERS):
        for unit in (entry,) if isinstance(entry, str) else entry:
            assert unit not in layer, f"{unit} is in LAYERS twice"
            layer[unit] = i
    return layer


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    """One imported name (or module) of ``nlp_transfer`` by one module."""

    target: str  # the imported module (the submodule for ``from pkg import submodule``)
    name: str | None  # the imported name; None for ``import a.b``
    kind: str  # "module" (module level), "function" (inside a def) or "type_checking"
    line: int


@cache
def _modules() -> dict[str, Path]:
    """``{dotted module name: path}`` of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


@cache
def _tree(name: str) -> ast.Module:
    return ast.parse(_modules()[name].read_text(encoding="utf-8"))


def _module_of(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a module of the package."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in _modules():
            return ".".join(parts[:i])
    return None


def _under(nodes, predicate) -> set[int]:
    """ids of every node below a node of ``nodes`` that satisfies ``predicate``."""
    ids = set()
    for node in nodes:
        if predicate(node):
            for body in (node.body,) if isinstance(node, ast.If) else ([node],):
                for stmt in body:
                    ids |= {id(n) for n in ast.walk(stmt) if n is not node}
    return ids


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def _imports(name: str) -> tuple[Import, ...]:
    """Every import of an ``nlp_transfer`` module by module ``name``, wherever it stands."""
    tree, modules = _tree(name), _modules()
    nodes = list(ast.walk(tree))
    type_checking = _under(nodes, _is_type_checking)
    in_function = _under(
        nodes, lambda n: isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    )
    package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in nodes:
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        kind = (
            "type_checking"
            if id(node) in type_checking
            else "function"
            if id(node) in in_function
            else "module"
        )
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT and (target := _module_of(alias.name)):
                    found.append(Import(target, None, kind, node.lineno))
            continue
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] != ROOT:
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            target = sub if sub in modules else _module_of(base)
            if target:
                found.append(Import(target, alias.name, kind, node.lineno))
    return tuple(found)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _task_of(module: str) -> str | None:
    unit = _unit(module)
    return unit if unit in TASKS else None


def _where(name: str, imp: Import) -> str:
    return f"{_modules()[name].relative_to(PACKAGE.parent)}:{imp.line}"


# ------------------------------------------------------------------------------------------------
def test_no_module_is_too_long():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_too_long():
    long = {}
    for name in _modules():
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_task_packages_do_not_import_each_other():
    crossing = []
    for name in _modules():
        task = _task_of(name)
        for imp in _imports(name):
            other = _task_of(imp.target)
            if task and other and other != task and other not in TASK_BUILDS_ON.get(task, ()):
                crossing.append(f"{name} -> {imp.target} [{imp.kind}] {_where(name, imp)}")
    assert not crossing, list(dict.fromkeys(crossing))


def test_no_private_name_is_imported_across_packages():
    private = []
    for name in _modules():
        package = name.split(".")[:2]
        for imp in _imports(name):
            if imp.target.split(".")[:2] == package:
                continue
            last = imp.name or imp.target.rpartition(".")[2]
            if last.startswith("_") and not last.startswith("__"):
                private.append(f"{name} imports {imp.target}:{last} {_where(name, imp)}")
    assert not private, private


def test_every_unit_has_a_layer():
    layer = _layer_of()
    missing = sorted({_unit(name) for name in _modules()} - set(layer))
    assert not missing, f"units not placed in LAYERS: {missing}"


def test_imports_follow_the_layer_order():
    """A unit imports only units of its own layer or below (LAYERS, bottom to top)."""
    layer = _layer_of()
    upward, allowed_seen = [], set()
    for name in _modules():
        here = _unit(name)
        for imp in _imports(name):
            if imp.kind == "type_checking" and not LAYERS_COUNT_TYPE_CHECKING_IMPORTS:
                continue
            there = _unit(imp.target)
            if here == "__init__" or there == here or here not in layer or there not in layer:
                continue  # the root re-exports everything; unplaced units fail the test above
            if layer[there] > layer[here] and (name, imp.target) in UPWARD_ALLOWED:
                allowed_seen.add((name, imp.target))
            elif layer[there] > layer[here]:
                upward.append(
                    f"{here} (layer {layer[here]}) -> {there} (layer {layer[there]}): "
                    f"{name} -> {imp.target} [{imp.kind}] {_where(name, imp)}"
                )
    upward = list(dict.fromkeys(upward))  # one line per import statement
    assert not upward, f"{len(upward)} imports up the layer order:\n" + "\n".join(upward)
    assert allowed_seen == UPWARD_ALLOWED, f"paid off, remove: {UPWARD_ALLOWED - allowed_seen}"


def _graph() -> dict[str, set[str]]:
    """Module -> modules it imports at run time (module level or in a function).

    TYPE_CHECKING imports are exempt: they never run, so they cannot close a cycle at import or
    call time (they are still held to LAYERS). A package's ``__init__`` importing its own
    submodules (re-exports) is not an edge; a submodule importing its package's ``__init__`` is.
    """
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = {i.target for i in _imports(name) if i.kind != "type_checking"} - {name}
        if path.name == "__init__.py":
            edges = {t for t in edges if not t.startswith(name + ".")}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:  # the package has ~100 modules: recursion depth is no issue
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle_between_modules():
    graph = _graph()
    found = _cycles(graph)
    cycles = [c for c in found if c not in CYCLES_ALLOWED]
    assert all(c in found for c in CYCLES_ALLOWED), "a known cycle is gone: remove it above"
    if cycles:
        lines = []
        for component in cycles:
            lines.append(f"cycle among {len(component)} modules: {', '.join(component)}")
            for name in component:
                for imp in _imports(name):
                    if imp.target in graph[name] and imp.target in component:
                        lines.append(f"    {name} -> {imp.target} [{imp.kind}] {_where(name, imp)}")
        pytest.fail("\n".join(dict.fromkeys(lines)))


def test_the_import_reader_sees_function_level_and_type_checking_imports():
    """The reader itself: a lazy import in a function and a TYPE_CHECKING one are both found."""
    kinds = {i.kind for name in _modules() for i in _imports(name)}
    assert {"module", "function"} <= kinds, kinds
