"""The library's shape, checked: small modules and functions, task packages that do not reach into
each other, no import cycle, no private name imported across packages (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlp_transfer"
TASKS = ("text", "vision", "adaptation")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """``{dotted module name: path}`` of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path) -> list[tuple[str, list[str], bool]]:
    """``(imported module, imported names, at module level)`` of every ``nlp_transfer`` import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("nlp_transfer"):
                names = [a.name for a in node.names]
                found.append((target, names, id(node) in top_level))
    return found


def test_no_module_is_too_long():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_too_long():
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _task_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in TASKS else None


def test_task_packages_do_not_import_each_other():
    crossing = []
    for name, path in _modules().items():
        task = _task_of(name)
        for target, _, _ in _imports(name, path):
            other = _task_of(target)
            if task and other and other != task:
                crossing.append(f"{name} -> {target}")
    assert not crossing, crossing


def test_no_private_name_is_imported_across_packages():
    private = []
    for name, path in _modules().items():
        package = name.split(".")[:2]
        for target, names, _ in _imports(name, path):
            if target.split(".")[:2] == package:
                continue
            private += [f"{name} imports {target}.{n}" for n in names if n.startswith("_")]
    assert not private, private


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {
        name: {t for t, _, top in _imports(name, path) if top and t in modules and t != name}
        for name, path in modules.items()
    }
    # a package's __init__ re-exporting its own modules is not a cycle of the design
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
