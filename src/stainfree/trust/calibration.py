"""Temperature scaling and expected calibration error (ECE).

A CNN's softmax is usually over-confident: "p(dead) = 0.97" is right far less than 97% of the
time. Dividing the logits by one temperature T > 1, fitted on the validation split, fixes most
of it without changing any prediction (the argmax and the ranking of a class stay the same).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

N_BINS = 15
# The fitted T is clamped to this range: outside it the validation split is too small or too
# degenerate (e.g. every sample correct) to say anything about the model's confidence.
T_MIN, T_MAX = 0.05, 20.0
# MAP fit with a normal prior on log T (sd 1, centred on T = 1): negligible for hundreds of
# validation samples, but stops a tiny or all-correct split from driving T to the bound.
LOG_T_PRIOR_SD = 1.0


def _as_logits(logits: Any) -> np.ndarray:
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"logits must be [N, C], got shape {arr.shape}")
    return arr


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` (numerically stable, float64)."""
    z = _as_logits(logits) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    z = _as_logits(logits) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: Any, target: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class at ``temperature`` (NaN for no samples)."""
    target = np.asarray(target, dtype=np.int64)
    if len(target) == 0:
        return math.nan
    return float(-log_softmax(logits, temperature)[np.arange(len(target)), target].mean())


def fit_temperature(logits: Any, target: Any, t_min: float = T_MIN, t_max: float = T_MAX) -> float:
    """The T minimising validation NLL (+ the log-T prior), by a bounded scalar search on log T.

    Returns 1.0 (no change) for an empty split. The search is 1-D and convex in log T, so a
    bounded Brent search finds the optimum reliably; no gradients are needed.
    """
    from scipy.optimize import minimize_scalar

    logits = _as_logits(logits)
    target = np.asarray(target, dtype=np.int64)
    if len(target) == 0:
        return 1.0
    rows = np.arange(len(target))

    def objective(log_t: float) -> float:
        total = -log_softmax(logits, math.exp(log_t))[rows, target].sum()
        return float(total + 0.5 * (log_t / LOG_T_PRIOR_SD) ** 2)

    result = minimize_scalar(objective, bounds=(math.log(t_min), math.log(t_max)), method="bounded",
                             options={"xatol": 1e-4})
    return float(min(max(math.exp(result.x), t_min), t_max))


def reliability_bins(probs: Any, target: Any, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Equal-width bins of the top-label confidence: count, mean confidence, accuracy per bin.

    Bin k holds confidences in (k/n, (k+1)/n]; the first also holds 0. Empty bins have NaN
    confidence/accuracy.
    """
    probs = np.asarray(probs, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == target).astype(np.float64) if len(probs) else np.zeros(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / count
    return dict(edges=edges, count=count, confidence=confidence, accuracy=accuracy)


def expected_calibration_error(probs: Any, target: Any, n_bins: int = N_BINS) -> float:
    """ECE = sum over bins of (bin share of samples) x |accuracy - mean confidence| (top label)."""
    bins = reliability_bins(probs, target, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return math.nan
    used = bins["count"] > 0
    gap = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float((bins["count"][used] / n * gap).sum())


def calibration_metrics(logits: Any, target: Any, temperature: float, n_bins: int = N_BINS) -> dict[str, float]:
    """ECE and NLL before (T = 1) and after (the given T) on one split."""
    return dict(
        temperature=float(temperature), n=int(len(np.asarray(target))), n_bins=int(n_bins),
        ece_before=expected_calibration_error(softmax(logits), target, n_bins),
        ece_after=expected_calibration_error(softmax(logits, temperature), target, n_bins),
        nll_before=nll(logits, target), nll_after=nll(logits, target, temperature),
    )


def fit_calibration(logits: Any, target: Any, n_bins: int = N_BINS) -> dict[str, float]:
    """The checkpoint's ``calibration`` block: T fitted on validation logits + validation ECE/NLL."""
    temperature = fit_temperature(logits, target)
    m = calibration_metrics(logits, target, temperature, n_bins)
    return dict(temperature=m["temperature"], ece_val_before=m["ece_before"], ece_val_after=m["ece_after"],
                nll_val_before=m["nll_before"], nll_val_after=m["nll_after"], n_val=m["n"], n_bins=n_bins)
