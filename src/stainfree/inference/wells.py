"""Per-well dead fraction with a bootstrap confidence interval.

A well is the experimental unit of a screen; its dead fraction pools the non-empty patches of
all its images. The CI resamples patches *within each image* (stratified bootstrap), so an image
with many patches cannot borrow patches from another field of view.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def well_dead_fractions(
    images: pd.DataFrame,
    plate: pd.DataFrame,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per well: n_images, n_patches, n_dead, dead_fraction, ci_low, ci_high, mean_p_dead.

    ``images`` needs columns image, n_patches, n_empty, n_dead, sum_p_dead (per image, non-empty
    patches only); ``plate`` is :func:`platemap.match_images` output (image_key, well, compound,
    dose, control). Resampling n patches with replacement from an image with k dead patches gives
    a Binomial(n, k/n) dead count, so the bootstrap is drawn exactly that way (same distribution,
    no per-patch loop). Seeded: the same inputs always give the same CI.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci}: the confidence level must be between 0 and 1, e.g. 0.95")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot}: use at least 100 bootstrap replicates (default 2000)")
    merged = plate.merge(images, left_on="image_key", right_on="image", how="inner", suffixes=("_plate", ""))
    rng = np.random.default_rng(seed)
    alpha = (1 - ci) / 2
    rows = []
    for well, group in merged.groupby("well", sort=True):
        used = (group["n_patches"] - group["n_empty"]).to_numpy(dtype=np.int64)
        dead = group["n_dead"].to_numpy(dtype=np.int64)
        total = int(used.sum())
        row = {
            "well": well,
            "compound": group["compound"].iloc[0],
            "dose": group["dose"].dropna().iloc[0] if group["dose"].notna().any() else np.nan,
            "control": group["control"].iloc[0],
            "n_images": len(group),
            "n_patches": total,
            "n_dead": int(dead.sum()),
        }
        if total == 0:
            row.update(dead_fraction=np.nan, ci_low=np.nan, ci_high=np.nan, mean_p_dead=np.nan)
        else:
            p = np.divide(dead, used, out=np.zeros(len(used)), where=used > 0)
            boot = rng.binomial(used[None, :], p[None, :], size=(n_boot, len(used))).sum(axis=1) / total
            row.update(
                dead_fraction=dead.sum() / total,
                ci_low=float(np.quantile(boot, alpha)),
                ci_high=float(np.quantile(boot, 1 - alpha)),
                mean_p_dead=float(group["sum_p_dead"].sum() / total),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=["well", "compound", "dose", "control", "n_images", "n_patches", "n_dead",
                                       "dead_fraction", "ci_low", "ci_high", "mean_p_dead"])
