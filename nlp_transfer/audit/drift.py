"""Drift statistics between the training data's features and incoming texts' features.

- **MMD two-sample test** (Gretton et al. 2012, "A Kernel Two-Sample Test", JMLR 13): the
  unbiased squared maximum mean discrepancy with a Gaussian kernel whose bandwidth is the median
  pairwise distance of the pooled samples (the median heuristic), and a permutation p-value
  (``scipy.stats.permutation_test`` over the pooled rows' indices; the kernel matrix is
  computed once). Why not a drift library: alibi-detect pins numpy<2 and transformers<5, which
  this toolkit cannot install beside itself; hyppo brings numba, statsmodels and autograd for
  this one test.
- **Domain classifier**: a logistic regression told to separate the two samples,
  cross-validated; its ROC AUC is 0.5 when they cannot be told apart (Lipton et al.'s and
  Rabanser et al. 2019's "domain classifier" test, as the adaptation package's proxy
  A-distance).
- **Black-box shift estimation** (Lipton, Wang & Smola 2018, "Detecting and Correcting for
  Label Shift with Black Box Predictors", ICML): with ``C[i, j] = P(predicted i, true j)`` on
  validation and ``mu[i]`` the share of incoming texts predicted ``i``, solve ``C w = mu`` for
  the importance weights ``w[j] = q(y = j) / p(y = j)``; the incoming label priors are
  ``q = w * p`` (clipped at 0, renormalised).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import permutation_test
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _squared_distances(x: np.ndarray) -> np.ndarray:
    norms = (x * x).sum(1)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * x @ x.T, 0.0)


def mmd_test(
    reference: np.ndarray, new: np.ndarray, *, num_permutations: int = 500, seed: int = 0
) -> dict:
    """Whether two samples come from one distribution: MMD with a permutation p-value.

    Args:
        reference: ``(n, d)`` features of the training sample.
        new: ``(m, d)`` features of the incoming texts.
        num_permutations: Random relabellings of the pooled rows.
        seed: Seed of the permutations.

    Returns:
        ``{"mmd2": unbiased MMD^2, "p_value", "bandwidth", "num_permutations"}``.

    Raises:
        ValueError: A sample with fewer than 2 rows.
    """
    if len(reference) < 2 or len(new) < 2:
        raise ValueError("The MMD test needs at least 2 texts on each side.")
    pooled = np.concatenate([reference, new]).astype(np.float64)
    squared = _squared_distances(pooled)
    upper = squared[np.triu_indices(len(pooled), k=1)]
    bandwidth = float(np.sqrt(np.median(upper[upper > 0]) / 2.0)) if (upper > 0).any() else 1.0
    kernel = np.exp(-squared / (2.0 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out k(x_i, x_i)

    def statistic(a, b, axis=-1):
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        n, m = a.shape[-1], b.shape[-1]
        kxx = kernel[a[..., :, None], a[..., None, :]].sum((-1, -2)) / (n * (n - 1))
        kyy = kernel[b[..., :, None], b[..., None, :]].sum((-1, -2)) / (m * (m - 1))
        kxy = kernel[a[..., :, None], b[..., None, :]].sum((-1, -2)) / (n * m)
        return kxx + kyy - 2.0 * kxy

    n = len(reference)
    result = permutation_test(
        (np.arange(n), np.arange(n, len(pooled))),
        statistic,
        permutation_type="independent",
        vectorized=True,
        n_resamples=num_permutations,
        batch=8,
        alternative="greater",
        rng=np.random.default_rng(seed),
    )
    return {
        "mmd2": float(result.statistic),
        "p_value": float(result.pvalue),
        "bandwidth": bandwidth,
        "num_permutations": num_permutations,
    }


def domain_classifier_auc(
    reference: np.ndarray, new: np.ndarray, *, folds: int = 5, seed: int = 0
) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``new`` rows from
    ``reference`` rows (0.5: indistinguishable, 1.0: fully separable)."""
    features = np.concatenate([reference, new])
    domain = np.r_[np.zeros(len(reference)), np.ones(len(new))]
    folds = max(2, min(folds, len(reference), len(new)))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, features, domain, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(domain, scores))


def black_box_shift(confusion: np.ndarray, predicted: np.ndarray) -> dict:
    """Incoming label priors by black-box shift estimation (Lipton et al. 2018).

    Args:
        confusion: ``(C, C)`` counts of (predicted, true) pairs on validation.
        predicted: ``(m,)`` predicted class ids of the incoming texts.

    Returns:
        ``{"validation_priors": p (C,), "estimated_priors": q (C,), "weights": w (C,),
        "predicted_shares": mu (C,), "max_prior_change": max |q - p|}``.
    """
    joint = confusion / max(confusion.sum(), 1)
    shares = np.bincount(predicted, minlength=len(confusion)) / max(len(predicted), 1)
    weights = np.linalg.lstsq(joint, shares, rcond=None)[0]
    weights = np.clip(weights, 0.0, None)
    priors = joint.sum(0)
    estimated = weights * priors
    estimated = estimated / estimated.sum() if estimated.sum() > 0 else priors
    return {
        "validation_priors": priors.tolist(),
        "estimated_priors": estimated.tolist(),
        "weights": weights.tolist(),
        "predicted_shares": shares.tolist(),
        "max_prior_change": float(np.abs(estimated - priors).max()),
    }
