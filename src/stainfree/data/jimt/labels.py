"""Live/dead labels from the mean PI of each patch (raw 16-bit scale), as in the paper.

``gmm``: a 2-component Gaussian mixture on the reference dataset's patch means; live if
mean < mu_live + sd_live, dead if mean > mu_dead - sd_dead, the band in between is discarded
(ambiguous patches would only teach the network noise). ``fixed``: user thresholds.
The same thresholds apply to every dataset, so labels mean the same thing across treatments.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture

from stainfree.utils.errors import UserError

LIVE, DEAD, AMBIGUOUS = 0, 1, -1
CLASS_NAMES = ["live", "dead"]


@dataclass(frozen=True)
class Thresholds:
    """Label thresholds plus, for ``gmm``, the fitted components they came from."""

    live_below: float
    dead_above: float
    method: str
    live_mean: float | None = None
    live_sd: float | None = None
    dead_mean: float | None = None
    dead_sd: float | None = None
    reference: str | None = None
    n_fit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gmm_thresholds(values: np.ndarray, seed: int = 0, reference: str | None = None) -> Thresholds:
    """Fit the 2-component mixture to patch means and derive the live/dead thresholds."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 10:
        raise UserError(f"only {values.size} patch means to fit the PI mixture on (need >= 10); "
                         "add frames to the reference dataset or use labels.method=fixed")
    gmm = GaussianMixture(n_components=2, random_state=seed, n_init=3).fit(values[:, None])
    means = gmm.means_.ravel()
    sds = np.sqrt(gmm.covariances_.ravel())
    lo, hi = int(np.argmin(means)), int(np.argmax(means))
    t = Thresholds(live_below=float(means[lo] + sds[lo]), dead_above=float(means[hi] - sds[hi]),
                   method="gmm", live_mean=float(means[lo]), live_sd=float(sds[lo]),
                   dead_mean=float(means[hi]), dead_sd=float(sds[hi]), reference=reference,
                   n_fit=int(values.size))
    if t.live_below >= t.dead_above:
        raise UserError(
            f"the PI mixture components overlap (live < {t.live_below:.1f} but dead > {t.dead_above:.1f}); "
            "the reference dataset has no clear live/dead modes: use labels.method=fixed with "
            "labels.live_below and labels.dead_above")
    return t


def fixed_thresholds(live_below: float, dead_above: float) -> Thresholds:
    """User-given thresholds; live_below must not exceed dead_above."""
    if live_below is None or dead_above is None:
        raise UserError("labels.method=fixed needs labels.live_below and labels.dead_above")
    if float(live_below) > float(dead_above):
        raise UserError(f"labels.live_below ({live_below}) must be <= labels.dead_above ({dead_above})")
    return Thresholds(live_below=float(live_below), dead_above=float(dead_above), method="fixed")


def assign_labels(pi_means: np.ndarray, t: Thresholds) -> np.ndarray:
    """LIVE (0), DEAD (1) or AMBIGUOUS (-1) per patch."""
    pi_means = np.asarray(pi_means, dtype=np.float64)
    out = np.full(pi_means.shape, AMBIGUOUS, dtype=np.int64)
    out[pi_means < t.live_below] = LIVE
    out[pi_means > t.dead_above] = DEAD
    return out
