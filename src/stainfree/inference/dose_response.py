"""Four-parameter logistic (4PL) dose-response fit and plot, per compound.

The IC50 here is the dose of half-maximal effect on the measured response (for a dead fraction
that rises with dose it is what pharmacologists also call the EC50). Doses are fitted on a log
scale because that is where the curve is symmetric and the optimiser well conditioned.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, stats

MIN_DOSES = 4  # four parameters need at least four distinct doses


class DoseResponseError(ValueError):
    """A curve cannot be fitted to these data; the message says why and what to change."""


@dataclass
class DoseResponseFit:
    """Fitted 4PL parameters; ``ic50_ci_*`` are NaN when the covariance is not estimable."""

    compound: str
    bottom: float
    top: float
    hill: float
    ic50: float
    ic50_ci_low: float
    ic50_ci_high: float
    n_points: int
    n_doses: int
    r2: float
    extrapolated: bool
    note: str

    def to_dict(self) -> dict:
        return asdict(self)

    def predict(self, dose: np.ndarray | float) -> np.ndarray:
        """Response at ``dose`` (> 0)."""
        return logistic4(np.log10(np.asarray(dose, dtype=float)), self.bottom, self.top, self.hill,
                         math.log10(self.ic50))


# an IC50 interval wider than this many decades each side says "not determined", not a number
MAX_CI_DECADES = 3


def logistic4(log_dose: np.ndarray, bottom: float, top: float, hill: float, log_ic50: float) -> np.ndarray:
    """4PL on log10 dose; ``hill`` > 0 and the curve moves from ``bottom`` (low dose) to ``top``."""
    z = np.clip(hill * (log_ic50 - np.asarray(log_dose, dtype=float)), -50.0, 50.0)
    return bottom + (top - bottom) / (1.0 + np.power(10.0, z))


def fit_dose_response(dose: np.ndarray | list[float], response: np.ndarray | list[float], compound: str = "",
                      ci: float = 0.95, limits: tuple[float, float] | None = None) -> DoseResponseFit:
    """Fit a 4PL to (dose, response) points, one point per well.

    Zero doses (vehicle) cannot sit on a log axis and are left out of the fit. Several starting
    points are tried (log IC50 at each tested dose), and the fit with the lowest residual sum of
    squares wins, so a poor first guess does not decide the result. ``limits`` bounds the
    plateaus (``(0, 1)`` for a dead fraction: a curve may not level off at -50 % dead).
    """
    dose = np.asarray(dose, dtype=float)
    response = np.asarray(response, dtype=float)
    keep = np.isfinite(dose) & np.isfinite(response) & (dose > 0)
    x, y = np.log10(dose[keep]), response[keep]
    levels = np.unique(x)
    label = f"compound '{compound}'" if compound else "these data"
    if len(levels) < MIN_DOSES:
        raise DoseResponseError(
            f"{label}: {len(levels)} distinct non-zero dose(s); a 4-parameter curve needs >= {MIN_DOSES}. "
            "Add wells at more doses or read the per-well table instead"
        )
    spread = float(np.ptp(y))
    if spread == 0:
        raise DoseResponseError(f"{label}: the response is the same at every dose; there is no curve to fit")
    lo_mean = float(y[x == levels[0]].mean())
    hi_mean = float(y[x == levels[-1]].mean())
    span = levels[-1] - levels[0]
    low, high = limits if limits is not None else (min(y.min(), 0.0) - spread, max(y.max(), 1.0) + spread)
    bounds = ([low, low, 0.05, levels[0] - span - 1], [high, high, 20.0, levels[-1] + span + 1])
    lo_mean, hi_mean = float(np.clip(lo_mean, low, high)), float(np.clip(hi_mean, low, high))
    best = None
    for start in levels:
        for hill0 in (1.0, 3.0):
            p0 = [lo_mean, hi_mean, hill0, float(start)]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optimize.OptimizeWarning)
                    params, cov = optimize.curve_fit(logistic4, x, y, p0=p0, bounds=bounds, maxfev=5000)
            except (RuntimeError, ValueError):
                continue
            rss = float(np.sum((y - logistic4(x, *params)) ** 2))
            if best is None or rss < best[0]:
                best = (rss, params, cov)
    if best is None:
        raise DoseResponseError(
            f"{label}: the 4PL fit did not converge from any starting point; the response may not be "
            "sigmoidal over the tested doses (widen the dose range or add replicates)"
        )
    rss, (bottom, top, hill, log_ic50), cov = best
    tss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - rss / tss if tss > 0 else math.nan
    dof = len(y) - 4
    notes = []
    ci_low = ci_high = math.nan
    if dof <= 0:
        notes.append(f"no IC50 CI: {len(y)} points for 4 parameters (add replicate wells)")
    elif not np.all(np.isfinite(cov)) or cov[3, 3] <= 0:
        notes.append("no IC50 CI: the fit's covariance is not estimable (curve under-determined)")
    else:
        half = stats.t.ppf(0.5 + ci / 2, dof) * math.sqrt(cov[3, 3])
        ci_low, ci_high = 10 ** (log_ic50 - half), 10 ** (log_ic50 + half)
        if half > MAX_CI_DECADES:
            notes.append(f"IC50 CI spans more than {MAX_CI_DECADES} decades each side: the IC50 is not "
                         "determined by these doses (add doses around the rise or replicate wells)")
    extrapolated = not (levels[0] <= log_ic50 <= levels[-1])
    if extrapolated:
        notes.append("IC50 lies outside the tested dose range: treat it as an extrapolation")
    return DoseResponseFit(
        compound=compound, bottom=float(bottom), top=float(top), hill=float(hill), ic50=float(10 ** log_ic50),
        ic50_ci_low=float(ci_low), ic50_ci_high=float(ci_high), n_points=int(len(y)), n_doses=int(len(levels)),
        r2=float(r2), extrapolated=bool(extrapolated), note="; ".join(notes),
    )


def plot_dose_response(path: str | os.PathLike, dose: np.ndarray, response: np.ndarray,
                       fit: DoseResponseFit | None, ci_low: np.ndarray | None = None,
                       ci_high: np.ndarray | None = None, ylabel: str = "dead fraction") -> Path:
    """Save a log-dose plot of the wells (with CIs), the fitted curve and the IC50 to ``path`` (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stainfree.utils.atomic import atomic_path

    dose = np.asarray(dose, dtype=float)
    response = np.asarray(response, dtype=float)
    pos = dose > 0
    fig, ax = plt.subplots(figsize=(5, 4))
    yerr = None
    if ci_low is not None and ci_high is not None:
        yerr = np.vstack([response - np.asarray(ci_low), np.asarray(ci_high) - response])
        yerr = np.clip(np.nan_to_num(yerr), 0, None)
    ax.errorbar(dose[pos], response[pos], yerr=None if yerr is None else yerr[:, pos], fmt="o", color="C0",
                capsize=3, label="wells")
    if (~pos).any() and pos.any():
        x0 = dose[pos].min() / 10
        ax.errorbar(np.full((~pos).sum(), x0), response[~pos], yerr=None if yerr is None else yerr[:, ~pos],
                    fmt="s", color="grey", capsize=3, label="dose 0 (not fitted)")
    if fit is not None:
        lo = dose[pos].min() / 3
        hi = dose[pos].max() * 3
        grid = np.logspace(math.log10(lo), math.log10(hi), 200)
        ax.plot(grid, fit.predict(grid), color="C1", label=f"4PL fit (R2 {fit.r2:.2f})")
        label = f"IC50 {fit.ic50:.3g}"
        # a CI bound that underflowed to 0 (a very steep or flat fit) counts as not determined
        if (fit.ic50_ci_low > 0 and math.isfinite(fit.ic50_ci_high)
                and math.log10(fit.ic50_ci_high / fit.ic50_ci_low) <= 2 * MAX_CI_DECADES):
            label += f" [{fit.ic50_ci_low:.3g}, {fit.ic50_ci_high:.3g}]"
        else:
            label += " (CI not determined)"
        if fit.extrapolated:
            label += ", extrapolated"
        ax.axvline(fit.ic50, color="C1", linestyle="--", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("dose")
    ax.set_ylabel(ylabel)
    title = fit.compound if fit is not None else ""
    ax.set_title(title or "dose response")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
