"""Test-split metrics, including the Brodersen et al. (2010) posterior interval of balanced accuracy.

Why a posterior and not a bootstrap: the papers report balanced accuracy with the interval of
Brodersen et al. 2010 ("The balanced accuracy and its posterior distribution"). Each class recall
has a Beta(TP_c + 1, FN_c + 1) posterior under a flat prior; balanced accuracy is the mean of these
independent recalls, so its posterior is the (scaled) convolution of the Beta densities. We compute
that convolution numerically on a fine lattice, which is exact up to the grid step and works for
any number of classes (the paper gives the binary case only).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import signal, stats
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import roc_auc_score

# Mass left out in each Beta tail when building its lattice: far below any reported precision.
_TAIL = 1e-12
# Lattice points per posterior standard deviation of the sharpest recall.
_POINTS_PER_SD = 200
_MAX_POINTS = 400_000


def balanced_accuracy_ci(confusion: np.ndarray | Sequence[Sequence[int]], level: float = 0.95) -> dict[str, Any]:
    """Posterior of the balanced accuracy given a confusion matrix (rows = truth, cols = prediction).

    Returns ``{"point", "mean", "mode", "median", "lower", "upper", "level", "n_classes"}`` where
    ``point`` is the observed balanced accuracy (mean of per-class recalls). Classes with no true
    samples carry no information about their recall and are left out (sklearn does the same).
    """
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square matrix (truth x prediction), got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("confusion matrix has negative counts; pass raw counts, not normalised values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    keep = support > 0
    if not keep.any():
        raise ValueError("confusion matrix is empty: no test samples, so no balanced accuracy")
    a = (tp[keep] + 1).astype(float)
    b = (support[keep] - tp[keep] + 1).astype(float)
    k = len(a)

    # Common lattice step: fine enough for the sharpest Beta, capped for memory on huge sets.
    sds = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    lows = stats.beta.ppf(_TAIL, a, b)
    highs = stats.beta.isf(_TAIL, a, b)
    step = float(sds.min()) / _POINTS_PER_SD
    widest = float((highs - lows).max())
    step = max(step, widest / _MAX_POINTS)

    # Exact probability mass of each Beta per lattice cell (CDF differences), then convolve.
    mass = np.ones(1)
    origin = 0.0  # value of the first lattice point of the sum (cell centres)
    for ai, bi, lo, hi in zip(a, b, lows, highs):
        start = math.floor(lo / step) * step
        n_cells = max(1, int(math.ceil((hi - start) / step)))
        edges = np.clip(start + step * np.arange(n_cells + 1), 0.0, 1.0)
        cell = np.diff(stats.beta.cdf(edges, ai, bi))
        cell = np.clip(cell, 0.0, None)
        mass = signal.fftconvolve(mass, cell) if mass.size > 1 else mass * cell
        mass = np.clip(mass, 0.0, None)
        origin += start + step / 2
    mass /= mass.sum()
    values = (origin + step * np.arange(mass.size)) / k  # balanced accuracy at each lattice point

    cdf = np.cumsum(mass)
    tail = (1.0 - level) / 2.0

    def quantile(q: float) -> float:
        # Interpolate inside the cell where the CDF crosses q (cell = centre +- step/2).
        idx = int(np.searchsorted(cdf, q))
        idx = min(max(idx, 0), mass.size - 1)
        below = cdf[idx - 1] if idx > 0 else 0.0
        frac = (q - below) / mass[idx] if mass[idx] > 0 else 0.5
        return float(values[idx] + (frac - 0.5) * step / k)

    recalls = tp[keep] / support[keep]
    return {
        "point": float(recalls.mean()),
        "mean": float((a / (a + b)).mean()),
        "mode": float(values[int(np.argmax(mass))]),
        "median": quantile(0.5),
        "lower": quantile(tail),
        "upper": quantile(1.0 - tail),
        "level": float(level),
        "n_classes": int(k),
    }


def _as_numpy(x: Any) -> np.ndarray:
    """Accept numpy arrays, lists or (CPU/GPU) torch tensors."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def compute_metrics(
    probs: Any,
    target: Any,
    class_names: Sequence[str],
    pi_mean: Any | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """All test metrics of one run as a JSON-serialisable dict.

    ``probs`` [N, C] class probabilities, ``target`` [N] class indices into ``class_names`` (fixed
    order, so confusion matrices of different runs line up). ``pi_mean`` [N] (JIMT-1) adds the
    Pearson r between p(live) and the patch mean PI; NaN entries are ignored.
    """
    probs = _as_numpy(probs).astype(np.float64)
    target = _as_numpy(target).astype(np.int64)
    names = list(class_names)
    n_classes = len(names)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(
            f"probs must have shape [N, {n_classes}] for classes {names}, got {tuple(probs.shape)}; "
            "does the checkpoint belong to this dataset?"
        )
    if target.ndim != 1 or target.shape[0] != probs.shape[0]:
        raise ValueError(f"target must have shape [{probs.shape[0]}], got {tuple(target.shape)}")
    if target.size == 0:
        raise ValueError("no samples to evaluate: the test split is empty")
    if target.min() < 0 or target.max() >= n_classes:
        raise ValueError(f"target has class indices outside 0..{n_classes - 1} ({names})")

    pred = probs.argmax(axis=1)
    cm = _sk_confusion_matrix(target, pred, labels=list(range(n_classes)))
    support = cm.sum(axis=1)
    recall = {
        name: (float(cm[i, i] / support[i]) if support[i] > 0 else float("nan"))
        for i, name in enumerate(names)
    }
    ci = balanced_accuracy_ci(cm, level=level)
    out: dict[str, Any] = {
        "n": int(target.size),
        "class_names": names,
        "support": {name: int(support[i]) for i, name in enumerate(names)},
        "bal_acc": ci["point"],
        "bal_acc_ci": ci,
        "auroc": _auroc(probs, target, n_classes),
        "acc": float((pred == target).mean()),
        "recall": recall,
        "confusion_matrix": cm.tolist(),
    }
    if pi_mean is not None:
        out.update(_pi_correlation(probs, _as_numpy(pi_mean).astype(np.float64), names))
    return out


