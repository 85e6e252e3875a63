"""The input contract: what the training images looked like, and checks of a new image against it.

The reference (``fit_input_reference``) keeps, per statistic of ``image_stats``, quantiles over
the training images; plain lists and floats only, so it lives in the checkpoint. A check returns
a ``Finding`` with a severity (> 1 = outside the contract) and a reason a person can act on.

Focus (and intensity for references of fewer than ``MVN_MIN_IMAGES`` images): a value is outside
when it lies beyond the 1st/99th training percentile by more than ``FENCE_K`` inter-quartile ranges
(a Tukey-style fence widened to the 1-99% range). Severity = distance from the training median in
units of the median-to-fence distance.

Intensity: the 7 percentiles move together (cell density, illumination), and checking each one
alone against a few dozen reference images flagged 3 of 40 held-out synthetic frames. They are
judged jointly instead: a Hotelling prediction region (level ``MVN_LEVEL``) around the reference
images' mean with a Ledoit-Wolf covariance, which widens by itself when the reference is small
(F distribution with n - 7 degrees of freedom). Severity = sqrt(T^2 / threshold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from stainfree.trust.image_stats import PERCENTILES

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
FENCE_K = 1.5
SCALE_TOLERANCE = 1.5  # cells up to 1.5x larger/smaller than any training image are in contract
BITS_SLACK = 2  # a uint16 image using 2 bits fewer than any training image is still fine
MVN_LEVEL = 0.999
MVN_MIN_IMAGES = len(PERCENTILES) + 3
# smallest spread a fence may assume: grey levels for intensity, decades for log10 focus
_SPREAD_FLOOR = {"intensity": 3.0, "focus_log10": 0.05}


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``severity`` > 1 means the image breaks the input contract."""

    check: str
    severity: float
    reason: str

    @property
    def flagged(self) -> bool:
        return self.severity > 1.0


