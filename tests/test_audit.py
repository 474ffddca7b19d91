"""nlp-transfer audit: label errors (cleanlab on out-of-fold probabilities), duplicates and
leakage, outliers, the report and cleaned file, ``train --audit``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nlp_transfer.audit import audit
from nlp_transfer.audit.data import AuditData
from nlp_transfer.audit.duplicates import (
    exact_pairs,
    find_duplicates,
    near_pairs,
    normalize_text,
)
from nlp_transfer.audit.findings import suspects_table
from nlp_transfer.audit.labels import (
    folds_for,
    label_issues,
    multilabel_issues,
    out_of_fold_multilabel,
    out_of_fold_probabilities,
)
from nlp_transfer.audit.outliers import far_out_threshold, ood_scores

from conftest import toy_sentiment_frame


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- duplicates -------------------------------------------------------------------------------
def test_normalized_texts_compare_without_case_punctuation_and_spacing():
    assert normalize_text("Great  movie!!") == normalize_text("great movie") == "great movie"
    assert normalize_text("Ｇｒｅａｔ") == "great"  # NFKC folds full-width letters
    assert normalize_text("a-b") != normalize_text("ab")
    texts = ["Great movie!", "great   movie", "other", "...", "!!", "GREAT MOVIE"]
    assert exact_pairs(texts).tolist() == [[0, 1], [0, 5]]  # punctuation-only texts left out


@pytest.mark.parametrize("block_size", [1, 2, 1024])
def test_near_pairs_finds_exactly_the_pairs_above_the_threshold(block_size):
    features = _unit(np.array([[1.0, 0, 0], [0.99, 0.141, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    pairs, cosines = near_pairs(features, threshold=0.95, block_size=block_size)
    assert pairs.tolist() == [[0, 1]]
    assert cosines[0] == pytest.approx(0.99, abs=1e-3)
    assert len(near_pairs(features, threshold=0.1, block_size=block_size)[0]) == 2  # 0-1, 1-2
    with pytest.raises(ValueError, match="--near_duplicate_threshold"):
        near_pairs(features, threshold=1.5)


def test_duplicates_flag_conflicting_labels_and_leakage_into_test():
    texts = ["a good film", "A good film!", "bad plot", "a new text", "bad plot", "unrelated"]
    splits = ["train", "train", "train", "train", "test", "test"]
    labels = [1, 0, 0, 1, 0, 1]
    found = find_duplicates(texts, splits, labels, features=None)
    assert found["conflicting"].tolist() == [True, True, False, False, False, False]
    assert found["leaked"].tolist() == [False, False, False, False, True, False]
    assert found["counts"]["leaked_rows"] == {"test": 1}
    assert found["counts"]["exact_pairs"] == 2


def test_below_the_threshold_near_duplicates_need_the_same_wording():
    from nlp_transfer.audit.duplicates import text_similarity

    texts = [
        "a gorgeous, witty and moving film",
        "a gorgeous witty moving film",  # two words dropped: same wording
        "a less than thrilling thriller",
        "a thriller without a lot of thrills",  # a paraphrase: other wording
        "nothing like the others",
        "nothing like the others at all, really",
    ]
    assert text_similarity(texts[0], texts[1]) >= 0.8 > text_similarity(texts[2], texts[3])

    def features_with(cosines: dict) -> np.ndarray:
        gram = np.eye(len(texts))
        for (a, b), c in cosines.items():
            gram[a, b] = gram[b, a] = c
        values, vectors = np.linalg.eigh(gram)  # unit rows whose dot products are the gram
        return vectors * np.sqrt(np.clip(values, 0, None))

    features = features_with({(0, 1): 0.9, (2, 3): 0.9, (4, 5): 0.8})
    found = find_duplicates(texts, ["train"] * 6, [0] * 6, features)
    assert [(p["a"], p["b"]) for p in found["pairs"]] == [(0, 1)]  # (4, 5): below 0.85
    features = features_with({(0, 1): 0.9, (2, 3): 0.96, (4, 5): 0.8})
    found = find_duplicates(texts, ["train"] * 6, [0] * 6, features)
    assert [(p["a"], p["b"]) for p in found["pairs"]] == [(0, 1), (2, 3)]  # 0.96: any wording
    found = find_duplicates(texts, ["train"] * 6, [0] * 6, features, wording_min_cosine=0.95)
    assert [(p["a"], p["b"]) for p in found["pairs"]] == [(2, 3)]  # the wording rule off


# --- label errors -----------------------------------------------------------------------------
def _blobs(n: int = 240, seed: int = 0, classes: int = 3):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, 16)) * 6
    features = centres[labels] + rng.normal(size=(n, 16))
    return features, labels


def test_confident_learning_finds_the_flipped_labels_of_separable_classes():
    features, labels = _blobs()
    noisy = labels.copy()
    flipped = np.arange(0, 240, 16)  # 15 rows
    noisy[flipped] = (labels[flipped] + 1) % 3
    probs = out_of_fold_probabilities(features, noisy, 3, num_folds=5, seed=0)
    assert probs.shape == (240, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    found = label_issues(noisy, probs)
    assert set(found["issues"].tolist()) == set(flipped.tolist())
    assert (found["suggested"][flipped] == labels[flipped]).all()
    assert found["noise_matrix"].shape == (3, 3)
    np.testing.assert_allclose(found["noise_matrix"].sum(0), 1.0, atol=1e-6)  # columns: P(.|true)
    assert found["quality"][flipped].max() < np.delete(found["quality"], flipped).min()


def test_clean_labels_flag_nothing():
    features, labels = _blobs(seed=1)
    found = label_issues(labels, out_of_fold_probabilities(features, labels, 3, seed=1))
    assert len(found["issues"]) == 0


def test_folds_shrink_to_the_smallest_class_and_bad_folds_are_refused():
    assert folds_for(np.array([0] * 10 + [1] * 3), 5) == 3
    assert folds_for(np.array([0] * 10 + [1] * 1), 5) == 2
    assert folds_for(np.array([0] * 10 + [1] * 10), 5) == 5
    with pytest.raises(ValueError, match="--num_folds"):
        folds_for(np.array([0, 1, 0, 1]), 1)


def test_multi_label_issues_find_a_dropped_label():
    rng = np.random.default_rng(0)
    n = 300
    targets = (rng.random((n, 3)) < 0.4).astype(np.int64)
    features = targets * 5.0 + rng.normal(size=(n, 3))
    noisy = targets.copy()
    rows = np.flatnonzero(targets[:, 0])[:10]
    noisy[rows, 0] = 0  # label 0 dropped from 10 rows
    probs = out_of_fold_multilabel(features, noisy, num_folds=5, seed=0)
    found = multilabel_issues(noisy, probs)
    hits = len(set(rows.tolist()) & set(found["issues"].tolist()))
    assert hits >= 8  # of 10 dropped labels
    assert hits / len(found["issues"]) >= 0.6  # precision


# --- outliers ---------------------------------------------------------------------------------
def test_a_far_away_text_is_flagged_and_a_cluster_is_not():
    rng = np.random.default_rng(0)
    cluster = _unit(rng.normal(size=(200, 8)) * 0.05 + np.eye(8)[0])
    odd = _unit(np.eye(8)[[3]])
    train_scores, other = ood_scores(cluster, odd)
    threshold = far_out_threshold(train_scores)
    assert (train_scores < threshold).mean() <= 0.03  # a Gaussian cluster: few flagged
    assert other[0] < threshold


# --- the cleaned rows -------------------------------------------------------------------------
def _rows(texts, splits, labels) -> AuditData:
    return AuditData(
        texts=texts,
        splits=np.asarray(splits),
        rows=np.asarray([sum(s == splits[i] for s in splits[:i]) for i in range(len(splits))]),
        labels=labels,
        label_names=["neg", "pos"],
        problem_type="single_label_classification",
    )


def test_cleaning_drops_label_issues_extra_duplicates_and_leaked_training_copies():
    rows = _rows(
        ["fine film", "fine film!", "dull", "a test copy", "kept", "a test copy"],
        ["train", "train", "train", "train", "train", "test"],
        [1, 1, 0, 1, 0, 1],
    )
    duplicates = find_duplicates(rows.flat_texts(), rows.splits, rows.labels, features=None)
    n_train = 5
    labels = {
        "issues": np.array([2]),  # "dull"
        "quality": np.array([0.6, 0.9, 0.1, 0.8, 0.9]),
        "suggested": np.array([1, 1, 1, 1, 0]),
        "rows": np.arange(n_train),
    }
    outliers = {"ood": np.zeros(6, bool), "ood_score": np.ones(6), "ood_threshold": 0.0}
    table = suspects_table(rows, labels, duplicates, outliers)
    dropped = set(table.loc[table.dropped, "row"])
    # row 0 loses to row 1 (higher label quality); row 2 is a label issue; row 3 leaked to test
    assert dropped == {0, 2, 3}
    assert table.iloc[0]["reason"] == "label_issue"
    assert table.iloc[0]["suggested_label"] == "pos"
    assert not table.loc[table.split == "test", "dropped"].any()  # the test copy stays


# --- end to end -------------------------------------------------------------------------------
def _noisy_csv(path, n=120, flips=(3, 10, 17, 30)):
    frame = toy_sentiment_frame(n)
    frame["id"] = range(n)
    for i in flips:
        frame.loc[i, "sentiment"] = "neg" if frame.loc[i, "sentiment"] == "pos" else "pos"
    frame.loc[n - 1, "sentence"] = frame.loc[0, "sentence"].upper() + " !"  # a duplicate
    frame.to_csv(path, index=False)
    return frame


def test_audit_writes_its_report_and_a_cleaned_file_without_touching_the_source(
    tiny_bert_dir, tmp_path
):
    source = tmp_path / "train.csv"
    frame = _noisy_csv(source)
    before = source.read_bytes()
    test = tmp_path / "test.csv"
    frame.iloc[[5, 6]].to_csv(test, index=False)  # two leaked rows
    out, cleaned = tmp_path / "audit", tmp_path / "cleaned.csv"
    result = audit(
        source,
        test=test,
        output_dir=out,
        text_column="sentence",
        label_column="sentiment",
        model_name_or_path=str(tiny_bert_dir),
        write_cleaned=cleaned,
        cache_dir=tmp_path / "cache",
    )
    assert source.read_bytes() == before
    assert result.cleaned_file == cleaned and result.output_dir == out
    for name in ("audit.md", "audit.json", "suspects.csv", "plots/label_quality.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "audit.json").read_text())
    assert summary["rows"] == {"train": 120, "test": 2}
    assert summary["duplicates"]["leaked_rows"] == {"test": 2}
    suspects = pd.read_csv(out / "suspects.csv")
    assert {"split", "row", "reason", "score", "text", "label", "dropped"} <= set(suspects)
    kept = pd.read_csv(cleaned)
    assert list(kept.columns) == list(frame.columns)  # every column of the source
    dropped = set(suspects.loc[suspects.dropped & (suspects.split == "train"), "row"])
    assert {5, 6} <= dropped  # leaked training copies
    assert sorted(kept["id"]) == sorted(set(range(120)) - dropped)
    assert summary["cleaned"]["training_rows_kept"] == len(kept)
    # nothing is overwritten: the report directory and the cleaned file are refused a 2nd time
    with pytest.raises(FileExistsError, match="--write_cleaned"):
        audit(source, output_dir=tmp_path / "other", write_cleaned=cleaned)
    with pytest.raises(FileExistsError, match="--output_dir"):
        audit(source, output_dir=out, text_column="sentence", label_column="sentiment")


def test_features_are_cached_on_disk_and_read_back(tiny_bert_dir, tmp_path, monkeypatch):
    from nlp_transfer.audit.embed import embed_texts

    texts = ["good film", "bad plot", "good film"]
    first = embed_texts(texts, str(tiny_bert_dir), cache_dir=tmp_path)
    assert first.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 1

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although the features were cached")

    monkeypatch.setattr("transformers.AutoModel.from_pretrained", no_model)
    np.testing.assert_array_equal(embed_texts(texts, str(tiny_bert_dir), cache_dir=tmp_path), first)
    with pytest.raises(AssertionError, match="cached"):  # other texts: computed again
        embed_texts(["other"], str(tiny_bert_dir), cache_dir=tmp_path)


def test_cli_audit_prints_a_summary_and_refuses_bad_flags(tiny_bert_dir, tmp_path, capsys):
    from nlp_transfer.cli import main

    source = tmp_path / "train.csv"
    _noisy_csv(source, n=60)
    argv = ["audit", "--train_file", str(source), "--text_column", "sentence",
            "--label_column", "sentiment", "--model_name_or_path", str(tiny_bert_dir),
            "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert main([*argv, "--output_dir", str(tmp_path / "a"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == {"train": 60}
    assert main([*argv, "--output_dir", str(tmp_path / "b"), "--num_folds", "1"]) == 1
    assert "--num_folds must be at least 2" in capsys.readouterr().err
    assert main([*argv, "--output_dir", str(tmp_path / "c"), "--label_column", "nope"]) == 1
    assert "--label_column" in capsys.readouterr().err


def _tiny_run(tiny_bert_dir, source, out, **settings) -> dict:
    """One epoch of the tiny model on ``source`` (sentence, sentiment) into ``out``."""
    from nlp_transfer.text import TextClassificationConfig, run_text_classification

    config = dict(
        train_file=str(source),
        text_column="sentence",
        label_column="sentiment",
        model_name_or_path=str(tiny_bert_dir),
        output_dir=str(out),
        num_train_epochs=1,
        save_strategy="no",
    )
    return run_text_classification(TextClassificationConfig(**(config | settings)))


@pytest.mark.slow
def test_train_with_audit_writes_the_audit_of_its_own_splits_then_trains(tiny_bert_dir, tmp_path):
    source = tmp_path / "train.csv"
    _noisy_csv(source, n=80)
    out = tmp_path / "run"
    metrics = _tiny_run(tiny_bert_dir, source, out, audit=True, cache_dir=str(tmp_path / "cache"))
    summary = json.loads((out / "audit" / "audit.json").read_text())
    assert set(summary["rows"]) == {"train", "validation", "test"}
    assert summary["rows"]["test"] == metrics["test"]["num_examples"]  # the run's own splits
    assert (out / "metrics.json").exists()


# --- drift --------------------------------------------------------------------------------------
def test_mmd_test_accepts_one_distribution_and_rejects_a_shifted_one():
    from nlp_transfer.audit.drift import mmd_test

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(80, 5)), rng.normal(size=(70, 5))
    same = mmd_test(a, b, num_permutations=200, seed=0)
    assert same["p_value"] > 0.05
    shifted = mmd_test(a, b + 0.8, num_permutations=200, seed=0)
    assert shifted["p_value"] < 0.01
    assert shifted["mmd2"] > same["mmd2"]
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(a[:1], b)


def test_domain_classifier_tells_separable_samples_apart_only():
    from nlp_transfer.audit.drift import domain_classifier_auc

    rng = np.random.default_rng(0)
    a = rng.normal(size=(100, 4))
    assert domain_classifier_auc(a, rng.normal(size=(100, 4))) < 0.65
    assert domain_classifier_auc(a, rng.normal(size=(100, 4)) + 3) > 0.95


def test_black_box_shift_recovers_the_new_label_priors():
    from nlp_transfer.audit.drift import black_box_shift

    # a classifier right 80% / 90% of the time on classes 0 / 1; validation priors 0.5 / 0.5
    conditional = np.array([[0.8, 0.1], [0.2, 0.9]])  # P(predicted i | true j)
    confusion = np.round(conditional * np.array([500, 500])).astype(int)
    q = np.array([0.2, 0.8])
    shares = conditional @ q  # what the classifier predicts on the new texts
    predicted = np.repeat([0, 1], np.round(shares * 10_000).astype(int))
    shift = black_box_shift(confusion, predicted)
    np.testing.assert_allclose(shift["estimated_priors"], q, atol=0.005)
    np.testing.assert_allclose(shift["validation_priors"], [0.5, 0.5])
    assert shift["max_prior_change"] == pytest.approx(0.3, abs=0.005)


@pytest.mark.slow
def test_monitor_compares_new_texts_with_the_saved_fingerprint(tiny_bert_dir, tmp_path, capsys):
    from nlp_transfer.cli import main
    from nlp_transfer.text.fingerprint import load_fingerprint

    source = tmp_path / "train.csv"
    toy_sentiment_frame(300).to_csv(source, index=False)
    out = tmp_path / "run"
    metrics = _tiny_run(tiny_bert_dir, source, out)
    fingerprint = load_fingerprint(out)
    n_train = int(fingerprint["train_label_counts"].sum())
    assert 200 < n_train < 300
    held_out = 300 - n_train - metrics["test"]["num_examples"]  # validation (+ calibration)
    assert fingerprint["features"].shape == (held_out, 32)  # every held-out text (< 500)
    assert fingerprint["validation_confusion"].sum() == held_out
    same = tmp_path / "same.csv"
    toy_sentiment_frame(200, seed=7).to_csv(same, index=False)
    odd = tmp_path / "odd.csv"
    letters = [
        " ".join("abcdefghijklmnopqrstuvwxyz"[(i + k) % 26] for k in range(6)) for i in range(200)
    ]
    pd.DataFrame({"sentence": letters}).to_csv(odd, index=False)
    argv = ["monitor", "--model_dir", str(out), "--text_column", "sentence",
            "--num_permutations", "200", "--alpha", "0.01"]  # fmt: skip
    capsys.readouterr()  # the training run's summary
    assert main([*argv, "--file", str(same), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "no drift" and report["advice"] is None
    assert report["refit_advice"] is None
    assert fingerprint["feature_mean"].shape == fingerprint["feature_std"].shape == (32,)
    assert 0 <= report["mean_shift"] < 1
    assert len(report["label_shift"]["estimated_priors"]) == 2
    assert main([*argv, "--file", str(odd), "--fail_on_drift"]) == 3
    printed = capsys.readouterr().out
    assert "Verdict: drift" in printed
    assert "--task domain_adaptation" in printed and f"--source_file {source}" in printed
    assert (out / "conformal.json").is_file()  # so its sets were fitted on the training period
    assert f"nlp-transfer refit-conformal --model_dir {out} --file" in printed
    (out / "fingerprint.npz").unlink()
    assert main([*argv, "--file", str(odd)]) == 1
    assert "no fingerprint.npz" in capsys.readouterr().err


# --- fold classifiers -----------------------------------------------------------------------------
def test_tfidf_folds_find_flips_of_word_labelled_texts_and_the_ensemble_averages():
    from nlp_transfer.audit.labels import tfidf_out_of_fold_probabilities

    frame = toy_sentiment_frame(200)
    labels = (frame["sentiment"] == "pos").to_numpy().astype(int)
    noisy = labels.copy()
    flipped = np.array([4, 31, 77, 150])
    noisy[flipped] = 1 - noisy[flipped]
    probs = tfidf_out_of_fold_probabilities(list(frame["sentence"]), noisy, 2, seed=0)
    found = set(label_issues(noisy, probs)["issues"].tolist())
    assert set(flipped.tolist()) <= found and len(found) <= 8


def test_fold_classifier_defaults_by_problem_type_and_refuses_what_does_not_apply():
    from nlp_transfer.audit.run import DEFAULT_FOLD_CLASSIFIER, resolve_fold_classifier

    assert resolve_fold_classifier(None, "single_label_classification") == DEFAULT_FOLD_CLASSIFIER
    assert resolve_fold_classifier(None, "multi_label_classification") == "logistic_regression"
    assert resolve_fold_classifier("tfidf", "single_label_classification") == "tfidf"
    with pytest.raises(ValueError, match="--fold_classifier fine_tuned supports single-label"):
        resolve_fold_classifier("fine_tuned", "multi_label_classification")
    with pytest.raises(ValueError, match="--fold_classifier must be one of"):
        audit("x.csv", fold_classifier="svm")


@pytest.mark.slow
def test_fine_tuned_folds_train_one_run_per_fold_and_predict_its_held_out_rows(
    tiny_bert_dir, tmp_path
):
    source = tmp_path / "train.csv"
    _noisy_csv(source, n=60)
    out = tmp_path / "audit"
    result = audit(
        source,
        output_dir=out,
        text_column="sentence",
        label_column="sentiment",
        model_name_or_path=str(tiny_bert_dir),
        fold_classifier="fine_tuned",
        num_folds=2,
        cache_dir=tmp_path / "cache",
    )
    runs = sorted(p.name for p in (out / "folds").iterdir())
    assert runs == ["fold-0", "fold-1"]
    for run in runs:  # each fold run held out its own rows as test: half the data
        metrics = json.loads((out / "folds" / run / "metrics.json").read_text())
        assert metrics["test"]["num_examples"] == 30
    assert result.summary["settings"]["fold_classifier"] == "fine_tuned"
    assert 0.0 <= result.summary["label_issues"]["out_of_fold_accuracy"] <= 1.0
