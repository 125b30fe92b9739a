"""Weighted k-nearest-neighbour classification on frozen features (the DINO protocol).

Features are L2-normalised; each of the k most cosine-similar training samples votes for its
class with weight exp(similarity / T); the class with the largest total wins.
"""

from __future__ import annotations

import numpy as np
import torch


def knn_predict(
    train: np.ndarray,
    train_labels: np.ndarray,
    query: np.ndarray,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> np.ndarray:
    """(Q, C) class scores for every query row."""
    bank = torch.nn.functional.normalize(torch.from_numpy(train).float(), dim=1)
    labels = torch.from_numpy(train_labels).long()
    k = min(k, len(bank))
    scores = []
    for start in range(0, len(query), chunk):
        q = torch.nn.functional.normalize(
            torch.from_numpy(query[start : start + chunk]).float(), dim=1
        )
        sims, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(q), num_classes)
        votes.scatter_add_(1, labels[idx], weights)
        scores.append(votes)
    return torch.cat(scores).numpy()


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(1).mean())
