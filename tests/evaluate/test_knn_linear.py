"""kNN and the linear probe on hand-made features."""

from __future__ import annotations

import numpy as np
import pytest

from proteus.evaluate.knn import knn_predict, topk_accuracy
from proteus.evaluate.linear import linear_probe


def test_knn_votes_are_the_weighted_sum_of_the_nearest():
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    labels = np.array([0, 0, 1, 1])
    query = np.array([[1, 0.2]], np.float32)
    scores = knn_predict(train, labels, query, num_classes=2, k=3, temperature=0.5)
    q = query[0] / np.linalg.norm(query[0])
    bank = train / np.linalg.norm(train, axis=1, keepdims=True)
    sims = bank @ q
    nearest = np.argsort(-sims)[:3]
    want = np.zeros(2)
    for i in nearest:
        want[labels[i]] += np.exp(sims[i] / 0.5)
    np.testing.assert_allclose(scores[0], want, rtol=1e-5)
    assert topk_accuracy(scores, np.array([0])) == 1.0


def test_knn_handles_k_larger_than_the_bank_and_chunks():
    rng = np.random.default_rng(0)
    train, labels = rng.normal(size=(5, 4)).astype(np.float32), np.array([0, 1, 0, 1, 2])
    query = rng.normal(size=(7, 4)).astype(np.float32)
    whole = knn_predict(train, labels, query, 3, k=50)
    np.testing.assert_allclose(
        whole, knn_predict(train, labels, query, 3, k=50, chunk=2), rtol=1e-5
    )


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    centres = np.array([[3, 0], [-3, 0], [0, 3]])
    labels = rng.integers(0, 3, 120)
    x = (centres[labels] + rng.normal(size=(120, 2))).astype(np.float32)
    result = linear_probe(x[:90], labels[:90], x[90:], labels[90:])
    assert result["top1"] > 0.9 and result["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)


@pytest.mark.parametrize("k", [1, 2])
def test_topk(k):
    scores = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert topk_accuracy(scores, np.array([2, 0]), k) == (0.5 if k == 1 else 1.0)
