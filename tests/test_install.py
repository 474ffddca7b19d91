"""The package as a user meets it: the wheel in a fresh environment, and the README, run as written.

The slow tests build the wheel and install it into a new virtual environment that reuses the
torch (and every other dependency) already installed here, so nothing is downloaded; then they
train with the installed ``nlp-transfer`` command and predict with its output. Others run the
README's quickstart code blocks (found by their ``<!-- test: ... -->`` markers) with only a tiny
model and a toy CSV added, and check the README's flag table against the code's defaults, so
the README cannot drift from what the package does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import toy_sentiment_frame

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Appended to the README's `train` commands (and injected into its Python config): the tiny
# 2-layer BERT instead of the packaged model, and a budget that learns the toy task.
TINY_FLAGS = ("--num_train_epochs", "8", "--learning_rate", "3e-3")
TINY_FLAGS += ("--per_device_train_batch_size", "16")


def readme_block(marker: str) -> str:
    """The fenced code block that follows ``<!-- test: marker -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- test: {marker} -->\s*```\w*\n(.*?)```", text, flags=re.S)
    assert match, f"README.md has no code block marked <!-- test: {marker} -->"
    return match.group(1)


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def flag(argv: list[str], name: str) -> str:
    """The value of ``--name`` in ``argv``."""
    assert name in argv, f"{' '.join(argv)}: no {name}"
    return argv[argv.index(name) + 1]


def write_toy_data(path: Path, text_column: str, label_column: str, n: int = 200, seed: int = 0):
    """The learnable toy sentiment task (labels pos/neg) under the given column names."""
    frame = toy_sentiment_frame(n, seed=seed)
    frame.columns = [text_column, label_column]
    frame.to_csv(path, index=False)
    return frame


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


# --- fast: the README's claims that a reader can check without running anything ---------------


def test_readme_fits_in_10_kb():
    assert len(README.read_bytes()) <= 10 * 1024


def test_readme_flag_table_shows_the_defaults_of_the_code():
    from nlp_transfer import TextClassificationConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TextClassificationConfig)}
    section = README.read_text(encoding="utf-8").split("## Key flags", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    assert len(rows) >= 10
    checked = 0
    for row in rows:
        flag_cell, default_cell = row.split("|")[1:3]
        names = re.findall(r"`--(\w+)`", flag_cell)
        values = re.findall(r"`([^`]*)`", default_cell)
        assert all(name in defaults for name in names), f"README flag not in the config: {row}"
        if default_cell.strip() == "unset":
            assert all(defaults[name] is None for name in names), row
            checked += len(names)
        elif len(values) == len(names):
            for name, value in zip(names, values, strict=True):
                assert str(defaults[name]) == value, (
                    f"--{name}: README {value}, code {defaults[name]}"
                )
                checked += 1
    assert checked >= 10


def test_readme_links_point_at_files_and_headings_that_exist():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?!https?:)[^)#\s]+)(?:#([\w-]+))?\)", text)
    assert links
    for target, anchor in links:
        path = REPO / target
        assert path.exists(), f"README links {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links {target}#{anchor}: no such heading"


# --- slow: run the README and the installed package ---------------------------------------


@pytest.mark.slow
def test_readme_python_quickstart_runs_as_written(tiny_bert_dir, tmp_path, monkeypatch):
    code = readme_block("quickstart-python")
    assert len(re.findall(r"nlp_transfer\.train\(", code)) == 1, "the quickstart calls train once"
    code = code.replace("nlp_transfer.train(", "nlp_transfer.train(**_test_overrides, data=")
    data = re.search(r'data=\s*"([^"]+)"', code).group(1)
    text_column = re.search(r'text_column="([^"]+)"', code).group(1)
    label_column = re.search(r'label_column="([^"]+)"', code).group(1)
    output_dir = re.search(r'output_dir="([^"]+)"', code).group(1)
    monkeypatch.chdir(tmp_path)
    write_toy_data(tmp_path / data, text_column, label_column)
    overrides = {
        "model_name_or_path": str(tiny_bert_dir),
        "num_train_epochs": 8,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 16,
    }
    namespace = {"_test_overrides": overrides}
    exec(compile(code, "README.md:quickstart-python", "exec"), namespace)
    result = namespace["result"]
    assert result.metrics["test"]["accuracy"] >= 0.9
    assert (tmp_path / output_dir / "model.safetensors").exists()
    (prediction,) = result.model.predict(["A gorgeous, witty film."])
    assert prediction["label"] in result.model.labels


