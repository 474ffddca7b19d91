"""Domain adaptation end to end on a tiny model: joint batches, label isolation, the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from transformers import DataCollatorWithPadding

from nlp_transfer.adaptation import DomainAdaptationConfig, DomainSplits, run_domain_adaptation
from nlp_transfer.adaptation.data import paired_dataloader
from nlp_transfer.data import load_text_classification_dataset

from conftest import toy_sentiment_frame

ADAPTATION = ("source_only", "dann", "coral", "mmd")
# tiny BERT, --freeze_layers 1: layer_1 (6,789) + the new linear head on pooled features (66);
# DANN adds its domain classifier (32 x 32 + 32 + 32 x 2 + 2 = 1,122). BERT's own pooler and
# classifier are frozen (unused).
TRAINABLE = {"source_only": 6_855, "dann": 7_977, "coral": 6_855, "mmd": 6_855}


def _tokenized(n: int, seed: int, labelled: bool) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 12, (n,), generator=gen).tolist()
    columns = {
        "input_ids": [[5 + (i % 7)] * k for i, k in enumerate(lengths)],
        "attention_mask": [[1] * k for k in lengths],
    }
    features = {"input_ids": Sequence(Value("int64")), "attention_mask": Sequence(Value("int64"))}
    if labelled:
        columns["labels"] = [i % 2 for i in range(n)]
        features["labels"] = Value("int64")
    return Dataset.from_dict(columns, features=Features(features))


class _Pad:
    def __call__(self, features):
        width = max(len(f["input_ids"]) for f in features)
        batch = {
            k: torch.tensor([f[k] + [0] * (width - len(f[k])) for f in features])
            for k in ("input_ids", "attention_mask")
        }
        batch["index"] = torch.tensor([f["input_ids"][0] for f in features])
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


def _loader(seed=0, n_source=48, n_target=23, batch_size=4):
    return paired_dataloader(
        _tokenized(n_source, 1, True),
        _tokenized(n_target, 2, True),  # labelled on purpose: they must be dropped
        _Pad(),
        _Pad(),
        batch_size=batch_size,
        seed=seed,
    )


def _pairs(batch_sampler) -> list[list[tuple[int, int]]]:
    return [list(batch) for batch in batch_sampler]


def test_joint_batches_hold_source_labels_and_unlabelled_target_texts():
    loader = _loader()
    batch = next(iter(loader))
    assert batch["labels"].shape == (4,) and batch["input_ids"].shape[0] == 4
    assert batch["target_input_ids"].shape[0] == 4
    assert batch["target_attention_mask"].shape == batch["target_input_ids"].shape
    assert not any(k.startswith("target_") and "label" in k for k in batch)
    assert "labels" not in loader.dataset.target.column_names


def test_joint_batches_under_two_processes():
    """Each process builds its own sampler (same seed) and Accelerate hands it every other batch:
    together they see each source example once per epoch, with disjoint pairs, and the same
    pairs as one process would; target texts are reused only after a full pass over them."""
    from accelerate.data_loader import BatchSamplerShard

    single = _loader()
    single.batch_sampler.sampler.set_epoch(0)
    reference = _pairs(single.batch_sampler)
    shards = []
    for rank in range(2):
        process_loader = _loader()  # what the process with this rank builds
        process_loader.batch_sampler.sampler.set_epoch(0)
        shard = BatchSamplerShard(process_loader.batch_sampler, num_processes=2, process_index=rank)
        shards.append(_pairs(shard))
    assert len(shards[0]) == len(shards[1]) == len(reference) // 2
    assert [b for pair in zip(*shards, strict=True) for b in pair] == reference
    seen = [p for shard in shards for batch in shard for p in batch]
    assert sorted(i for i, _ in seen) == list(range(48))
    assert not set(map(tuple, shards[0][0])) & {p for b in shards[1] for p in b}
    targets = [j for _, j in (p for batch in reference for p in batch)]
    for start in range(0, 46, 23):  # passes of 23: each target text once per pass
        chunk = targets[start : start + 23]
        assert len(set(chunk)) == len(chunk)
    single.batch_sampler.sampler.set_epoch(1)
    assert _pairs(single.batch_sampler) != reference  # a new pairing every epoch


def _target_frame(n: int, seed: int) -> pd.DataFrame:
    """The toy task in another 'domain': letters instead of the movie filler words."""
    frame = toy_sentiment_frame(n, seed)
    for word, letters in (("movie", "q r"), ("film", "x y"), ("plot", "k"), ("story", "z")):
        frame["sentence"] = frame["sentence"].str.replace(word, letters)
    return frame


def _splits(flip_target_labels: bool = False) -> DomainSplits:
    source = load_text_classification_dataset(
        toy_sentiment_frame(80, 0), text_column="sentence", label_column="sentiment", seed=0
    )
    target = load_text_classification_dataset(
        _target_frame(60, 1), text_column="sentence", label_column="sentiment", seed=0
    )
    train = target["train"]
    if flip_target_labels:  # every target training label wrong
        train = train.map(lambda row: {"label": 1 - row["label"]})
        assert train.features["label"] == ClassLabel(names=["neg", "pos"])
    return DomainSplits(source, train, target["validation"], target["test"], "toy", "letters")


def _config(tiny_bert_dir, output_dir, **overrides) -> DomainAdaptationConfig:
    settings = dict(
        model_name_or_path=str(tiny_bert_dir),
        output_dir=str(output_dir),
        freeze_layers=1,
        learning_rate=1e-3,
        head_learning_rate=1e-2,
        num_train_epochs=2,
        oracle_num_train_epochs=2,
        per_device_train_batch_size=8,
        coral_weight=100.0,
    )
    return DomainAdaptationConfig(**(settings | overrides))


def _trained_part(method_metrics: dict) -> dict:
    keep = ("train_loss", "eval_loss", "eval_accuracy")
    return {
        "target_test": method_metrics["target_test"],
        "source_test": method_metrics["source_test"],
        "validation": [{k: h[k] for k in keep} for h in method_metrics["validation"]],
        "alignment": method_metrics["alignment"],
        "proxy_a_distance": method_metrics["proxy_a_distance"],
    }


def test_every_method_and_the_oracle_and_target_labels_never_reach_training(
    tiny_bert_dir, tmp_path
):
    """Two runs whose target training labels are all right / all wrong: every adaptation
    method ends identical (the labels never reached it); only the oracle, which trains on
    them, differs."""
    right = run_domain_adaptation(_config(tiny_bert_dir, tmp_path / "right"), _splits())
    wrong = run_domain_adaptation(_config(tiny_bert_dir, tmp_path / "wrong"), _splits(True))
    on_disk = json.loads((tmp_path / "right" / "metrics.json").read_text())
    assert list(on_disk["methods"]) == [*ADAPTATION, "oracle"]
    assert on_disk["source"] == "toy" and on_disk["target"] == "letters"
    assert 0 <= on_disk["pretrained"]["proxy_a_distance"]["domain_accuracy"] <= 1
    for method in ADAPTATION:
        m = on_disk["methods"][method]
        assert m["uses_target_labels"] is False
        assert m["target_test"]["num_examples"] == 6 and m["source_test"]["num_examples"] == 8
        assert m["trainable_params"] == TRAINABLE[method]
        assert len(m["validation"]) == 2 and m["validation"][0]["eval_num_examples"] == 8
        assert _trained_part(right["methods"][method]) == _trained_part(wrong["methods"][method])
    assert [len(on_disk["methods"][m]["alignment"]) for m in ADAPTATION] == [0, 2, 2, 2]
    coefficients = [e["coefficient"] for e in on_disk["methods"]["dann"]["alignment"]]
    assert 0 < coefficients[0] < coefficients[1] < 1  # the ramp
    assert "domain_accuracy" in on_disk["methods"]["dann"]["alignment"][0]
    oracle = on_disk["methods"]["oracle"]
    assert (
        oracle["uses_target_labels"] is True and oracle["validation"][0]["eval_num_examples"] == 6
    )
    assert _trained_part(right["methods"]["oracle"]) != _trained_part(wrong["methods"]["oracle"])
    assert (tmp_path / "right" / "config.yaml").exists()


def _write_files(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.csv" for name in ("source", "target", "target_test")}
    toy_sentiment_frame(64, 0).to_csv(paths["source"], index=False)
    _target_frame(40, 1)[["sentence"]].to_csv(paths["target"], index=False)  # no labels
    _target_frame(20, 2).to_csv(paths["target_test"], index=False)
    return paths


def _recipe_flags(tiny_bert_dir, paths, output_dir, *extra) -> list[str]:
    return [
        "--model_name_or_path",
        str(tiny_bert_dir),
        "--source_file",
        str(paths["source"]),
        "--target_train_file",
        str(paths["target"]),
        "--target_test_file",
        str(paths["target_test"]),
        "--text_column",
        "sentence",
        "--label_column",
        "sentiment",
        "--freeze_layers",
        "1",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def test_recipe_with_a_users_files_saves_models_that_predict(tiny_bert_dir, tmp_path, capsys):
    import domain_adaptation

    from nlp_transfer.text.predict import predict

    paths = _write_files(tmp_path)
    out = tmp_path / "run"
    flags = _recipe_flags(tiny_bert_dir, paths, out, "--methods", "source_only,dann")
    metrics = domain_adaptation.main([*flags, "--save_models"])
    assert list(metrics["methods"]) == ["source_only", "dann"]  # no oracle: unlabelled target
    assert metrics["methods"]["dann"]["target_test"]["num_examples"] == 20
    assert metrics["sizes"]["target_train"] == 40
    printed = capsys.readouterr().out
    assert "DANN (gradient reversal)" in printed and "pretrained features" in printed
    assert json.loads((out / "metrics.json").read_text())["methods"].keys() == {
        "source_only",
        "dann",
    }
    prediction = predict(out / "dann", ["good q r"])
    assert prediction[0]["label"] in ("neg", "pos")
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        domain_adaptation.main(flags)


def test_a_target_test_file_with_labels_the_source_does_not_have(tiny_bert_dir, tmp_path):
    import domain_adaptation

    paths = _write_files(tmp_path)
    frame = _target_frame(20, 2)
    frame["sentiment"] = frame["sentiment"].map({"pos": "great", "neg": "neg"})
    frame.to_csv(paths["target_test"], index=False)
    with pytest.raises(ValueError, match="not labels of the source domain"):
        domain_adaptation.main(_recipe_flags(tiny_bert_dir, paths, tmp_path / "bad"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": "source_only,adabn"}, "--methods must be"),
        ({"target_domain": None}, "Give the target domain"),
        ({"target_train_file": "x.csv"}, "needs --target_test_file"),
        ({"coral_weight": -1.0}, "--coral_weight must be >= 0"),
        ({"adaptation_schedule": "step"}, "--adaptation_schedule must be one of"),
        ({"per_device_train_batch_size": 1}, ">= 2"),
    ],
)
def test_config_errors_name_the_flag(overrides, message):
    with pytest.raises(ValueError, match=message):
        DomainAdaptationConfig(**overrides)


def test_target_domain_short_names():
    assert DomainAdaptationConfig().target_domain == "amazon_review_snippets"
    assert DomainAdaptationConfig(target_domain="nyt").target_domain == "nyt_editorial_snippets"
    config = DomainAdaptationConfig(target_train_file="u.csv", target_test_file="t.csv")
    assert config.target_domain is None


def test_padding_collator_sees_no_target_labels():
    """The real collator (``DataCollatorWithPadding``) on the real paired loader."""
    from transformers import BertTokenizer

    from conftest import _tiny_vocab

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(_tiny_vocab())})
    ds = DatasetDict(
        {
            "s": Dataset.from_dict({"text": ["good film", "bad plot"], "label": [1, 0]}),
            "t": Dataset.from_dict({"text": ["good q r", "bad x y z"], "label": [0, 0]}),
        }
    )
    from nlp_transfer.text.tokenize import tokenize_dataset

    tok = tokenize_dataset(ds, tokenizer, 16)
    pad = DataCollatorWithPadding(tokenizer)
    batch = next(iter(paired_dataloader(tok["s"], tok["t"], pad, pad, batch_size=2, seed=0)))
    assert sorted(batch) == [
        "attention_mask",
        "input_ids",
        "labels",
        "target_attention_mask",
        "target_input_ids",
        "target_token_type_ids",
        "token_type_ids",
    ]


def test_cli_train_task_domain_adaptation(tiny_bert_dir, tmp_path, capsys):
    from nlp_transfer.cli.commands import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["train", "--task", "domain_adaptation", "--help"])
    text = capsys.readouterr().out
    for title in (
        "Data:",
        "Model and adaptation methods:",
        "Optimisation:",
        "Evaluation and outputs:",
        "Checkpoints and resuming:",
    ):
        assert title in text
    for flag in ("--target_domain", "--dann_weight", "--adaptation_schedule", "--oracle"):
        assert flag in text
    paths = _write_files(tmp_path)
    flags = _recipe_flags(tiny_bert_dir, paths, tmp_path / "cli", "--methods", "mmd")
    assert cli_main(["train", "--task", "domain_adaptation", *flags]) == 0
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["mmd"]


@pytest.mark.slow
def test_two_cpu_processes_run_every_method(tiny_bert_dir, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2`: joint batches sharded over 2 gloo
    processes; every evaluation counts each example once."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    paths = _write_files(tmp_path)
    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO / "recipes" / "domain_adaptation.py"),
        *_recipe_flags(tiny_bert_dir, paths, out, "--per_device_eval_batch_size", "3"),
        *("--cache_dir", str(tmp_path / "cache")),  # two processes share a disk prefix cache
        *("--mixed_precision", "auto"),  # both processes must agree on the probe's choice
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["num_processes"] == 2
    assert "--mixed_precision auto: " in proc.stderr
    assert metrics["environment"]["mixed_precision"] in ("no", "bf16")
    assert list(metrics["methods"]) == list(ADAPTATION)
    for m in metrics["methods"].values():
        assert m["target_test"]["num_examples"] == 20
        assert sum(map(sum, m["target_test"]["confusion_matrix"])) == 20
        assert m["validation"][0]["eval_num_examples"] == 7  # 10% of 64 source rows
    # 51 source training rows, 8 per batch and process: 4 joint batches per process
    assert len(metrics["methods"]["dann"]["alignment"]) == 1
    # The shared prefix cache went to --cache_dir (not the user's own cache), complete.
    from nlp_transfer.data.disk_cache import cache_entries

    caches = [e for e in cache_entries(tmp_path / "cache") if e.kind == "prefix_cache"]
    assert caches and all(e.state == "complete" for e in caches)


def _pooled_features(model_dir: Path, texts: list[str]) -> torch.Tensor:
    """Mean-pooled encoder features ``(n, hidden)`` of a saved adaptation model."""
    from transformers import AutoModel, AutoTokenizer

    from nlp_transfer.transfer.features import pool

    encoder = AutoModel.from_pretrained(model_dir).eval()
    batch = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return pool(encoder(**batch).last_hidden_state, batch["attention_mask"], "mean")


def test_coral_and_mmd_reduce_their_discrepancy_on_a_toy_domain_shift(tiny_bert_dir, tmp_path):
    """Same seed and initialisation: the features of the CORAL model have a smaller CORAL
    distance between the domains than source-only's, and the MMD model's a smaller MMD.

    DANN is left out: on this toy shift (tiny random encoder, 4 epochs of 8 batches) its
    discriminator stays near chance and neither the proxy A-distance nor the MMD falls.
    """
    from nlp_transfer.adaptation import coral_loss, mmd_loss

    splits = _splits()
    config = _config(
        tiny_bert_dir,
        tmp_path,
        methods="source_only,coral,mmd",
        oracle=False,
        save_models=True,
        learning_rate=1e-2,
        num_train_epochs=4,
        coral_weight=1e4,
        mmd_weight=10.0,
    )
    run_domain_adaptation(config, splits)
    source_texts = list(splits.source["train"]["text"])
    target_texts = list(splits.target_train["text"])
    distance = {}
    for method in ("source_only", "coral", "mmd"):
        source = _pooled_features(tmp_path / method, source_texts)
        target = _pooled_features(tmp_path / method, target_texts)
        distance[method] = {"coral": coral_loss(source, target), "mmd": mmd_loss(source, target)}
    assert distance["coral"]["coral"] < 0.5 * distance["source_only"]["coral"], distance
    assert distance["mmd"]["mmd"] < 0.5 * distance["source_only"]["mmd"], distance
