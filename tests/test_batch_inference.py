"""Batch inference: streamed files, resume, the onnxruntime backend and int8, evaluate's comparison."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from nlp_transfer.cli.commands import main as cli_main
from nlp_transfer.text.predict import predict
from nlp_transfer.text.stream import open_text_rows

from conftest import _tiny_vocab, tiny_config, toy_sentiment_frame

N_ROWS = 70  # several chunks of CHUNK rows, the last one short
CHUNK = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and on a shared CPU threads only wait for each
    other (a forward pass of 5 texts took 0.1 s with 2 threads, 1 ms with one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random 2-layer BERT classifier whose labels vary with the text (wide initialisation)."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertTokenizer

    path = tmp_path_factory.mktemp("classifier")
    config = tiny_config("bert")
    config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    config.initializer_range = 0.5  # logits far apart: labels differ between texts
    config.max_seq_length = 24
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).eval().save_pretrained(path)
    vocab = {word: i for i, word in enumerate(_tiny_vocab())}
    BertTokenizer(vocab=vocab, model_max_length=64).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Texts of different lengths (the batches are sorted by length inside a chunk)."""
    frame = toy_sentiment_frame(N_ROWS, seed=3)
    frame["sentence"] = [s + " and the plot" * (i % 4) for i, s in enumerate(frame["sentence"])]
    return frame


def _write(frame: pd.DataFrame, path):
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, row_group_size=25)
    return path


def _predict_cli(model_dir, file, output, *extra) -> int:
    return cli_main(
        [
            "predict",
            "--model_dir",
            str(model_dir),
            "--file",
            str(file),
            "--text_column",
            "sentence",
            "--output",
            str(output),
            "--chunk_size",
            str(CHUNK),
            "--batch_size",
            "5",
            *extra,
        ]
    )


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_same_predictions(got: list[dict], want: list[dict], atol: float = 1e-5) -> None:
    assert len(got) == len(want)
    assert [set(g) for g in got] == [set(w) for w in want]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["scores"] == pytest.approx(w["scores"], abs=atol)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_streamed_file_equals_in_memory_predict(model_dir, frame, tmp_path, suffix):
    source = _write(frame, tmp_path / f"in{suffix}")
    out = tmp_path / "nested" / "out.jsonl"
    assert _predict_cli(model_dir, source, out) == 0
    texts = frame["sentence"].tolist()
    want = [{"text": t, **r} for t, r in zip(texts, predict(model_dir, texts), strict=True)]
    got = _lines(out)
    assert [g["text"] for g in got] == texts  # input order, every row once
    _assert_same_predictions(got, want)
    assert len({g["label"] for g in got}) == 2  # the model does tell texts apart


def test_interrupted_output_resumes_to_the_uninterrupted_run(model_dir, frame, tmp_path, caplog):
    source = _write(frame, tmp_path / "in.csv")
    full = tmp_path / "full.jsonl"
    assert _predict_cli(model_dir, source, full) == 0
    lines = full.read_bytes().splitlines(keepends=True)
    # Stopped after two whole chunks, half-way through writing the next line: resumed, the file
    # is byte for byte the uninterrupted run's (same chunks, same batches).
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[: 2 * CHUNK]) + lines[2 * CHUNK][:25])
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        assert _predict_cli(model_dir, source, cut) == 0
    assert f"{2 * CHUNK:,} rows done, skipped" in caplog.text
    assert cut.read_bytes() == full.read_bytes()
    # Stopped mid-chunk (killed while writing): the rest is predicted in other batches, so the
    # scores may differ in the last float digits, not the labels.
    cut.write_bytes(b"".join(lines[:21]) + lines[21][:40])
    assert _predict_cli(model_dir, source, cut) == 0
    assert cut.read_bytes().startswith(b"".join(lines[:21]))
    _assert_same_predictions(_lines(cut), _lines(full))


def test_an_existing_output_is_never_overwritten_silently(model_dir, frame, tmp_path, capsys):
    source = _write(frame, tmp_path / "in.csv")
    done = tmp_path / "done.jsonl"
    assert _predict_cli(model_dir, source, done) == 0
    before = done.read_bytes()
    capsys.readouterr()
    assert _predict_cli(model_dir, source, done) == 1
    assert "is complete" in capsys.readouterr().err
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"id": 1}\n{"id": 2}\n')
    other_model = tmp_path / "other_model.jsonl"
    other_model.write_text('{"text": "good", "labels": ["a"], "scores": {"a": 0.9}}\n')
    other = _write(frame.iloc[::-1], tmp_path / "reversed.csv")
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b"".join(before.splitlines(keepends=True)[:5]))
    for output, input_, message in (
        (foreign, source, "is not predictions"),
        (other_model, source, "line 1 is not a prediction of this model"),
        (partial, other, "another text than row 1"),
        (done, _write(frame.iloc[:10], tmp_path / "short.csv"), "only 10 rows"),
    ):
        kept = output.read_bytes()
        assert _predict_cli(model_dir, input_, output) == 1
        err = capsys.readouterr().err
        assert message in err and "--overwrite_output" in err
        assert output.read_bytes() == kept
    assert _predict_cli(model_dir, other, done, "--overwrite_output") == 0
    assert [r["text"] for r in _lines(done)] == frame["sentence"].tolist()[::-1]
    texts = ["--model_dir", str(model_dir), "--text", "great", "--output", str(done)]
    assert cli_main(["predict", *texts]) == 1
    assert "exists" in capsys.readouterr().err


