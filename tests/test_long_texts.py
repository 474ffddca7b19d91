"""Long documents (``--long_text_strategy``): windows, head + tail, pooling per document, and
the same reading of a document in training and in every prediction backend."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import AutoTokenizer

from nlp_transfer import TextClassificationConfig, TextClassifier, run_text_classification
from nlp_transfer.text.defaults import LONG_TEXT_SHARE, auto_long_text_strategy
from nlp_transfer.text.tokenize import build_dataloaders, tokenize_dataset
from nlp_transfer.text.windows import (
    HEAD_TAIL,
    LongTextSettings,
    encode_documents,
    first_of_each,
    pool_windows,
)
from nlp_transfer.training.evaluation import predict_logits

from conftest import FILLER, NEGATIVE, POSITIVE

LETTERS = list("abcdefghijklmnopqrstuvwxyz")
TEST_ONLY = [c for c in LETTERS if c not in FILLER]  # "a" is a filler word too


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def content(tokenizer, ids: list[int]) -> list[int]:
    return [i for i in ids if i not in tokenizer.all_special_ids]


@pytest.mark.parametrize("stride", [0, 3, 6])
def test_windows_cover_every_token_and_share_stride_tokens(tokenizer, stride):
    text = " ".join(LETTERS + FILLER)  # 36 tokens
    settings = LongTextSettings("chunks", stride=stride, max_chunks=100)
    encoded, document, cut = encode_documents(tokenizer, [text, "good"], None, 12, settings)
    whole = content(tokenizer, tokenizer(text)["input_ids"])
    rows = zip(encoded["input_ids"], document, strict=True)
    windows = [content(tokenizer, ids) for ids, d in rows if d == 0]
    assert document == [0] * len(windows) + [1] and cut == [False, False]
    assert all(len(ids) <= 12 for ids in encoded["input_ids"])
    rebuilt = list(windows[0])
    for previous, window in itertools.pairwise(windows):
        assert window[:stride] == previous[len(previous) - stride :]  # the shared tokens
        rebuilt += window[stride:]
    assert rebuilt == whole  # every token, in order, none twice beyond the overlap


def test_max_chunks_keeps_the_first_and_last_windows(tokenizer):
    text = " ".join(LETTERS + FILLER + LETTERS)
    every = encode_documents(tokenizer, [text], None, 10, LongTextSettings("chunks", 2, 100))[0]
    capped, document, cut = encode_documents(
        tokenizer, [text], None, 10, LongTextSettings("chunks", 2, max_chunks=3)
    )
    assert len(every["input_ids"]) > 3 and document == [0, 0, 0] and cut == [True]
    assert capped["input_ids"][0] == every["input_ids"][0]
    assert capped["input_ids"][-1] == every["input_ids"][-1]


def test_head_tail_keeps_the_beginning_and_the_end(tokenizer):
    text = " ".join(LETTERS)  # 26 content tokens
    encoded, _, cut = encode_documents(tokenizer, [text], None, 22, LongTextSettings(HEAD_TAIL))
    ids = encoded["input_ids"][0]
    assert len(ids) == 22 and cut == [True]
    kept = tokenizer.convert_ids_to_tokens(content(tokenizer, ids))
    head = round(20 * 128 / 510)  # Sun et al.'s share of the 20-token budget
    assert kept == LETTERS[:head] + LETTERS[-(20 - head) :]
    # a sentence pair: the first text whole, the second's head and tail
    pair, _, _ = encode_documents(
        tokenizer, ["good movie"], [text], 22, LongTextSettings(HEAD_TAIL)
    )
    tokens = tokenizer.convert_ids_to_tokens(pair["input_ids"][0])
    assert tokens[:4] == ["[CLS]", "good", "movie", "[SEP]"] and len(tokens) == 22
    assert tokens[-2:] == ["z", "[SEP]"] and sum(pair["token_type_ids"][0]) == 22 - 4


def test_pooling_is_the_mean_or_max_of_each_documents_windows():
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.5, 0.5], [-1.0, 4.0]], dtype=np.float32)
    document = np.array([1, 0, 1, 1])
    mean = pool_windows(logits, document, 2, "mean")
    np.testing.assert_allclose(mean, [[3.0, -2.0], [(1 + 0.5 - 1) / 3, (0 + 0.5 + 4) / 3]])
    np.testing.assert_allclose(pool_windows(logits, document, 2, "max"), [[3, -2], [1, 4]])
    assert first_of_each(np.array([7, 8, 9, 10]), document, 2).tolist() == [8, 7]
    with pytest.raises(ValueError, match="at least one window"):
        pool_windows(logits, document, 3)


def _long_docs(n: int, seed: int = 0) -> pd.DataFrame:
    """Generated long texts whose label is told by the LAST word only (after 30 filler words)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(30)]
        words.append(rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def test_no_window_of_a_test_document_reaches_training(tokenizer):
    def split(words, n, labels):
        texts = [" ".join(random.Random(i).choices(words, k=25)) for i in range(n)]
        return Dataset.from_dict(
            {"text": texts, "label": [i % 2 for i in range(n)]},
            features=Features({"text": Value("string"), "label": ClassLabel(names=labels)}),
        )

    labels = ["neg", "pos"]
    data = DatasetDict(
        {
            "train": split(FILLER, 6, labels),
            "validation": split(FILLER, 2, labels),
            "test": split(TEST_ONLY, 5, labels),  # words no training text has
        }
    )
    settings = LongTextSettings("chunks", stride=2, max_chunks=8)
    tokenized = tokenize_dataset(data, tokenizer, 10, long_text=settings)
    test_only = set(tokenizer.convert_tokens_to_ids(TEST_ONLY))
    train_ids = {i for ids in tokenized["train"]["input_ids"] for i in ids}
    assert not train_ids & test_only
    for name, ds in tokenized.items():
        docs = np.array(ds["document"])
        assert set(docs) == set(range(len(data[name])))  # every document, and only its own
        assert np.all(np.diff(docs) >= 0)  # a document's windows are consecutive
        expected = np.array(data[name]["label"])[docs]
        np.testing.assert_array_equal(ds["labels"], expected)  # each window its document's label
    assert len(tokenized["test"]) > len(data["test"])


def test_evaluation_pools_windows_into_one_row_per_document(tiny_bert_dir, tokenizer):
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification

    texts = [" ".join(FILLER * 3), "good", " ".join(LETTERS)]
    data = DatasetDict(
        {
            "test": Dataset.from_dict(
                {"text": texts, "label": [0, 1, 0]},
                features=Features(
                    {"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])}
                ),
            )
        }
    )
    settings = LongTextSettings("chunks", stride=4, max_chunks=8)
    tokenized = tokenize_dataset(data, tokenizer, 12, long_text=settings)
    loader = build_dataloaders(
        tokenized, tokenizer, per_device_train_batch_size=4, per_device_eval_batch_size=3
    )["test"]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    accelerator = Accelerator(cpu=True)
    prepared_model, prepared_loader = accelerator.prepare(model, loader)
    logits, labels = predict_logits(prepared_model, prepared_loader, accelerator, pooling="max")
    assert logits.shape == (3, 2) and labels.tolist() == [0, 1, 0]
    # by hand: each window alone through the model, then the max per document
    by_hand = []
    for d in range(3):
        rows = [i for i, doc in enumerate(tokenized["test"]["document"]) if doc == d]
        with torch.no_grad():
            window_logits = [
                model(input_ids=torch.tensor([tokenized["test"][r]["input_ids"]])).logits[0]
                for r in rows
            ]
        by_hand.append(torch.stack(window_logits).max(0).values.numpy())
    np.testing.assert_allclose(logits, np.stack(by_hand), atol=1e-5)


def _train_chunks(tiny_bert_dir, path, out, **settings) -> dict:
    """A tiny run reading its texts in windows (``chunks``, stride 4 unless given)."""
    defaults = dict(
        model_name_or_path=str(tiny_bert_dir),
        train_file=str(path),
        output_dir=str(out),
        num_train_epochs=1,
        learning_rate=1e-3,
        long_text_strategy="chunks",
        stride=4,
        save_strategy="no",
        seed=0,
    )
    return run_text_classification(TextClassificationConfig(**(defaults | settings)))


def test_chunks_model_trains_and_predicts_each_document_alike_in_every_backend(
    tiny_bert_dir, tmp_path
):
    path = tmp_path / "long.csv"
    _long_docs(80).to_csv(path, index=False)
    out = tmp_path / "out"
    metrics = _train_chunks(tiny_bert_dir, path, out, num_train_epochs=2, max_seq_length=16)
    n_test = len(pd.read_csv(path)) // 10  # the 80/10/10 split: metrics per document
    assert metrics["test"]["num_examples"] == n_test
    assert np.asarray(metrics["test"]["confusion_matrix"]).sum() == n_test
    assert metrics["long_text"]["strategy"] == "chunks" and metrics["long_text"]["stride"] == 4
    saved = json.loads((out / "config.json").read_text())
    assert saved["long_text"] == {"strategy": "chunks", "stride": 4, "max_chunks": 4,
                                  "pooling": "mean"}  # fmt: skip

    documents = [*_long_docs(6, seed=9)["text"], "good"]
    torch_classifier = TextClassifier.from_pretrained(out)
    expected = torch_classifier.predict_logits(documents)
    alone = np.concatenate([torch_classifier.predict_logits([d]) for d in documents])
    np.testing.assert_allclose(alone, expected, atol=1e-5)  # batching does not change a document
    # by hand: the document's windows through the model one at a time, mean of their logits
    settings = LongTextSettings.of(torch_classifier.config)
    encoded, _, _ = encode_documents(torch_classifier.tokenizer, documents[:1], None, 16, settings)
    assert len(encoded["input_ids"]) > 1
    with torch.no_grad():
        hand = torch.stack(
            [torch_classifier.model(input_ids=torch.tensor([ids])).logits[0]
             for ids in encoded["input_ids"]]
        ).mean(0)  # fmt: skip
    np.testing.assert_allclose(expected[0], hand.numpy(), atol=1e-5)

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    onnx = TextClassifier.from_pretrained(out, backend="onnxruntime").predict_logits(documents)
    np.testing.assert_allclose(onnx, expected, atol=1e-4)
    int8 = TextClassifier.from_pretrained(out, backend="onnxruntime", quantize="int8")
    labels = [r["label"] for r in int8.predict(documents)]
    assert labels == [r["label"] for r in torch_classifier.predict(documents)]


def test_bad_long_text_settings_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--long_text_strategy must be one of"):
        TextClassificationConfig(long_text_strategy="windows", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--stride 200 must be smaller"):
        TextClassificationConfig(
            long_text_strategy="chunks", stride=200, max_seq_length=128, output_dir=str(tmp_path)
        )
    with pytest.raises(ValueError, match="--feature_extraction"):
        TextClassificationConfig(
            long_text_strategy="chunks",
            feature_extraction="logistic_regression",
            output_dir=str(tmp_path),
        )
    with pytest.raises(ValueError, match="--max_chunks"):
        TextClassificationConfig(
            long_text_strategy="chunks", max_chunks=0, output_dir=str(tmp_path)
        )


def test_auto_strategy_truncates_and_names_the_others_when_many_texts_are_cut():
    short = np.array([40] * 90 + [300] * 10)
    strategy, reason = auto_long_text_strategy(short, 128)
    assert strategy == "truncate" and "chunks" not in reason
    share = int(100 * LONG_TEXT_SHARE) + 5
    long = np.array([40] * (100 - share) + [300] * share)
    strategy, reason = auto_long_text_strategy(long, 128)
    assert strategy == "truncate" and f"{share}%" in reason
    assert "--long_text_strategy chunks" in reason


def _long_frame(kind: str, n: int = 60) -> pd.DataFrame:
    """Generated long texts of each problem type; the telling words come after 20 filler words."""
    rng = random.Random(1)
    rows = []
    for i in range(n):
        k_pos, k_neg = i % 3, (i // 3) % 2
        words = [rng.choice(FILLER) for _ in range(20)]
        words += rng.sample(POSITIVE, k_pos) + rng.sample(NEGATIVE, k_neg)
        row = {"text": " ".join(words)}
        if kind == "multi_label":
            row["tags"] = "|".join(t for t, k in (("pos", k_pos), ("neg", k_neg)) if k)
        elif kind == "regression":
            row["score"] = float(k_pos - k_neg)
        else:  # pairs: a short first text, the long one second
            row["question"] = rng.choice(["good or bad", "which one"])
            row["label"] = "pos" if k_pos > k_neg else "neg"
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("multi_label", {"label_column": "tags", "label_separator": "|"}),
        ("regression", {"label_column": "score", "problem_type": "regression"}),
        (
            "pairs",
            {
                "text_column": "question",
                "text_pair_column": "text",
                "freeze_layers": 1,
                "cache_frozen_prefix": "memory",
            },
        ),
    ],
)
def test_chunks_work_for_every_problem_type_and_the_prefix_cache(
    tiny_bert_dir, tmp_path, kind, settings
):
    path = tmp_path / f"{kind}.csv"
    frame = _long_frame(kind)
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    metrics = _train_chunks(tiny_bert_dir, path, out, max_seq_length=12, stride=2, **settings)
    assert metrics["long_text"]["strategy"] == "chunks"
    classifier = TextClassifier.from_pretrained(out)
    texts = list(frame["text"][:5])
    if kind == "pairs":
        texts = list(zip(frame["question"][:5], texts, strict=True))
    logits = classifier.predict_logits(texts)
    assert logits.shape[0] == 5  # one row per document, not per window
    results = classifier.predict(texts)
    assert len(results) == 5
    if kind == "multi_label":
        assert set(results[0]["scores"]) == {"neg", "pos"}
    elif kind == "regression":
        assert isinstance(results[0]["score"], float)


def test_windows_per_text_matches_the_windows_made(tokenizer):
    from nlp_transfer.text.defaults import resolve_auto_settings
    from nlp_transfer.text.windows import windows_per_text

    texts = [" ".join((FILLER * 9)[:n]) for n in (3, 10, 11, 25, 40, 80)]
    settings = LongTextSettings("chunks", stride=3, max_chunks=5)
    _, document, _ = encode_documents(tokenizer, texts, None, 12, settings)
    lengths = np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])
    assert windows_per_text(lengths, 12, settings) == pytest.approx(len(document) / len(texts))
    assert windows_per_text(lengths, 12, LongTextSettings()) == 1.0
    # the epoch budget counts windows: more rows per text, fewer epochs for the same steps
    from accelerate import PartialState

    PartialState()  # the rule logs through Accelerate
    config = TextClassificationConfig(output_dir="unused", early_stopping_patience=2)
    plain = resolve_auto_settings(config, 2000, 2)
    windowed = resolve_auto_settings(config, 2000, 2, rows_per_example=3.0)
    assert windowed.num_train_epochs < plain.num_train_epochs
