"""How far apart two domains are in a feature space: the proxy A-distance.

Ben-David et al. (2007, "Analysis of Representations for Domain Adaptation", NIPS; 2010,
"A theory of learning from different domains", Machine Learning 79) bound the target error of
a classifier by its source error plus a distance between the domains' feature distributions.
The proxy A-distance estimates that distance from data: train a classifier to tell source
features from target features; with its held-out error ``err``, ``PAD = 2 (1 - 2 err)``: 0 when
the domains are indistinguishable (``err = 0.5``), 2 when they are perfectly separable.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def proxy_a_distance(
    source: np.ndarray, target: np.ndarray, *, folds: int = 5, seed: int = 0, max_per_domain=1000
) -> dict:
    """The proxy A-distance between two sets of feature vectors.

    The domain classifier is scikit-learn's ``LogisticRegression`` (L2, C=1) on standardised
    features; its error is the mean over ``folds`` stratified cross-validation folds. Both
    domains contribute the same number of vectors (a random subset of the larger one), so
    chance is exactly 0.5.

    Args:
        source: ``(n_s, d)`` source features.
        target: ``(n_t, d)`` target features.
        folds: Cross-validation folds, >= 2.
        seed: Seed of the subsampling and the folds.
        max_per_domain: Use at most this many vectors of each domain (speed).

    Returns:
        ``{"proxy_a_distance", "domain_accuracy", "examples_per_domain"}``. The distance is
        ``2 (1 - 2 err)``, which can dip slightly below 0 when the classifier does worse than
        chance on held-out folds.

    Raises:
        ValueError: Fewer than ``folds`` vectors in a domain, or feature sizes differ.
    """
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"Feature shapes differ: {source.shape} vs {target.shape}.")
    n = min(len(source), len(target), max_per_domain)
    if n < folds:
        raise ValueError(f"Need at least {folds} vectors per domain, got {n}.")
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            source[rng.choice(len(source), n, replace=False)],
            target[rng.choice(len(target), n, replace=False)],
        ]
    ).astype(np.float64)
    y = np.repeat([0, 1], n)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy = float(np.mean(cross_val_score(classifier, x, y, cv=cv, scoring="accuracy")))
    return {
        "proxy_a_distance": 2.0 * (1.0 - 2.0 * (1.0 - accuracy)),
        "domain_accuracy": accuracy,
        "examples_per_domain": int(n),
    }