def test_a_missing_column_error_names_the_flag(model_dir, frame, tmp_path, capsys):
    source = _write(frame, tmp_path / "in.parquet")
    assert _predict_cli(model_dir, source, tmp_path / "o.jsonl", "--text_column", "body") == 1
    assert "no column 'body'" in capsys.readouterr().err
    status = _predict_cli(model_dir, source, tmp_path / "o.jsonl", "--text_pair_column", "hyp")
    err = capsys.readouterr().err
    assert status == 1 and "no column 'hyp'" in err and "--text_pair_column" in err
    with pytest.raises(ValueError, match="pass --text_column"):
        open_text_rows(_write(frame, tmp_path / "in.jsonl"), "body")
    assert not (tmp_path / "o.jsonl").exists()


def test_rows_of_every_format_pairs_and_empty_texts(tmp_path):
    (tmp_path / "a.txt").write_text("first\n\n  \nsecond line\r\n", encoding="utf-8")
    assert list(open_text_rows(tmp_path / "a.txt").rows) == ["first", "second line"]
    tsv = tmp_path / "p.tsv"
    tsv.write_text('premise\thypothesis\n"a\tb"\tc\n"line\nbreak"\t7\n', encoding="utf-8")
    pairs = open_text_rows(tsv, "premise", "hypothesis")
    assert pairs.total is None and list(pairs.rows) == [("a\tb", "c"), ("line\nbreak", "7")]
    nulls = tmp_path / "n.parquet"
    pd.DataFrame({"text": ["x", None]}).to_parquet(nulls)
    rows = open_text_rows(nulls)
    assert rows.total == 2
    with pytest.raises(ValueError, match="row 2 has no text in column 'text'"):
        list(rows.rows)


