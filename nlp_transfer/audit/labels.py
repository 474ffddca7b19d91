"""Likely label errors: out-of-fold probabilities, then confident learning through cleanlab.

Confident learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating Uncertainty
in Dataset Labels", JAIR 70) needs, for every training row, class probabilities from a model
that did not see that row: k-fold cross-validation gives them. The default model is a
logistic regression on the encoder's features (:mod:`.embed`), minutes on a CPU; the ranking,
the label-quality scores and the noise matrix are cleanlab's (``cleanlab.filter.
find_label_issues``, ``cleanlab.rank.get_label_quality_scores``, ``cleanlab.count``), the
maintained implementation of the paper.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)


def folds_for(labels: np.ndarray, num_folds: int) -> int:
    """The folds to use: ``num_folds``, fewer when the smallest class has fewer rows (at
    least 2).

    Raises:
        ValueError: ``num_folds`` below 2, or fewer than two rows in all.
    """
    if num_folds < 2:
        raise ValueError(f"--num_folds must be at least 2, got {num_folds}.")
    if len(labels) < 2:
        raise ValueError("The audit needs at least two labelled rows.")
    present = np.bincount(labels)
    smallest = int(present[present > 0].min())
    if smallest < num_folds:
        folds = max(2, smallest)
        logger.warning(
            f"The smallest class has {smallest} row(s): {folds} folds instead of {num_folds}."
        )
        return folds
    return num_folds


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_labels: int,
    *,
    num_folds: int = 5,
    seed: int = 42,
    C: float = 1.0,
) -> np.ndarray:
    """Each row's class probabilities from a model fitted on the other folds.

    scikit-learn's ``cross_val_predict(method="predict_proba")`` over ``StratifiedKFold``
    (shuffled, seeded) with a ``StandardScaler`` + ``LogisticRegression`` (L2, ``C``) pipeline.

    Args:
        features: ``(n, d)`` float features.
        labels: ``(n,)`` class ids in ``[0, num_labels)``.
        num_labels: Classes; a class absent from ``labels`` gets probability 0.
        num_folds: k (reduced when a class has fewer rows, with a warning).
        seed: Seed of the folds.
        C: Inverse L2 strength of the logistic regression.

    Returns:
        ``(n, num_labels)`` float64, rows summing to 1.

    Raises:
        ValueError: Fewer than two rows, ``num_folds`` below 2, or features and labels differ
            in length.
    """
    labels = np.asarray(labels)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows for {len(labels)} labels.")
    folds = folds_for(labels, num_folds)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # a class with fewer rows than folds: scikit-learn warns; folds_for has said so already
        warnings.simplefilter("ignore", UserWarning)
        probs = cross_val_predict(model, features, labels, cv=cv, method="predict_proba")
    present = np.unique(labels)
    out = np.zeros((len(labels), num_labels))
    out[:, present] = probs
    return out


# The most frequent word 1-2 grams kept: every measured sentence set has fewer (sentiment 99,506,
# SMS spam 42,997), so their results stand. Uncapped, the audit of 20 Newsgroups (11k long posts,
# 20 classes) ran single-threaded at 8 GB for 7 minutes after its features were done, and was
# stopped (benchmarks/results/audit.json, run_info.note).
MAX_TFIDF_FEATURES = 2**18


def tfidf_out_of_fold_probabilities(
    texts: list[str], labels: np.ndarray, num_labels: int, *, num_folds: int = 5, seed: int = 42
) -> np.ndarray:
    """:func:`out_of_fold_probabilities` from the words instead of the encoder: scikit-learn's
    ``TfidfVectorizer`` (word 1-2 grams, the :data:`MAX_TFIDF_FEATURES` most frequent,
    sublinear term frequencies; fitted inside each fold) and
    a logistic regression, over the same seeded folds.

    Args:
        texts: ``n`` strings (a sentence pair joined by a tab).
        labels: ``(n,)`` class ids.
        num_labels: Classes.

    Returns:
        ``(n, num_labels)``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    labels = np.asarray(labels)
    folds = folds_for(labels, num_folds)
    model = make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, max_features=MAX_TFIDF_FEATURES, dtype=np.float32
        ),
        LogisticRegression(C=10.0, max_iter=2000),
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        probs = cross_val_predict(model, list(texts), labels, cv=cv, method="predict_proba")
    out = np.zeros((len(labels), num_labels))
    out[:, np.unique(labels)] = probs
    return out


