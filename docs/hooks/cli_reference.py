"""MkDocs hooks: the CLI reference generated from the parsers, and repository files in the site.

1. ``<!-- help: nlp-transfer predict -->`` (open) or ``<!-- help-collapsed: recipes/spam.py -->``
   in a page is replaced, at build time, by that command's ``--help`` output. The commands run in
   ONE subprocess (imports paid once) through the public entry points only: ``python -m
   nlp_transfer`` for ``nlp-transfer ...`` and the recipe scripts themselves, so the reference
   follows the parsers wherever the library's modules move. A command that fails to print its
   help fails the build.
2. ``<!-- api: rest -->`` becomes a ``::: nlp_transfer.NAME`` block (mkdocstrings) for every
   name of ``nlp_transfer.__all__`` that the page does not reference yet, read from
   ``nlp_transfer/__init__.py`` without importing it: a new top-level export is documented even
   before someone files it under a section.
   Where an exported name is also the name of a submodule (``nlp_transfer.predict`` is the
   function re-exported by ``__init__.py`` and the module ``predict.py``), griffe would render the
   module; such a reference is pointed at the object's import source, read from ``__init__.py``.
3. Pages link committed results the way GitHub resolves them (``../benchmarks/results/x.json``);
   the files under :data:`REPO_DIRS` are added to the site at the same relative paths and those
   links rewritten to match, so ``mkdocs build --strict`` still fails on a missing file.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
REPO_DIRS = ("benchmarks", "recipes")  # repository folders whose files pages may link
API_REST = "<!-- api: rest -->"
PLACEHOLDER = re.compile(r"<!-- help(?P<collapsed>-collapsed)?: (?P<cmd>[^>]+?) -->")

# Runs in the subprocess: each command's --help, captured, as JSON {command: [exit code, text]}.
_DUMP = r"""
import contextlib, io, json, runpy, sys
out = {}
for cmd in json.loads(sys.argv[1]):
    words = cmd.split()
    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            if words[0].endswith(".py"):
                sys.argv = [*words, "--help"]
                runpy.run_path(words[0], run_name="__main__")
            else:  # nlp-transfer ...
                sys.argv = ["nlp-transfer", *words[1:], "--help"]
                runpy.run_module("nlp_transfer", run_name="__main__")
        except SystemExit as e:
            code = e.code or 0
    out[cmd] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def _help_texts(commands: list[str]) -> dict[str, str]:
    """``--help`` of each command, from one subprocess in the repository root.

    Raises:
        RuntimeError: when the subprocess fails or a command exits non-zero.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "100",  # argparse wraps at the terminal width: fix it for a stable page
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _DUMP, json.dumps(commands)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"CLI reference: the help subprocess failed:\n{proc.stderr[-3000:]}")
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {cmd: text for cmd, (code, text) in results.items() if code != 0}
    if bad:
        raise RuntimeError(f"CLI reference: --help failed for {sorted(bad)}:\n{bad}")
    return {cmd: text.rstrip() for cmd, (_, text) in results.items()}


def _block(cmd: str, text: str, collapsed: bool) -> str:
    """A Material details block (``???`` collapsed, ``???+`` open) holding the help as text."""
    body = textwrap.indent(f"```text\n$ {cmd} --help\n{text}\n```", "    ")
    return f'{"???" if collapsed else "???+"} example "`{cmd} --help`"\n\n{body}\n'


def _exported_names() -> list[str]:
    """``nlp_transfer.__all__``, read statically from ``nlp_transfer/__init__.py``.

    Raises:
        RuntimeError: when ``__init__.py`` has no literal ``__all__`` list.
    """
    tree = ast.parse((REPO / "nlp_transfer" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [str(v) for v in ast.literal_eval(node.value)]
    raise RuntimeError("API reference: nlp_transfer/__init__.py has no literal __all__")


def _shadowed_exports() -> dict[str, str]:
    """Exported names that a submodule of the same name shadows -> the object's import path."""
    package = REPO / "nlp_transfer"
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                name = alias.asname or alias.name
                if (package / f"{name}.py").exists() or (package / name).is_dir():
                    found[name] = f"nlp_transfer.{node.module}.{alias.name}"
    return found


def _unshadow(markdown: str) -> str:
    """Point ``::: nlp_transfer.NAME`` at the re-exported object when a submodule shadows it."""
    for name, target in _shadowed_exports().items():
        markdown = re.sub(rf"^::: nlp_transfer\.{name}$", f"::: {target}", markdown, flags=re.M)
    return markdown


def _api_rest(markdown: str) -> str:
    """Blocks for the exported names that ``markdown`` does not reference with ``:::``."""
    listed = set(re.findall(r"^::: nlp_transfer\.(\w+)", markdown, flags=re.M))
    rest = [name for name in _exported_names() if name not in listed]
    if not rest:
        return "(none)"
    return "\n\n".join(f"::: nlp_transfer.{name}" for name in rest)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill help and API placeholders; point ``../benchmarks/...`` links at the copied files."""
    if API_REST in markdown:
        markdown = markdown.replace(API_REST, _api_rest(markdown))
    if "::: nlp_transfer." in markdown:
        markdown = _unshadow(markdown)
    matches = list(PLACEHOLDER.finditer(markdown))
    if matches:
        texts = _help_texts(sorted({m["cmd"].strip() for m in matches}))
        markdown = PLACEHOLDER.sub(
            lambda m: _block(m["cmd"].strip(), texts[m["cmd"].strip()], bool(m["collapsed"])),
            markdown,
        )
    for folder in REPO_DIRS:
        markdown = markdown.replace(f"](../{folder}/", f"]({folder}/")
    return markdown


def on_files(files, config):
    """Add the committed files of :data:`REPO_DIRS` (results, scripts, configs) to the site."""
    for folder in REPO_DIRS:
        for path in sorted((REPO / folder).rglob("*")):
            # A folder's README.md would become a page with links into the rest of the repository.
            if path.is_file() and "__pycache__" not in path.parts and path.name != "README.md":
                rel = path.relative_to(REPO).as_posix()
                files.append(
                    File(
                        rel,
                        src_dir=str(REPO),
                        dest_dir=config["site_dir"],
                        use_directory_urls=config["use_directory_urls"],
                    )
                )
    return files
