"""Frozen-prefix caching: exactness, keys, storage; length-grouped batches under 1 and 2 processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from safetensors.torch import load_file

from nlp_transfer.data.memory import memory_budget_bytes
from nlp_transfer.transfer.cache import (
    CachedPrefixModel,
    CachingCollator,
    add_cache_index,
    cache_key,
    choose_storage,
    compute_prefix_cache,
    load_disk_cache,
)
from nlp_transfer.transfer.freeze import freeze_encoder_layers, set_train_mode

from conftest import toy_sentiment_frame


@pytest.fixture()
def tiny(tiny_bert_dir):
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from nlp_transfer.text.model import build_text_classifier
    from nlp_transfer.text.tokenize import tokenize_dataset

    model, _ = build_text_classifier(str(tiny_bert_dir), label_names=["neg", "pos"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    frame = toy_sentiment_frame(40)
    frame["sentence"] = [
        s + " good" * (i % 7) for i, s in enumerate(frame["sentence"])
    ]  # lengths vary
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict(
        {"text": list(frame["sentence"]), "label": [int(x == "pos") for x in frame["sentiment"]]},
        features=features,
    )
    tokenized = tokenize_dataset(DatasetDict({"train": ds}), tokenizer, 64)["train"]
    return model, tokenizer, tokenized, DataCollatorWithPadding(tokenizer)


def _batches(tokenized, collator, cache, size=8):
    indexed = add_cache_index(tokenized)
    caching = CachingCollator(collator, cache)
    for start in range(0, len(indexed), size):
        rows = [indexed[i] for i in range(start, min(start + size, len(indexed)))]
        plain = collator([{k: v for k, v in r.items() if k != "cache_index"} for r in rows])
        yield plain, caching(rows)


@pytest.mark.parametrize("k", [1, 2])
def test_cached_prefix_gives_the_uncached_logits_in_eval_and_train_mode(tiny, k):
    model, _, tokenized, collator = tiny
    freeze_encoder_layers(model, k)
    cache = compute_prefix_cache(model, k, tokenized, collator, batch_size=16, dtype=torch.float32)
    assert len(cache) == len(tokenized)
    assert cache.values.shape[0] == sum(len(x) for x in tokenized["input_ids"])  # no padding stored
    wrapped = CachedPrefixModel(model, k)
    for plain, cached in _batches(tokenized, collator, cache):
        inputs = {n: t for n, t in plain.items() if n != "labels"}
        cached_inputs = {n: t for n, t in cached.items() if n != "labels"}
        wrapped.disable()
        model.eval()
        with torch.no_grad():
            expected = model(**inputs).logits
        wrapped.enable()
        with torch.no_grad():
            got = wrapped(**cached_inputs).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # Train mode: frozen prefix in eval mode, dropout above it; same seed, same masks.
        wrapped.disable()
        set_train_mode(model)
        torch.manual_seed(3)
        expected = model(**inputs).logits
        wrapped.enable()
        set_train_mode(wrapped)
        torch.manual_seed(3)
        got = wrapped(**cached_inputs).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    wrapped.disable()
    assert all("forward" not in m.__dict__ for m in model.modules())  # fully restored


def test_cache_key_changes_with_weights_k_data_and_dtype(tiny):
    model, tokenizer, tokenized, _ = tiny
    base = cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    assert base == cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    assert base != cache_key(model, 2, tokenizer, 64, tokenized, torch.float16)
    assert base != cache_key(model, 1, tokenizer, 32, tokenized, torch.float16)
    assert base != cache_key(model, 1, tokenizer, 64, tokenized.select(range(10)), torch.float16)
    assert base != cache_key(model, 1, tokenizer, 64, tokenized, torch.float32)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[0, 0] += 1e-3  # a frozen prefix weight
    assert base != cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[0, 0] -= 1e-3
        model.classifier.weight[0, 0] += 1.0  # the head is not part of the prefix
    assert base == cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)


def test_cache_key_changes_with_non_weight_config_and_library_versions(tiny, monkeypatch):
    import transformers

    model, tokenizer, tokenized, _ = tiny
    base = cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    eps = model.config.layer_norm_eps
    monkeypatch.setattr(model.config, "layer_norm_eps", eps * 10)  # same weights, other outputs
    assert base != cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    monkeypatch.setattr(model.config, "layer_norm_eps", eps)
    monkeypatch.setattr(model.config, "hidden_act", "relu")
    assert base != cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    monkeypatch.undo()
    assert base == cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    monkeypatch.setattr(transformers, "__version__", "0.0.1")
    assert base != cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)
    monkeypatch.undo()
    # Labels and the head's settings do not reach the prefix: a new task reuses the cache.
    monkeypatch.setattr(model.config, "id2label", {0: "bad", 1: "good"})
    monkeypatch.setattr(model.config, "label2id", {"bad": 0, "good": 1})
    assert base == cache_key(model, 1, tokenizer, 64, tokenized, torch.float16)


def test_disk_cache_round_trip_and_incomplete_cache_ignored(tiny, tmp_path):
    model, _, tokenized, collator = tiny
    memory = compute_prefix_cache(model, 1, tokenized, collator, dtype=torch.float16)
    path = tmp_path / "train-abc"
    compute_prefix_cache(model, 1, tokenized, collator, dtype=torch.float16, path=path)
    disk = load_disk_cache(path)
    assert isinstance(disk.values, np.memmap)
    np.testing.assert_array_equal(disk.offsets, memory.offsets)
    np.testing.assert_array_equal(np.asarray(disk.values), memory.values.numpy())
    (path / "complete.json").unlink()  # as if the writing process died
    assert load_disk_cache(path) is None


def test_storage_choice():
    assert choose_storage("memory", 10**12) == "memory"
    assert choose_storage("auto", 1000) == "memory"
    assert choose_storage("auto", 10**15) == "disk"  # more than a quarter of any RAM
    assert choose_storage("auto", 1000, num_processes=2) == "disk"  # shared by processes
    # a memory budget (--prefix_cache_memory_gb): above it on disk, within it in memory
    assert choose_storage("auto", 10**9 + 1, budget_bytes=memory_budget_bytes(1.0)) == "disk"
    assert choose_storage("auto", 10**9, budget_bytes=memory_budget_bytes(1.0)) == "memory"
    assert choose_storage("memory", 10**12, budget_bytes=0) == "memory"  # asked for: as asked
    assert memory_budget_bytes() > 0


def _run(tiny_bert_dir, data, out, *extra):
    import sentiment

    return sentiment.main(
        [
            "--model_name_or_path",
            str(tiny_bert_dir),
            "--train_file",
            str(data),
            "--text_column",
            "sentence",
            "--label_column",
            "sentiment",
            "--output_dir",
            str(out),
            "--learning_rate",
            "3e-3",
            "--num_train_epochs",
            "3",
            "--per_device_train_batch_size",
            "16",
            "--freeze_layers",
            "1",
            "--run_baseline",
            "false",
            *extra,
        ]
    )


def test_cached_run_matches_uncached_run_loss_curve_and_weights(
    tiny_bert_dir, toy_csv, tmp_path, capsys
):
    # Same seed, same batches, same dropout masks (building the cache draws no random numbers):
    # the loss curves agree to float rounding; float16 storage moves them a little more.
    slow = ()
    plain = _run(tiny_bert_dir, toy_csv, tmp_path / "plain", "--cache_frozen_prefix", "no", *slow)
    assert "Frozen-prefix cache" not in capsys.readouterr().err
    exact = _run(tiny_bert_dir, toy_csv, tmp_path / "f32", "--cache_dtype", "float32", *slow)
    err = capsys.readouterr().err
    assert (
        "Frozen-prefix cache: embeddings + layer_0..layer_0 computed once for 160 + 20 + 20" in err
    )
    half = _run(tiny_bert_dir, toy_csv, tmp_path / "f16", *slow)  # the default: float16
    for run, tol in ((exact, 1e-5), (half, 2e-3)):
        for a, b in zip(plain["validation"], run["validation"], strict=True):
            assert b["train_loss"] == pytest.approx(a["train_loss"], abs=tol)
            assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=tol)
    assert exact["test"]["accuracy"] == plain["test"]["accuracy"]
    a, b = (
        load_file(str(tmp_path / "plain" / "model.safetensors")),
        load_file(str(tmp_path / "f32" / "model.safetensors")),
    )
    assert a.keys() == b.keys()  # saved as the plain model, no wrapper prefix
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-3, rtol=1e-3, msg=name)
    # The saved model works on its own (its own forward, no cache).
    from nlp_transfer.text.predict import predict

    labels = [
        r["label"] for r in predict(tmp_path / "f32", ["great superb film", "awful dull plot"])
    ]
    assert set(labels) <= {"neg", "pos"} and len(labels) == 2


@pytest.mark.parametrize("processes", [1, 2])
def test_length_grouped_batches_hold_every_example_once_per_epoch(processes):
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from nlp_transfer.data.samplers import LengthGroupedSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=96).tolist()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = []
        for rank in range(processes):
            shard = BatchSamplerShard(BatchSampler(sampler, 8, False), processes, rank)
            sampler.set_epoch(epoch)
            batches = list(shard)
            seen += [i for b in batches for i in b]
            spreads = [
                max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1]
            ]
            assert (
                np.mean(spreads) < 20
            )  # grouped by length: far less than the 57 of a random batch
        assert sorted(seen) == list(range(96))


def test_feature_extraction_predictions_come_back_in_dataset_order(
    tiny_bert_dir, toy_csv, tmp_path
):
    """Features are computed in length-sorted batches; the test metrics must use the right rows."""
    out = tmp_path / "fe"
    metrics = _run(
        tiny_bert_dir,
        toy_csv,
        out,
        "--freeze_layers",
        "0",
        "--feature_extraction",
        "logistic_regression",
    )
    from nlp_transfer.text import TextClassificationConfig
    from nlp_transfer.text.inference import load_classifier, predict_logits_for_texts
    from nlp_transfer.text.loaders import load_data

    config = TextClassificationConfig(
        train_file=str(toy_csv), text_column="sentence", label_column="sentiment"
    )
    test = load_data(config)["test"]
    model, tokenizer, _ = load_classifier(out)
    logits = predict_logits_for_texts(model, tokenizer, test["text"])
    accuracy = float((logits.argmax(1) == np.array(test["label"])).mean())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])


@pytest.mark.parametrize(
    ("strategy", "flags"),
    [
        ("layer_lr_decay", ("--layer_lr_decay", "0.5", "--head_learning_rate", "1e-2")),
        ("l2sp", ("--l2sp_alpha", "0.5", "--l2sp_beta", "0.01")),
        ("gradual_unfreezing", ("--gradual_unfreezing",)),
    ],
)
def test_cached_run_matches_uncached_run_under_each_transfer_strategy(
    tiny_bert_dir, toy_csv, tmp_path, capsys, strategy, flags
):
    """Layer-wise LR decay, L2-SP and gradual unfreezing act on the trainable suffix (layer_1 and
    the head) whether or not the frozen prefix is cached: same losses, metrics and weights."""
    plain = _run(tiny_bert_dir, toy_csv, tmp_path / "plain", "--cache_frozen_prefix", "no", *flags)
    assert "Frozen-prefix cache" not in capsys.readouterr().err
    cached = _run(tiny_bert_dir, toy_csv, tmp_path / "cached", "--cache_dtype", "float32", *flags)
    assert "Frozen-prefix cache: embeddings + layer_0..layer_0" in capsys.readouterr().err
    assert strategy in plain["transfer_strategy"] and strategy in cached["transfer_strategy"]
    for a, b in zip(plain["validation"], cached["validation"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=1e-5)
        assert b.get("unfrozen_blocks") == a.get("unfrozen_blocks")
    assert cached["test"]["confusion_matrix"] == plain["test"]["confusion_matrix"]
    assert cached["test"]["loss"] == pytest.approx(plain["test"]["loss"], abs=1e-5)
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "cached" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_cache_command_lists_and_clears_prefix_caches_but_keeps_downloads(tmp_path, capsys):
    import json

    from nlp_transfer.cli.commands import main

    root = tmp_path / "cache"
    done, cut, left = (root / "prefix_cache" / n for n in ("train-abc", "test-abc", "images-x1"))
    for folder in (done, cut, left):
        folder.mkdir(parents=True)
        np.save(folder / "values.npy", np.zeros((4, 8), dtype=np.float16))
    (done / "complete.json").write_text("{}")
    (root / "downloads").mkdir()
    (root / "downloads" / "data-1.0.whl").write_bytes(b"x" * 1000)

    assert main(["cache", "--cache_dir", str(root), "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["train-abc"]["state"] == "complete"
    assert listed["test-abc"]["state"] == "incomplete"  # cut short: never read
    assert listed["images-x1"]["state"] == "left by a killed run"
    assert listed["data-1.0.whl"] == listed["data-1.0.whl"] | {"kind": "downloads", "bytes": 1000}
    assert listed["train-abc"]["bytes"] == (done / "values.npy").stat().st_size + 2

    assert main(["cache", "clear", "--cache_dir", str(root), "--dry_run"]) == 0
    assert "would remove 3 entries" in capsys.readouterr().out and done.exists()
    assert main(["cache", "clear", "--cache_dir", str(root)]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert not any((root / "prefix_cache").iterdir())
    assert (root / "downloads" / "data-1.0.whl").exists()  # not without --all
    assert main(["cache", "clear", "--all", "--cache_dir", str(root)]) == 0
    assert not (root / "downloads" / "data-1.0.whl").exists()
    assert main(["cache", "--cache_dir", str(root)]) == 0
    assert capsys.readouterr().out.strip().endswith("empty")