def test_onnxruntime_matches_torch_and_int8_mostly_agrees(model_dir, frame, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from nlp_transfer import TextClassifier

    texts = frame["sentence"].tolist()
    torch_results = TextClassifier.from_pretrained(model_dir).predict(texts, batch_size=8)
    onnx = TextClassifier.from_pretrained(model_dir, backend="onnxruntime")
    assert onnx.model.onnx_path == model_dir / "model.onnx" and onnx.max_seq_length == 24
    exported = onnx.model.onnx_path.stat().st_mtime_ns
    got = onnx.predict(texts, batch_size=8)
    _assert_same_predictions(got, torch_results, atol=1e-4)
    int8 = TextClassifier.from_pretrained(model_dir, backend="onnxruntime", quantize="int8")
    assert int8.model.onnx_path.name == "model.int8.onnx"
    assert onnx.model.onnx_path.stat().st_mtime_ns == exported  # reused, not exported again
    quantized = int8.predict(texts, batch_size=8)
    agree = sum(q["label"] == t["label"] for q, t in zip(quantized, torch_results, strict=True))
    assert agree >= 0.9 * len(texts)
    assert all(set(q) == set(t) for q, t in zip(quantized, torch_results, strict=True))
    # weights quantized per channel, the embedding tables too (benchmarks/results/int8_settings.md)
    import onnx

    from nlp_transfer.text.onnx_backend import INT8_SETTINGS

    sidecar = model_dir / "model.int8.onnx.json"
    assert json.loads(sidecar.read_text()) == INT8_SETTINGS
    graph = onnx.load(str(int8.model.onnx_path)).graph
    ops = {node.op_type for node in graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    gathered = {node.input[0] for node in graph.node if node.op_type == "Gather"}
    tables = [t for t in graph.initializer if t.name in gathered and len(t.dims) == 2]
    int8_types = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    assert tables and all(t.data_type in int8_types for t in tables)
    per_channel = [t for t in graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1]
    assert any(t.dims[0] > 1 for t in per_channel)  # one scale per output channel
    # a file quantized with other settings is made again
    sidecar.write_text(json.dumps({"per_channel": False}))
    made = int8.model.onnx_path.stat().st_mtime_ns
    TextClassifier.from_pretrained(model_dir, backend="onnxruntime", quantize="int8")
    assert int8.model.onnx_path.stat().st_mtime_ns != made
    assert json.loads(sidecar.read_text()) == INT8_SETTINGS
    # The command line: same lines as torch's, from the ONNX model.
    source = _write(frame, tmp_path / "in.csv")
    assert _predict_cli(model_dir, source, tmp_path / "t.jsonl") == 0
    assert _predict_cli(model_dir, source, tmp_path / "o.jsonl", "--backend", "onnxruntime") == 0
    _assert_same_predictions(_lines(tmp_path / "o.jsonl"), _lines(tmp_path / "t.jsonl"), 1e-4)
    with pytest.raises(ValueError, match="--backend onnxruntime"):
        TextClassifier.from_pretrained(model_dir, quantize="int8")


def test_evaluate_on_onnxruntime_compares_with_torch(model_dir, frame, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    source = _write(frame, tmp_path / "labelled.csv")
    flags = ["--text_column", "sentence", "--label_column", "sentiment"]
    flags += ["--model_dir", str(model_dir), "--file", str(source)]
    assert cli_main(["evaluate", *flags]) == 0
    torch_summary = json.loads(capsys.readouterr().out)
    assert torch_summary["backend"] == "torch" and "accuracy_diff_vs_torch" not in torch_summary
    assert cli_main(["evaluate", *flags, "--backend", "onnxruntime", "--quantize", "int8"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "onnxruntime-int8"
    assert summary["torch_accuracy"] == pytest.approx(torch_summary["accuracy"])
    assert summary["accuracy_diff_vs_torch"] == pytest.approx(
        summary["accuracy"] - torch_summary["accuracy"]
    )
    assert summary["f1_macro_diff_vs_torch"] == pytest.approx(
        summary["f1_macro"] - torch_summary["f1_macro"]
    )
    assert 0.9 <= summary["label_agreement_vs_torch"] <= 1.0
    assert summary["max_abs_logit_diff_vs_torch"] > 1e-4  # int8 weights ran, not fp32


def test_progress_logs_lines_without_a_terminal(caplog):
    from nlp_transfer.text.batch import RowProgress

    progress = RowProgress(total=100, initial=40, every_s=0.0, interactive=False)
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        progress.update(30)
    progress.close()
    assert "predicted 70 of 100 rows (70.0%)" in caplog.text and "left" in caplog.text
    assert progress.bar.disable


def test_cli_predict_shows_the_librarys_progress_lines_on_stderr(
    model_dir, frame, tmp_path, capsys
):
    """The "Predicted N rows in X s" line (what benchmarks/inference.py times) and the other
    INFO lines of nlp_transfer's modules reach standard error, not only the CLI's own."""
    source = _write(frame, tmp_path / "in.csv")
    assert _predict_cli(model_dir, source, tmp_path / "out.jsonl") == 0
    err = capsys.readouterr().err
    assert f"Predicted {len(frame):,} rows in " in err


def test_length_batches_split_where_padding_costs_more_than_a_forward_pass():
    import itertools

    import numpy as np

    from nlp_transfer.text.inference import length_batches

    def work(lengths, cuts, call_cost):
        return sum(call_cost + (c.stop - c.start) * lengths[c.stop - 1] for c in cuts)

    assert length_batches([5] * 7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]  # no cost: fixed
    assert length_batches([5] * 6, 3, call_cost_tokens=10.0) == [slice(0, 3), slice(3, 6)]
    # four short texts padded to 60 would cost 4 x 55 tokens more than a second pass (10)
    assert length_batches([5, 5, 5, 5, 60, 60], 6, 10.0) == [slice(0, 4), slice(4, 6)]
    # a forward pass dearer than the padding: one batch
    assert length_batches([5, 5, 5, 5, 60, 60], 6, 1000.0) == [slice(0, 6)]
    rng = np.random.default_rng(0)
    for _ in range(30):  # the cheapest of every split, by brute force over the cut points
        lengths = np.sort(rng.integers(1, 80, size=int(rng.integers(2, 9)))).tolist()
        size, cost = int(rng.integers(1, 5)), float(rng.choice([0.0, 8.0, 64.0]))
        cuts = length_batches(lengths, size, cost)
        assert [c.start for c in cuts] == [0, *[c.stop for c in cuts[:-1]]]
        assert cuts[-1].stop == len(lengths) and all(c.stop - c.start <= size for c in cuts)
        best = min(
            work(
                lengths,
                [slice(a, b) for a, b in itertools.pairwise((0, *inner, len(lengths)))],
                cost,
            )
            for k in range(len(lengths))
            for inner in itertools.combinations(range(1, len(lengths)), k)
            if all(b - a <= size for a, b in itertools.pairwise((0, *inner, len(lengths))))
        )
        assert work(lengths, cuts, cost) == pytest.approx(best)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_length_batches_change_no_logit(model_dir, frame, backend):
    """Texts of 4 lengths: split into a pass per length (a free pass) or one padded batch, the
    same logits."""
    import numpy as np

    from nlp_transfer import TextClassifier

    classifier = TextClassifier.from_pretrained(model_dir, backend=backend)
    texts = list(frame["sentence"][:32])
    padded = classifier.predict_logits(texts, 32, call_cost_tokens=None)
    split = classifier.predict_logits(texts, 32, call_cost_tokens=0.0)
    np.testing.assert_allclose(split, padded, atol=1e-5)
    assert not np.allclose(padded[:, 0], padded[0, 0])  # the texts get different logits
