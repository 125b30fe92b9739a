"""Linear probe on frozen features, regularisation chosen on a held-out part of --train."""

from __future__ import annotations

import warnings

import numpy as np

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse L2 strength of the logistic regression


def linear_probe(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    holdout: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """Fit on (1 - holdout) of train for each C, keep the best on the held-out part, refit on
    all of train with it, and report top-1 on val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    n_hold = max(1, round(len(train) * holdout))
    hold, fit = order[:n_hold], order[n_hold:]
    scaler = StandardScaler().fit(train[fit])

    def model(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=2000)

    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny sets are not errors here
        for c in C_GRID:
            clf = model(c).fit(scaler.transform(train[fit]), train_labels[fit])
            scores[c] = clf.score(scaler.transform(train[hold]), train_labels[hold])
        best = max(C_GRID, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
        scaler = StandardScaler().fit(train)
        clf = model(best).fit(scaler.transform(train), train_labels)
    top1 = float(clf.score(scaler.transform(val), val_labels))
    return {"top1": top1, "C": best, "holdout_top1": float(scores[best])}