def _auroc(probs: np.ndarray, target: np.ndarray, n_classes: int) -> float:
    """Binary: AUC of p(class 1); more classes: macro one-vs-rest AUC. NaN if a class is absent."""
    present = np.unique(target)
    if present.size < n_classes:
        return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(target, probs[:, 1]))
    # sklearn insists the rows sum to 1; renormalise tiny float drift from softmax.
    p = probs / probs.sum(axis=1, keepdims=True)
    return float(roc_auc_score(target, p, multi_class="ovr", average="macro", labels=list(range(n_classes))))


def _pi_correlation(probs: np.ndarray, pi_mean: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Pearson r (and two-sided p) between the classifier's p(live) and the patch mean PI."""
    if "live" not in names:
        raise ValueError(f"pi_mean was given but there is no 'live' class in {names}; drop pi_mean for this dataset")
    if pi_mean.shape != (probs.shape[0],):
        raise ValueError(f"pi_mean must have shape [{probs.shape[0]}], got {pi_mean.shape}")
    p_live = probs[:, names.index("live")]
    ok = np.isfinite(pi_mean)
    if ok.sum() < 3 or np.ptp(p_live[ok]) == 0 or np.ptp(pi_mean[ok]) == 0:
        return {"pearson_r": float("nan"), "pearson_p": float("nan"), "pearson_n": int(ok.sum())}
    res = stats.pearsonr(p_live[ok], pi_mean[ok])
    return {"pearson_r": float(res.statistic), "pearson_p": float(res.pvalue), "pearson_n": int(ok.sum())}


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """One-level view of ``compute_metrics`` output for CSV tables and W&B summaries."""
    flat: dict[str, Any] = {
        "n": metrics["n"],
        "bal_acc": metrics["bal_acc"],
        "bal_acc_lower": metrics["bal_acc_ci"]["lower"],
        "bal_acc_upper": metrics["bal_acc_ci"]["upper"],
        "bal_acc_post_mean": metrics["bal_acc_ci"]["mean"],
        "auroc": metrics["auroc"],
        "acc": metrics["acc"],
    }
    for name, value in metrics["recall"].items():
        flat[f"recall_{name}"] = value
    for key in ("pearson_r", "pearson_p"):
        if key in metrics:
            flat[key] = metrics[key]
    for key in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after"):  # stainfree.trust
        value = (metrics.get("calibration") or {}).get(key)
        if value is not None:
            flat[key] = value
    return flat
