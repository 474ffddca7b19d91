"""The ``nlp-transfer`` command line: user errors in one line, --debug, short help, lazy imports."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import nlp_transfer
from nlp_transfer.cli import commands as cli
from nlp_transfer.cli.commands import error_message, is_user_error, main

HEAVY = ("torch", "transformers", "datasets", "accelerate", "sklearn", "pandas")


def _train_missing_file(tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--train_file",
            str(tmp_path / "missing.csv"),
            "--output_dir",
            str(tmp_path / "out"),
            *extra,
        ]
    )


def test_a_user_error_prints_its_message_alone_and_exits_1(tmp_path, capsys):
    status = _train_missing_file(tmp_path)
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("error: ") and "missing.csv" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        _train_missing_file(tmp_path, "--debug")


def test_a_bug_keeps_its_traceback_and_ctrl_c_exits_130(monkeypatch, capsys):
    def bug(argv):
        raise TypeError("a bug, not a user error")

    monkeypatch.setattr(cli, "_dispatch", bug)
    with pytest.raises(TypeError):
        main(["datasets"])

    def ctrl_c(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", ctrl_c)
    assert main(["datasets"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_which_errors_are_the_users():
    from nlp_transfer.data.fetch import ChecksumError

    for exc in (ValueError(), FileNotFoundError(), FileExistsError(), ConnectionError()):
        assert is_user_error(exc)
    assert is_user_error(ChecksumError("bad download"))  # the library's own types
    assert not is_user_error(TypeError()) and not is_user_error(AttributeError())
    message = "--metric_for_best_model 'f1' is not an evaluation metric; choose one of accuracy."
    assert error_message(KeyError(message)) == message  # no quotes around it


def test_train_help_is_short_lists_task_and_real_defaults(capsys, monkeypatch):
    from nlp_transfer.cli.help import HELP_WIDTH

    monkeypatch.setenv("COLUMNS", str(HELP_WIDTH))  # pytest-xdist workers set COLUMNS=80
    with pytest.raises(SystemExit, match="0"):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: nlp-transfer train [--task TASK]")
    assert "--task TASK" in out and "domain_adaptation" in out
    assert "(default: None)" not in out
    assert "--num_train_epochs N" in out and "(default: 32)" in out  # batch size: a real default
    assert "outputs/text_classification" in out
    # a --no_* flag sits beside its positive flag, without a copy of its help
    assert "--group_by_length, --no_group_by_length" in out
    assert out.count("Batch examples of similar length") == 1
    assert "--train_file PATH " in out and "--train-file PATH" not in out  # alias not listed
    assert len(out.splitlines()) < 200  # argparse's own: 289 lines


def test_train_help_shows_the_defaults_of_the_task_given(capsys):
    with pytest.raises(SystemExit, match="0"):
        main(["train", "--task", "spam", "--help"])
    out = capsys.readouterr().out
    assert "--task spam" in out and "outputs/spam" in out and "(default: f1_spam)" in out


def test_import_and_top_level_help_load_nothing_heavy():
    code = (
        "import sys, contextlib, io, nlp_transfer, nlp_transfer.cli.commands as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    root = Path(nlp_transfer.__file__).parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves_and_the_lazy_table_agrees():
    source = Path(nlp_transfer.__file__).read_text(encoding="utf-8")
    typed = {}  # the TYPE_CHECKING imports: name -> ".module:name"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                typed |= {a.name: f"{'.' * imp.level}{imp.module}:{a.name}" for a in imp.names}
    assert typed == nlp_transfer._LAZY
    assert nlp_transfer.__all__ == sorted(nlp_transfer._LAZY)
    for name in nlp_transfer.__all__:
        assert getattr(nlp_transfer, name) is not None
    importlib.import_module("nlp_transfer.text.predict")  # a module named like a public function
    from nlp_transfer import predict

    assert callable(predict) and predict.__name__ == "predict"
    with pytest.raises(AttributeError):
        nlp_transfer.no_such_name  # noqa: B018


def test_compact_help_changes_the_display_only():
    from nlp_transfer.cli.config import build_config_parser
    from nlp_transfer.cli.help import compact_help
    from nlp_transfer.text.tasks import SentimentConfig

    parser = compact_help(build_config_parser(SentimentConfig, prog="sentiment.py"))
    assert parser.format_usage().strip() == "usage: sentiment.py [--config FILE] [--FLAG VALUE ...]"
    args = parser.parse_args(["--no_group_by_length", "--train-file", "x.csv", "--seed", "3"])
    assert (args.group_by_length, args.train_file, args.seed) == (False, "x.csv", 3)
