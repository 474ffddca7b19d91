"""Text at scale: data stays Arrow-backed from the file to the tokens, tokenization runs in
several processes and is cached by fingerprint, the prefix cache goes to disk above a memory
budget with the same numbers, and the TF-IDF baseline reads no whole split into Python."""

from __future__ import annotations

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file

from nlp_transfer.data import load_text_classification_dataset
from nlp_transfer.data.pipeline import load_problem_dataset
from nlp_transfer.text.tokenize import tokenize_dataset

from conftest import toy_sentiment_frame

ROWS = 3_000


def _frame(n: int = ROWS) -> pd.DataFrame:
    frame = toy_sentiment_frame(n)
    frame.loc[[5, 17], "sentence"] = ["", "   "]  # dropped, counted
    return frame


@pytest.fixture()
def big_csv(tmp_path):
    path = tmp_path / "big.csv"
    _frame().to_csv(path, index=False)
    return path


def _arrow_files(root) -> set:
    return {p.relative_to(root) for p in root.rglob("*.arrow")}


def _no_python_lists_of_rows(monkeypatch):
    """Fail if the loader builds a split from Python lists or reads one into pandas."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data path built a split from Python lists / pandas")

    monkeypatch.setattr(Dataset, "from_dict", refuse)
    monkeypatch.setattr(Dataset, "from_list", refuse)
    monkeypatch.setattr(Dataset, "to_pandas", refuse)


def test_a_csv_of_thousands_of_rows_stays_arrow_backed(big_csv, tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    expected = load_text_classification_dataset(
        _frame(), text_column="sentence", label_column="sentiment"
    )  # the same rows from a DataFrame (in memory)
    _no_python_lists_of_rows(monkeypatch)
    ds = load_problem_dataset(
        big_csv, text_column="sentence", label_column="sentiment", cache_dir=cache
    )
    assert isinstance(ds, DatasetDict) and list(ds) == ["train", "validation", "test"]
    assert sum(len(d) for d in ds.values()) == ROWS - 2
    for split in ds.values():
        # memory-mapped from datasets' Arrow cache of the file, not a table built in memory
        assert split.cache_files and all(
            str(f["filename"]).startswith(str(cache)) for f in split.cache_files
        )
    assert ds["train"].features["label"].names == ["neg", "pos"]
    for name in ds:  # the same splits, texts and ids as the in-memory path
        assert ds[name]["text"][:] == expected[name]["text"][:]
        assert ds[name]["label"][:] == expected[name]["label"][:]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_file_errors_still_name_the_column_and_flag(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"

    def write(frame):
        if suffix == ".parquet":
            frame.to_parquet(path)
        else:
            frame.to_json(path, orient="records", lines=True)

    write(pd.DataFrame({"text": [1, 2, 3, 4], "label": ["a", "b", "a", "b"]}))
    with pytest.raises(ValueError, match=r"'text' of the train split must hold strings.*row 0"):
        load_text_classification_dataset(path)
    write(pd.DataFrame({"text": list("abcd"), "label": ["x", None, "y", None]}))
    with pytest.raises(ValueError, match=r"2 row.*missing label in column 'label'.*rows 1, 3"):
        load_text_classification_dataset(path)
    write(pd.DataFrame({"text": list("abcd"), "y": [0.5, 1.5, 2.0, 0.5]}))
    with pytest.raises(ValueError, match=r"column 'label'.*--label_column"):
        load_text_classification_dataset(path)
    with pytest.raises(ValueError, match=r"non-integer numbers \(e.g. 0.5\).*--problem_type"):
        load_text_classification_dataset(path, label_column="y")
    write(pd.DataFrame({"text": ["a b", "c d"] * 5, "y": ["1.5", "high"] * 5}))
    with pytest.raises(ValueError, match=r"Row 1 .* 'high' in label column 'y'.*regression"):
        load_problem_dataset(path, label_column="y", problem_type="regression")


def test_mixed_label_lists_and_strings_are_multi_label():
    frame = pd.DataFrame(
        {"text": [f"t{i}" for i in range(40)], "tags": [["a", "b"], "a", "b", None] * 10}
    )
    ds = load_problem_dataset(frame, label_column="tags")
    assert ds["train"].features["label"].feature.names == ["a", "b"]
    rows = {tuple(ids) for s in ds for ids in ds[s]["label"][:]}
    assert rows <= {(0, 1), (0,), (1,), ()}
    with pytest.raises(ValueError, match=r"Row 2 .* int 7 in label column 'tags'"):
        load_problem_dataset(
            frame.assign(tags=[["a"], "b", 7, None] * 10),
            label_column="tags",
            problem_type="multi_label_classification",
        )


def test_tokenizing_in_two_processes_equals_one(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    ds = load_text_classification_dataset(
        toy_sentiment_frame(600), text_column="sentence", label_column="sentiment"
    )  # in memory: no cache file to share, each is computed
    one = tokenize_dataset(ds, tokenizer, max_seq_length=6)
    two = tokenize_dataset(ds, tokenizer, max_seq_length=6, num_proc=2)
    for split in ds:
        assert two[split].column_names == one[split].column_names
        for column in one[split].column_names:
            assert two[split][column][:] == one[split][column][:], (split, column)
    with pytest.raises(ValueError, match="--preprocessing_num_workers"):
        tokenize_dataset(ds, tokenizer, num_proc=0)


def test_a_second_load_reuses_the_cache_files(big_csv, tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    cache = tmp_path / "hf"

    def load_and_tokenize():
        ds = load_problem_dataset(
            big_csv, text_column="sentence", label_column="sentiment", cache_dir=cache
        )
        tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
        return tokenize_dataset(ds, tokenizer, max_seq_length=6, num_proc=2)

    first = load_and_tokenize()
    files = _arrow_files(cache)
    times = {f: (cache / f).stat().st_mtime_ns for f in files}
    tokens = {s: d.cache_files for s, d in first.items()}
    assert all(len(t) == 2 for t in tokens.values())  # one file per process
    second = load_and_tokenize()
    assert _arrow_files(cache) == files  # nothing written: every step found its cache file
    assert {f: (cache / f).stat().st_mtime_ns for f in files} == times
    assert {s: d.cache_files for s, d in second.items()} == tokens
    assert second["test"]["input_ids"][:] == first["test"]["input_ids"][:]


def _run(tiny_bert_dir, data, out, *extra):
    import sentiment

    return sentiment.main(
        ["--model_name_or_path", str(tiny_bert_dir), "--train_file", str(data),
         "--text_column", "sentence", "--label_column", "sentiment", "--output_dir", str(out),
         "--learning_rate", "3e-3", "--num_train_epochs", "2",
         "--per_device_train_batch_size", "16", "--freeze_layers", "1",
         "--run_baseline", "false", "--save_strategy", "no", *extra]
    )  # fmt: skip


def test_prefix_cache_on_disk_above_the_budget_gives_the_same_run(
    tiny_bert_dir, toy_csv, tmp_path, capsys
):
    cache = tmp_path / "cache"
    memory = _run(tiny_bert_dir, toy_csv, tmp_path / "memory", "--cache_frozen_prefix", "memory")
    assert "in memory" in capsys.readouterr().err
    disk = _run(
        tiny_bert_dir,
        toy_csv,
        tmp_path / "disk",
        "--prefix_cache_memory_gb", "0",  # any cache is over budget: memory-mapped
        "--cache_dir", str(cache),
        "--preprocessing_num_workers", "2",
    )  # fmt: skip
    assert f"memory-mapped in {cache / 'prefix_cache'}" in capsys.readouterr().err
    assert list((cache / "prefix_cache").glob("train-*/values.npy"))
    for a, b in zip(memory["validation"], disk["validation"], strict=True):
        assert (a["train_loss"], a["eval_loss"]) == (b["train_loss"], b["eval_loss"])
    assert memory["test"]["accuracy"] == disk["test"]["accuracy"]
    weights = [load_file(str(tmp_path / r / "model.safetensors")) for r in ("memory", "disk")]
    for name, tensor in weights[0].items():
        assert tensor.equal(weights[1][name]), name


def test_scale_flags_are_checked(tmp_path):
    from nlp_transfer.text import TextClassificationConfig

    with pytest.raises(ValueError, match="--preprocessing_num_workers must be positive"):
        TextClassificationConfig(dataset_name="x", preprocessing_num_workers=0)
    with pytest.raises(ValueError, match="--prefix_cache_memory_gb must be >= 0"):
        TextClassificationConfig(dataset_name="x", prefix_cache_memory_gb=-1.0)


def test_baseline_caps_before_reading_texts_and_scores_every_row_in_batches(monkeypatch):
    from nlp_transfer.text import baseline

    frame = toy_sentiment_frame(900).set_axis(["text", "label"], axis=1)
    ds = load_text_classification_dataset(frame, validation_size=0.2, test_size=0.2)
    whole = baseline.tfidf_logreg_baseline(ds, max_train_samples=300)
    seen = []
    inputs = baseline._inputs
    monkeypatch.setattr(
        baseline, "_inputs", lambda split: seen.append(len(split["text"])) or inputs(split)
    )
    monkeypatch.setattr(baseline, "SCORE_BATCH_ROWS", 50)
    batched = baseline.tfidf_logreg_baseline(ds, max_train_samples=300)
    assert seen[0] == 300  # the training texts read: the capped sample only
    assert max(seen[1:]) == 50  # validation and test: batch by batch
    assert sum(seen[1:]) == len(ds["validation"]) + len(ds["test"])  # every row scored
    assert batched["num_examples"] == whole["num_examples"] == len(ds["test"])
    for key in ("accuracy", "f1_macro", "C", "validation_accuracy"):
        assert batched[key] == whole[key]


@pytest.mark.parametrize(("size", "seed"), [(0.1, 42), (0.25, 3)])
def test_stratified_split_indices_are_those_of_train_test_split(size, seed):
    """split_indices computes datasets' own stratified split from the label array (its
    train_test_split reads the labels one row at a time): the same rows, in the same order."""
    import numpy as np
    from datasets import ClassLabel, Features, Value

    from nlp_transfer.data.splits import split_indices

    labels = np.random.default_rng(0).choice(3, size=500, p=[0.6, 0.3, 0.1])
    features = Features({"row": Value("int64"), "label": ClassLabel(names=["a", "b", "c"])})
    ds = Dataset.from_dict({"row": np.arange(500), "label": labels}, features=features)
    theirs = ds.train_test_split(test_size=size, stratify_by_column="label", seed=seed)
    kept, held = split_indices(labels, size, seed)
    assert kept.tolist() == theirs["train"]["row"][:]
    assert held.tolist() == theirs["test"]["row"][:]


def test_arrow_column_gathers_one_column_of_a_mapped_split(monkeypatch):
    """Splits are index mappings; their column comes from one Arrow take, in the split's order
    (datasets' with_format("arrow") copied every column: ~475 MB for a million sentences)."""
    import numpy as np

    from nlp_transfer.data.columns import arrow_column, numpy_column

    ds = Dataset.from_dict({"text": [f"t{i}" for i in range(100)], "label": list(range(100))})
    mapped = ds.select(np.random.default_rng(0).permutation(100)[:60]).select(range(10, 50))
    shuffled = mapped.shuffle(seed=1)
    expected = {name: (d["text"], d["label"]) for name, d in [("m", mapped), ("s", shuffled)]}

    def refuse(*args, **kwargs):
        raise AssertionError("with_format was used")

    monkeypatch.setattr(Dataset, "with_format", refuse)
    for name, d in [("m", mapped), ("s", shuffled)]:
        assert arrow_column(d, "text").to_pylist() == expected[name][0]
        assert numpy_column(d, "label").tolist() == expected[name][1]
    assert arrow_column(ds, "label").to_pylist() == list(range(100))