def _quantiles(values: Sequence[float]) -> list[float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return [math.nan] * len(QUANTILES)
    return [float(v) for v in np.quantile(arr, QUANTILES)]


def _focus_log10(value: float) -> float:
    return math.log10(value + 1e-3) if value is not None and math.isfinite(value) else math.nan


def fit_input_reference(stats: Sequence[Mapping[str, Any]], window_layout: bool) -> dict[str, Any]:
    """The checkpoint's ``ood.input`` block from the statistics of the training images.

    ``window_layout``: the model sees fixed sliding windows (JIMT-1), so a different frame size
    hints at resampling and is checked too; for grid tiles the scale check already covers it.
    """
    if not stats:
        raise ValueError("no training images to build the input reference from")
    q = {f"p{p}": _quantiles([s[f"p{p}"] for s in stats]) for p in PERCENTILES}
    q["focus_log10"] = _quantiles([_focus_log10(s["focus"]) for s in stats])
    intensity = np.array([[float(s[f"p{p}"]) for p in PERCENTILES] for s in stats])
    return dict(
        intensity_region=_prediction_region(intensity),
        n_images=len(stats), quantiles=list(QUANTILES), window_layout=bool(window_layout),
        nominal_bits=sorted({int(s["nominal_bits"]) for s in stats}),
        bits=[min(int(s["bits"]) for s in stats), max(int(s["bits"]) for s in stats)],
        height=[min(int(s["height"]) for s in stats), max(int(s["height"]) for s in stats)],
        width=[min(int(s["width"]) for s in stats), max(int(s["width"]) for s in stats)],
        side=[min(float(s["side"]) for s in stats), max(float(s["side"]) for s in stats)],
        stats=q,
    )


def _prediction_region(values: np.ndarray) -> dict[str, Any] | None:
    """Mean, precision and T^2 threshold of a Hotelling prediction region (None for too few images)."""
    from scipy.stats import f as f_dist
    from sklearn.covariance import LedoitWolf

    n, p = values.shape
    if n < MVN_MIN_IMAGES:
        return None
    floor = _SPREAD_FLOOR["intensity"] ** 2  # identical reference images must not give a zero-width region
    cov = LedoitWolf().fit(values).covariance_ + floor * np.eye(p)
    threshold = f_dist.ppf(MVN_LEVEL, p, n - p) * p * (n - 1) * (n + 1) / (n * (n - p))
    return dict(mean=[float(v) for v in values.mean(axis=0)],
                precision=[[float(v) for v in row] for row in np.linalg.inv(cov)],
                threshold=float(threshold), level=MVN_LEVEL, n=int(n))


def _fence(quantiles: Sequence[float], floor: float) -> tuple[float, float, float]:
    """(lower fence, median, upper fence) of one statistic's training quantiles."""
    qs = dict(zip(QUANTILES, quantiles))
    spread = max(qs[0.75] - qs[0.25], floor)
    return qs[0.01] - FENCE_K * spread, qs[0.5], qs[0.99] + FENCE_K * spread


def _fence_severity(value: float, quantiles: Sequence[float], floor: float) -> float:
    lo, mid, hi = _fence(quantiles, floor)
    if not math.isfinite(value) or not math.isfinite(mid):
        return 0.0
    if value >= mid:
        return (value - mid) / max(hi - mid, 1e-9)
    return (mid - value) / max(mid - lo, 1e-9)


def _scale_severity(ratio: float) -> float:
    return abs(math.log(ratio)) / math.log(SCALE_TOLERANCE) if ratio > 0 else math.inf


def check_bit_depth(stats: Mapping[str, Any], ref: Mapping[str, Any]) -> Finding:
    got, expected = int(stats["nominal_bits"]), [int(b) for b in ref["nominal_bits"]]
    if got not in expected:
        want = min(expected, key=lambda b: abs(b - got))
        return Finding("bit_depth", max(got, want) / min(got, want),
                       f"{'/'.join(str(b) for b in expected)}-bit expected, got {got}-bit")
    low = int(ref["bits"][0])
    severity = max(0.0, (low - int(stats["bits"])) / BITS_SLACK)
    return Finding("bit_depth", severity,
                   f"only {stats['bits']} of {got} bits used (training images used {low}-{ref['bits'][1]} bits): "
                   "was it converted or under-exposed?")


def check_scale(stats: Mapping[str, Any], ref: Mapping[str, Any]) -> Finding:
    """Source pixels per model input vs training: > 1 means cells look smaller to the model."""
    lo, hi = (float(v) for v in ref["side"])
    side = float(stats["side"])
    nearest = min(max(side, lo), hi)
    ratio = side / nearest
    unit = "windows" if ref.get("window_layout") else "tiles"
    word = "smaller" if ratio > 1 else "larger"
    factor = ratio if ratio > 1 else 1 / ratio
    return Finding("scale", _scale_severity(ratio),
                   f"scale {factor:.1f}x {word} than training {unit}: a model input covers {side:.0f} px of this "
                   f"image vs {nearest:.0f} px in training, so at the training pixel size cells look {factor:.1f}x "
                   f"{word} to the model")


def check_size(stats: Mapping[str, Any], ref: Mapping[str, Any]) -> Finding:
    """Frame size vs the training frames (window layouts only: a resampled frame keeps its window)."""
    if not ref.get("window_layout"):
        return Finding("size", 0.0, "")
    h, w = int(stats["height"]), int(stats["width"])
    lo = math.sqrt(ref["height"][0] * ref["width"][0])
    hi = math.sqrt(ref["height"][1] * ref["width"][1])
    size = math.sqrt(h * w)
    ratio = size / min(max(size, lo), hi)
    word, factor = ("smaller", 1 / ratio) if ratio < 1 else ("larger", ratio)
    how = "downscaled" if ratio < 1 else "upscaled or taken with finer pixels"
    train = f"{ref['width'][0]}x{ref['height'][0]}" + (
        "" if ref["height"][0] == ref["height"][1] and ref["width"][0] == ref["width"][1]
        else f" to {ref['width'][1]}x{ref['height'][1]}")
    return Finding("size", _scale_severity(ratio),
                   f"image {w}x{h} px is {factor:.1f}x {word} than the training frames ({train} px): if it was "
                   f"{how}, cells are {factor:.1f}x {word} than the model learned")


def check_focus(stats: Mapping[str, Any], ref: Mapping[str, Any]) -> Finding:
    q = ref["stats"]["focus_log10"]
    value = _focus_log10(stats["focus"])
    severity = _fence_severity(value, q, _SPREAD_FLOOR["focus_log10"])
    qs = dict(zip(QUANTILES, q))
    if value < qs[0.5]:
        reason = f"blurred: focus {stats['focus']:.3g} vs training 1st percentile {10 ** qs[0.01]:.3g}"
    else:
        reason = f"sharper or noisier than training: focus {stats['focus']:.3g} vs training 99th percentile {10 ** qs[0.99]:.3g}"
    return Finding("focus", severity, reason)


def _intensity_reason(stats: Mapping[str, Any], ref: Mapping[str, Any], p: int) -> str:
    qs = dict(zip(QUANTILES, ref["stats"][f"p{p}"]))
    return (f"intensity unlike training: {p}th percentile grey {stats[f'p{p}']:.0f} vs training "
            f"{qs[0.01]:.0f}-{qs[0.99]:.0f} (8-bit model input)")


def check_intensity(stats: Mapping[str, Any], ref: Mapping[str, Any]) -> Finding:
    """The 8-bit intensity percentiles jointly (inversion, saturation, another stretch or exposure);
    the reason names the percentile furthest from training."""
    region = ref.get("intensity_region")
    if region:
        x = np.array([float(stats[f"p{p}"]) for p in PERCENTILES]) - np.asarray(region["mean"])
        precision = np.asarray(region["precision"])
        severity = math.sqrt(max(0.0, float(x @ precision @ x)) / region["threshold"])
        worst = int(np.argmax(np.abs(x) * np.sqrt(np.diag(precision))))
        return Finding("intensity", severity, _intensity_reason(stats, ref, PERCENTILES[worst]))
    worst = Finding("intensity", 0.0, "")
    for p in PERCENTILES:
        q = ref["stats"][f"p{p}"]
        severity = _fence_severity(float(stats[f"p{p}"]), q, _SPREAD_FLOOR["intensity"])
        if severity > worst.severity:
            worst = Finding("intensity", severity, _intensity_reason(stats, ref, p))
    return worst


CHECKS = (check_bit_depth, check_scale, check_size, check_focus, check_intensity)


def check_input(stats: Mapping[str, Any], ref: Mapping[str, Any]) -> list[Finding]:
    """Every input-contract check of one image (flagged or not), in a fixed order."""
    return [check(stats, ref) for check in CHECKS]