def _fresh_venv_with_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources; install it alone into a new venv.

    The new environment then sees this interpreter's site-packages through a ``.pth`` file, so
    torch and the other dependencies are the ones already installed (nothing is downloaded).
    The wheel goes in BEFORE that ``.pth`` exists, so pip cannot mistake this environment's
    (editable) nlp-transfer for it.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "nlp_transfer", src / "nlp_transfer", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    env = offline_env()
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", "dist", str(src)], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("nlp_transfer-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
        env,
    )
    purelib = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        tmp_path,
        env,
    )
    paths = sysconfig.get_paths()
    shared = dict.fromkeys([paths["purelib"], paths["platlib"]])  # lib and lib64 on some systems
    (Path(purelib.stdout.strip()) / "shared_dependencies.pth").write_text("\n".join(shared) + "\n")
    return venv


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_readme_cli_quickstart(tiny_bert_dir, tmp_path):
    venv = _fresh_venv_with_wheel(tmp_path)
    python = str(venv / "bin" / "python")
    # `nlp-transfer` in the README's commands is the wheel's console script, found on PATH.
    env = offline_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")

    # The wheel's declared ranges accept the torch that is here: pip would install nothing.
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    report = tmp_path / "report.json"
    dry_run = ["install", "--dry-run", "--no-index", "--report", str(report), "nlp-transfer"]
    run([*pip, *dry_run], tmp_path, env)
    assert json.loads(report.read_text())["install"] == []

    # The package comes from the wheel, not from the source tree or the editable install.
    find = "import importlib.util as u; print(u.find_spec('nlp_transfer').origin)"  # no import
    where = run([python, "-c", find], tmp_path, env)
    assert Path(where.stdout.strip()).is_relative_to(venv)

    # The README's quickstart, as written, plus a tiny model and a toy CSV under its names.
    commands = shell_commands(readme_block("quickstart-cli"))
    assert [argv[:2] for argv in commands] == [
        ["nlp-transfer", "train"],
        ["nlp-transfer", "predict"],
    ]
    train, predict = commands
    text_column, label_column = flag(train, "--text_column"), flag(train, "--label_column")
    write_toy_data(tmp_path / flag(train, "--train_file"), text_column, label_column)
    run([*train, "--model_name_or_path", str(tiny_bert_dir), *TINY_FLAGS], tmp_path, env)
    output_dir = tmp_path / flag(train, "--output_dir")
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # the toy task is learnt
    assert (output_dir / "model.safetensors").exists()
    assert (output_dir / "config.yaml").exists()

    assert flag(predict, "--model_dir") == flag(train, "--output_dir")
    lines = run(predict, tmp_path, env).stdout.strip().splitlines()
    results = [json.loads(line) for line in lines]
    texts = [predict[i + 1] for i, word in enumerate(predict) if word == "--text"]
    assert [r["text"] for r in results] == texts
    assert all(r["label"] in {"pos", "neg"} and set(r["scores"]) == {"pos", "neg"} for r in results)

    # Predicting a file of unseen sentences of the same toy task: the model was learnt.
    new = write_toy_data(tmp_path / "new.csv", text_column, label_column, n=40, seed=1)
    predict_file = ["nlp-transfer", "predict", "--model_dir", str(output_dir), "--file", "new.csv"]
    run([*predict_file, "--text_column", text_column, "--output", "preds.jsonl"], tmp_path, env)
    preds = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [p["text"] for p in preds] == list(new[text_column])
    hits = sum(p["label"] == y for p, y in zip(preds, new[label_column], strict=True))
    assert hits / len(new) >= 0.8