def label_issues(
    labels: np.ndarray, pred_probs: np.ndarray, filter_by: str = "prune_by_noise_rate"
) -> dict:
    """Confident learning on out-of-fold probabilities (cleanlab).

    Args:
        labels: ``(n,)`` given class ids.
        pred_probs: ``(n, C)`` out-of-fold probabilities.
        filter_by: cleanlab's ``find_label_issues`` rule: ``prune_by_noise_rate`` (its default:
            remove the estimated number of errors per class, least confident first),
            ``confident_learning`` (the off-diagonals of the confident joint) or ``both``
            (rows both rules flag: fewer, surer).

    Returns:
        ``{"issues": (m,) row indices flagged as likely mislabelled, most likely first
        (ranked by self-confidence); "quality": (n,) label-quality scores in [0, 1] (the
        probability of the given label; low is suspect); "suggested": (n,) the most probable
        class; "noise_matrix": (C, C) estimated P(given label = i | true label = j);
        "estimated_noise_rate": the share of rows whose given label is estimated wrong}``.
    """
    from cleanlab.count import compute_confident_joint, estimate_latent
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes with few rows
        issues = find_label_issues(
            labels,
            pred_probs,
            filter_by=filter_by,
            return_indices_ranked_by="self_confidence",
            n_jobs=1,
        )
        quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
        joint = compute_confident_joint(labels, pred_probs)
        _, noise_matrix, _ = estimate_latent(joint, labels)
    off_diagonal = joint.sum() - np.trace(joint)
    return {
        "issues": np.asarray(issues, dtype=np.int64),
        "quality": np.asarray(quality, dtype=np.float64),
        "suggested": pred_probs.argmax(1),
        "noise_matrix": np.asarray(noise_matrix, dtype=np.float64),
        "estimated_noise_rate": float(off_diagonal / max(joint.sum(), 1)),
    }


def out_of_fold_multilabel(
    features: np.ndarray, targets: np.ndarray, *, num_folds: int = 5, seed: int = 42, C: float = 1.0
) -> np.ndarray:
    """Multi-label counterpart of :func:`out_of_fold_probabilities`: one logistic regression per
    label (scikit-learn's ``OneVsRestClassifier``) over folds stratified by every label at once
    (``iterstrat``'s ``MultilabelStratifiedKFold``, Sechidis et al. 2011).

    Args:
        features: ``(n, d)``.
        targets: ``(n, C)`` multi-hot.

    Returns:
        ``(n, C)`` each label's out-of-fold probability (a label seen in every or no training
        fold gets its training frequency).

    Raises:
        ValueError: ``num_folds`` below 2, or fewer rows than folds.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if num_folds < 2:
        raise ValueError(f"--num_folds must be at least 2, got {num_folds}.")
    if len(targets) < num_folds:
        raise ValueError(f"{len(targets)} rows cannot make {num_folds} folds: lower --num_folds.")
    out = np.zeros(targets.shape, dtype=np.float64)
    folds = MultilabelStratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(features, targets):
        scaler = StandardScaler().fit(features[fit_rows])
        x_fit, x_held = scaler.transform(features[fit_rows]), scaler.transform(features[held_rows])
        for label in range(targets.shape[1]):
            y = targets[fit_rows, label]
            if y.min() == y.max():  # constant in these folds: its frequency
                out[held_rows, label] = y.mean()
                continue
            model = LogisticRegression(C=C, max_iter=2000).fit(x_fit, y)
            out[held_rows, label] = model.predict_proba(x_held)[:, 1]
    return out


def multilabel_issues(targets: np.ndarray, pred_probs: np.ndarray) -> dict:
    """Confident learning for multi-label rows (cleanlab's ``multi_label=True`` filter and
    ``multilabel_classification.get_label_quality_scores``).

    Returns:
        As :func:`label_issues`, with ``suggested`` the labels whose probability is at least
        0.5 (a ``(n, C)`` bool) and no noise matrix.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification import get_label_quality_scores

    lists = [list(np.flatnonzero(row)) for row in targets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues = find_label_issues(
            lists,
            pred_probs,
            multi_label=True,
            return_indices_ranked_by="self_confidence",
            n_jobs=1,
        )
        quality = get_label_quality_scores(lists, pred_probs)
    return {
        "issues": np.asarray(issues, dtype=np.int64),
        "quality": np.asarray(quality, dtype=np.float64),
        "suggested": pred_probs >= 0.5,
        "noise_matrix": None,
        "estimated_noise_rate": float(len(issues) / max(len(targets), 1)),
    }
