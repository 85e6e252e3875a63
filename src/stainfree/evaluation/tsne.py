"""2-D t-SNE embedding of penultimate-layer features (the papers' feature-space figure)."""
from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE


def subsample_indices(n: int, max_points: int, seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` samples (seeded, so figures are repeatable).

    With ``strata`` (e.g. the true class) each stratum keeps its share, so a rare class is not lost.
    """
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if strata is None:
        return np.sort(rng.choice(n, size=max_points, replace=False))
    strata = np.asarray(strata)
    chosen = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        take = max(1, int(round(max_points * members.size / n)))
        chosen.append(rng.choice(members, size=min(take, members.size), replace=False))
    picked = np.concatenate(chosen)
    if picked.size > max_points:
        picked = rng.choice(picked, size=max_points, replace=False)
    return np.sort(picked)


def tsne_embed(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """[N, D] features -> [N, 2] t-SNE coordinates. Perplexity is clipped to N-1 (sklearn's limit).

    Subsample before calling (``subsample_indices``): Barnes-Hut t-SNE on
    2,000 points takes seconds on CPU, on 50,000 it takes many minutes.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {x.shape}")
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {n}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN/inf; the model produced invalid activations")
    perplexity = float(min(perplexity, n - 1))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
    return tsne.fit_transform(x).astype(np.float64)
