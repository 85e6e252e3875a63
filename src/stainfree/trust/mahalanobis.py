"""Class-conditional Mahalanobis distance of penultimate features (Lee et al., 2018).

One mean per class and one covariance shared by all classes (within-class scatter), shrunk by
Ledoit-Wolf so a few thousand samples of 512-2048-d features give a well-conditioned inverse.
A sample's distance is the smallest over classes: far from every class = unlike training.

The reference is stored in the checkpoint as float32 tensors (``means`` [C, d], ``precision``
[d, d]): they load with ``torch.load(weights_only=True)`` like the weights, and a 2048x2048
matrix as a Python list would take seconds to unpickle on every load.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch


def subsample(n: int, max_samples: int, seed: int) -> np.ndarray:
    """Sorted row indices: all rows, or a seeded random ``max_samples`` of them."""
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def fit_mahalanobis(features: np.ndarray, classes: np.ndarray, max_samples: int = 20000,
                    seed: int = 0) -> dict[str, Any]:
    """Class means + the Ledoit-Wolf-shrunk shared covariance's inverse, from training features.

    ``classes``: one class index per row (the true label or the model's prediction); classes
    without rows are left out. Needs at least 2 rows.
    """
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    if features.ndim != 2 or len(features) < 2 or len(classes) != len(features):
        raise ValueError(f"need >= 2 feature rows with one class each, got {features.shape} and {classes.shape}")
    keep = subsample(len(features), max_samples, seed)
    features, classes = features[keep], classes[keep]
    present = np.unique(classes)
    means = np.stack([features[classes == c].mean(axis=0) for c in present])
    centred = features - means[np.searchsorted(present, classes)]
    lw = LedoitWolf(assume_centered=True).fit(centred)
    return dict(
        classes=[int(c) for c in present], n_fit=int(len(features)), dim=int(features.shape[1]),
        shrinkage=float(lw.shrinkage_),
        means=torch.from_numpy(means.astype(np.float32)),
        precision=torch.from_numpy(np.asarray(lw.precision_, dtype=np.float32)),
    )


def mahalanobis_distance(features: np.ndarray, reference: Mapping[str, Any]) -> np.ndarray:
    """Distance (not squared) of each row to the nearest class mean under the shared covariance."""
    features = np.asarray(features, dtype=np.float64)
    means = torch.as_tensor(reference["means"]).double().numpy()
    precision = torch.as_tensor(reference["precision"]).double().numpy()
    if features.ndim != 2 or features.shape[1] != means.shape[1]:
        raise ValueError(f"features of shape {features.shape} do not match the reference's {means.shape[1]}-d means; "
                         "the OOD reference belongs to another model")
    best = np.full(len(features), np.inf)
    for mean in means:
        diff = features - mean
        best = np.minimum(best, np.einsum("ij,ij->i", diff @ precision, diff))
    return np.sqrt(np.maximum(best, 0.0))
