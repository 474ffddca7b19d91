"""The TF-IDF + logistic-regression peer, self-contained (scikit-learn only), for the benchmarks.

Word 1-2 grams (sublinear tf, min_df 1), ``LogisticRegression`` with C chosen from
{0.1, 1, 10, 100} on the validation split (accuracy, or the positive class's F1 when
``positive_label`` is given), refitted on the training split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence


def tfidf_logreg(
    train: tuple[Sequence[str], Sequence[int]],
    validation: tuple[Sequence[str], Sequence[int]],
    test: tuple[Sequence[str], Sequence[int]],
    seed: int = 0,
    positive_label: int | None = None,
) -> dict:
    """Fit on ``train``, pick C on ``validation``, score ``test``.

    Args:
        train: ``(texts, labels)`` of the training split.
        validation: ``(texts, labels)`` used only to choose C.
        test: ``(texts, labels)`` scored once.
        seed: ``random_state`` of the logistic regression.
        positive_label: Score by this class's F1 (e.g. spam) instead of accuracy.

    Returns:
        ``{"accuracy", "f1_macro", "f1_positive" (or None), "C", "fit_runtime_s"}``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    start = time.perf_counter()

    def score(y_true, y_pred) -> float:
        if positive_label is None:
            return accuracy_score(y_true, y_pred)
        return f1_score(y_true, y_pred, pos_label=positive_label, zero_division=0)

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform(train[0])
    x_val, x_test = vectorizer.transform(validation[0]), vectorizer.transform(test[0])
    best = None
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, train[1])
        value = score(validation[1], model.predict(x_val))
        if best is None or value > best[0]:
            best = (value, c, model)
    _, c, model = best
    predicted = model.predict(x_test)
    return {
        "accuracy": float(accuracy_score(test[1], predicted)),
        "f1_macro": float(f1_score(test[1], predicted, average="macro")),
        "f1_positive": None
        if positive_label is None
        else float(f1_score(test[1], predicted, pos_label=positive_label, zero_division=0)),
        "C": c,
        "fit_runtime_s": time.perf_counter() - start,
    }
