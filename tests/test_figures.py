"""Every measured figure in the README and the docs is tied to a committed result file.

A quoted number is followed by ``<!--fig:ID-->``; ``benchmarks/figures.yaml`` says which result
file and key ``ID`` comes from. The number must equal the value at the precision it is quoted
with. In the README, every speed ratio (``1.4x``) and every accuracy-like decimal (``0.8641``)
in prose must carry such a marker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FIGURES = yaml.safe_load((REPO / "benchmarks" / "figures.yaml").read_text(encoding="utf-8"))
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# a number, an optional unit, then the marker (a quoted figure and its source, side by side)
MARKED = re.compile(
    r"(-?\d{1,3}(?:,\d{3})+|-?\d+(?:\.\d+)?)(?:x|%| points?)?\s*<!--fig:([\w.-]+)-->"
)
# in README prose: figures that are measurements, not settings
MEASURED = re.compile(r"(?<![\w.])(\d+\.\d+x|0\.\d{3,4})(?![\w.])")


def lookup(document, key: str):
    """The value at ``key`` (dots; ``[field=value]`` picks a list item by a field,
    ``[f=a;g=b]`` by several)."""
    value = document
    for step in key.split("."):
        if step.startswith("[") and step.endswith("]"):
            wanted = dict(part.split("=", 1) for part in step[1:-1].split(";"))
            matches = [
                item for item in value if all(str(item.get(f)) == v for f, v in wanted.items())
            ]
            assert len(matches) == 1, f"{key}: {len(matches)} items with {wanted}"
            value = matches[0]
        else:
            value = value[int(step)] if isinstance(value, list) else value[step]
    return value


def quoted_figures() -> list[tuple[str, int, str, str]]:
    """``(document, line, number as quoted, figure id)`` of every marker."""
    found = []
    for path in DOCUMENTS:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in MARKED.finditer(line):
                found.append((str(path.relative_to(REPO)), n, match.group(1), match.group(2)))
    return found


def test_lookup_walks_keys_and_list_selectors():
    document = {"rows": [{"arm": "a", "x": {"median": 1.5}}, {"arm": "b", "x": {"median": 2}}]}
    assert lookup(document, "rows.[arm=b].x.median") == 2
    assert lookup(document, "rows.0.arm") == "a"
    pairs = {"rows": [{"m": "a", "k": 8, "v": 1}, {"m": "a", "k": 16, "v": 2}, {"m": "b", "k": 8}]}
    assert lookup(pairs, "rows.[m=a;k=16].v") == 2
    with pytest.raises(AssertionError):
        lookup(document, "rows.[arm=c].x")


@pytest.mark.parametrize(("where", "line", "quoted", "figure"), quoted_figures())
def test_each_quoted_figure_matches_its_result(where, line, quoted, figure):
    assert figure in FIGURES, f"{where}:{line}: <!--fig:{figure}--> is not in figures.yaml"
    spec = FIGURES[figure]
    document = json.loads((RESULTS / spec["file"]).read_text(encoding="utf-8"))
    value = lookup(document, spec["key"]) * spec.get("scale", 1)
    quoted = quoted.replace(",", "")
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    assert abs(value - float(quoted)) <= 0.5 * 10**-decimals + 1e-12, (
        f"{where}:{line} quotes {quoted} for {figure}, but {spec['file']} "
        f"{spec['key']} gives {value} ({round(value, decimals)} at that precision)"
    )


def test_every_figure_is_quoted_somewhere():
    used = {figure for *_, figure in quoted_figures()}
    assert set(FIGURES) <= used, f"figures.yaml entries no document quotes: {set(FIGURES) - used}"


def test_every_measured_figure_of_the_readme_has_a_source():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code
    text = re.sub(r"`[^`]*`", "", text)
    text = MARKED.sub("", text)  # figures with a source
    bare = MEASURED.findall(text)
    assert not bare, f"README figures without a <!--fig:...--> source: {bare}"
