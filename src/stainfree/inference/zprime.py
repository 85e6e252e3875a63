"""Z' factor: is the assay window wide enough to tell hits from noise (Zhang et al. 1999)?

Z' = 1 - 3 (sd_pos + sd_neg) / |mean_pos - mean_neg|, computed over control *wells* (the
replicate unit of a plate). >= 0.5 is an excellent assay, 0..0.5 marginal, < 0 unusable.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


class ZPrimeError(ValueError):
    """Z' cannot be computed from the given controls; the message says what is missing."""


def z_prime(pos: np.ndarray | list[float], neg: np.ndarray | list[float]) -> float:
    """Z' from positive and negative control values (sample sd, ddof=1)."""
    pos = np.asarray(pos, dtype=float)
    neg = np.asarray(neg, dtype=float)
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if len(pos) < 2 or len(neg) < 2:
        raise ZPrimeError(
            f"Z' needs >= 2 wells per control, got {len(pos)} pos and {len(neg)} neg; "
            "mark more wells 'pos'/'neg' in the plate map's control column"
        )
    window = abs(pos.mean() - neg.mean())
    if window == 0:
        raise ZPrimeError("positive and negative controls have the same mean; Z' is undefined")
    return float(1 - 3 * (pos.std(ddof=1) + neg.std(ddof=1)) / window)


def interpret(z: float) -> str:
    """Conventional reading of a Z' value."""
    if math.isnan(z):
        return "undefined"
    if z >= 0.5:
        return "excellent"
    if z > 0:
        return "marginal"
    return "unusable (control distributions overlap)"


def z_prime_from_wells(wells: pd.DataFrame, value: str = "dead_fraction") -> dict:
    """Z' over wells marked control='pos'/'neg', with the numbers behind it for the JSON report."""
    pos = wells.loc[wells["control"] == "pos", value].to_numpy(dtype=float)
    neg = wells.loc[wells["control"] == "neg", value].to_numpy(dtype=float)
    z = z_prime(pos, neg)
    return {
        "z_prime": z,
        "interpretation": interpret(z),
        "value": value,
        "n_pos_wells": int(len(pos)),
        "n_neg_wells": int(len(neg)),
        "mean_pos": float(np.nanmean(pos)),
        "sd_pos": float(np.nanstd(pos, ddof=1)),
        "mean_neg": float(np.nanmean(neg)),
        "sd_neg": float(np.nanstd(neg, ddof=1)),
    }
