"""Weighted split conformal prediction for texts whose distribution has shifted.

Split conformal prediction (:mod:`~nlp_transfer.metrics.conformal`) promises its coverage
when the texts to predict are exchangeable with the held-out calibration rows. When the inputs
drift (newer posts, another source) but a text's label given the text does not (covariate
shift), **weighted conformal prediction** restores the promise (Tibshirani, Barber, Candès and
Ramdas 2019, "Conformal Prediction Under Covariate Shift", NeurIPS, eq. (7)): each held-out
score ``V_i`` is weighted by the likelihood ratio ``w(x) = dP_new(x) / dP_held(x)`` at its
text, and a new text ``x`` gets its own threshold, the ``coverage`` quantile of

    sum_i  w(X_i) / (W + w(x)) * delta(V_i)  +  w(x) / (W + w(x)) * delta(+inf),
    W = sum_i w(X_i).

Texts that look unlike the held-out rows get wider sets; with no shift, ``w = 1`` and the
threshold is split conformal's.

The ratio is estimated as in the paper's section 4.1: a probabilistic classifier tells the
held-out rows from the batch to predict (logistic regression on standardised features, classes
balanced, so its odds ``p / (1 - p)`` are the ratio), cross-fitted so that no row is scored by a
classifier that saw it. Which features: the model's own log-probabilities, which every backend
has (``docs/calibration.md`` says what this bought on 20 Newsgroups' by-date split). The batch
must be large enough to estimate the shift (:data:`MIN_NEW_ROWS`); the promise then holds to
the extent the estimated ratio is right.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

MIN_NEW_ROWS = 50  # fewer texts to predict: too few to estimate a shift from
FOLDS = 5
MAX_ODDS = 100.0  # classifier probabilities clipped to [1/101, 100/101]: no row dominates


def _odds(prob: np.ndarray) -> np.ndarray:
    low = 1.0 / (MAX_ODDS + 1.0)
    prob = np.clip(prob, low, 1.0 - low)
    return prob / (1.0 - prob)


def _domain_classifier(features: np.ndarray, domain: np.ndarray, regularization: float):
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(C=regularization, class_weight="balanced", max_iter=2000)
    return scaler, classifier.fit(scaler.transform(features), domain)


@dataclasses.dataclass
class CovariateShift:
    """The estimated likelihood ratio ``dP_new / dP_held`` (:func:`estimate_covariate_shift`).

    Attributes:
        held: ``(n,)`` weights of the held-out rows (cross-fitted: each from a classifier that
            did not see it).
        domain_auc: ROC AUC of the cross-fitted classifier telling the held-out rows from the
            sample (0.5: no shift it can find).
        effective_sample_size: ``(sum w)^2 / sum w^2`` over the held-out rows: how many of them
            the weighted quantile effectively rests on.
        sample_rows: Rows of the new distribution it was estimated from.
    """

    held: np.ndarray
    domain_auc: float
    effective_sample_size: float
    sample_rows: int
    scaler: StandardScaler
    classifier: LogisticRegression

    def weights(self, features: np.ndarray) -> np.ndarray:
        """``(m,)`` float64 weights of new rows from their ``(m, d)`` features (the
        classifier fitted on every held-out and sample row)."""
        scaled = self.scaler.transform(np.asarray(features, dtype=np.float64))
        return _odds(self.classifier.predict_proba(scaled)[:, 1])


def estimate_covariate_shift(
    held: np.ndarray, sample: np.ndarray, seed: int = 0, regularization: float = 0.1
) -> CovariateShift:
    """Estimate ``dP_new / dP_held`` from held-out rows and a sample of the new distribution.

    Args:
        held: ``(n, d)`` features of the held-out (calibration) rows.
        sample: ``(m, d)`` features of rows from the distribution to predict (the texts to
            predict themselves, or a sample of them).
        seed: Seeds the cross-fitting folds.
        regularization: Inverse L2 strength ``C`` of the logistic regression.

    Returns:
        The estimate; its :meth:`~CovariateShift.weights` weighs any new row.

    Raises:
        ValueError: Fewer than :data:`MIN_NEW_ROWS` sample rows, or features of another width.
    """
    held, sample = np.asarray(held, dtype=np.float64), np.asarray(sample, dtype=np.float64)
    if held.ndim != 2 or sample.ndim != 2 or held.shape[1] != sample.shape[1]:
        raise ValueError(f"Features of one width needed, got {held.shape} and {sample.shape}.")
    if len(sample) < MIN_NEW_ROWS:
        raise ValueError(
            f"A shift-weighted prediction set needs at least {MIN_NEW_ROWS} texts predicted "
            f"together to estimate the shift from; got {len(sample)}."
        )
    features = np.vstack([held, sample])
    domain = np.r_[np.zeros(len(held)), np.ones(len(sample))]
    prob = np.empty(len(features))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fit_rows, rows in folds.split(features, domain):
        scaler, classifier = _domain_classifier(
            features[fit_rows], domain[fit_rows], regularization
        )
        prob[rows] = classifier.predict_proba(scaler.transform(features[rows]))[:, 1]
    w_held = _odds(prob[: len(held)])
    scaler, classifier = _domain_classifier(features, domain, regularization)
    return CovariateShift(
        held=w_held,
        domain_auc=float(roc_auc_score(domain, prob)),
        effective_sample_size=float(w_held.sum() ** 2 / np.sum(w_held**2)),
        sample_rows=len(sample),
        scaler=scaler,
        classifier=classifier,
    )


def weighted_conformal_thresholds(
    scores: np.ndarray, weights: np.ndarray, new_weights: np.ndarray, coverage: float
) -> np.ndarray:
    """Each new row's threshold under covariate shift (Tibshirani et al. 2019, eq. (7)).

    Args:
        scores: ``(n,)`` held-out nonconformity scores.
        weights: ``(n,)`` their likelihood ratios (:attr:`CovariateShift.held`).
        new_weights: ``(m,)`` the new rows' likelihood ratios (:meth:`CovariateShift.weights`).
        coverage: Target coverage in (0, 1).

    Returns:
        ``(m,)`` float64 thresholds: the smallest held-out score whose weighted cumulative
        share reaches ``coverage``; ``inf`` where only the point at infinity reaches it.
        Equal weights give :func:`~nlp_transfer.metrics.conformal.conformal_quantile`.

    Raises:
        ValueError: ``coverage`` outside (0, 1), or scores and weights of other lengths.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"--coverage must be in (0, 1), got {coverage}.")
    scores, weights = np.asarray(scores, np.float64), np.asarray(weights, np.float64)
    if scores.shape != weights.shape or scores.ndim != 1:
        raise ValueError(f"One weight per score needed: {scores.shape} vs {weights.shape}.")
    order = np.argsort(scores, kind="stable")
    ranked, cumulative = scores[order], np.cumsum(weights[order])
    new_weights = np.asarray(new_weights, np.float64)
    # relative tolerance: equal weights must land on the ceil((n + 1) coverage)-th score
    needed = coverage * (cumulative[-1] + new_weights) * (1 - 1e-12)
    index = np.searchsorted(cumulative, needed, side="left")
    thresholds = np.full(len(new_weights), np.inf)
    inside = index < len(ranked)
    thresholds[inside] = ranked[index[inside]]
    return thresholds
