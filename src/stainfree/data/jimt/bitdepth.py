"""16-bit -> 8-bit bright-field conversion (the CNN sees 8-bit, as in the paper).

Methods:
- ``percentile`` (default): per frame, map the ``low``/``high`` percentiles (0.5/99.5) to 0/255.
  Robust to hot pixels and to the lamp level changing between fields.
- ``minmax``: per frame, map min/max to 0/255 (sensitive to single outlier pixels).
- ``fixed``: map the given ``lo``/``hi`` raw values to 0/255 for every frame, keeping absolute
  intensity comparable across frames (use when exposure is locked).
Values outside the range are clipped.
"""
from __future__ import annotations

from typing import Any

import numpy as np

METHODS = ("percentile", "minmax", "fixed")


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Normalise a ``bf_to8bit`` config dict and fail early with the fix on bad values."""
    method = cfg.get("method", "percentile")
    if method not in METHODS:
        raise ValueError(f"bf_to8bit.method='{method}' is not one of {METHODS}")
    out: dict[str, Any] = {"method": method}
    if method == "percentile":
        low, high = float(cfg.get("low", 0.5)), float(cfg.get("high", 99.5))
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"bf_to8bit percentiles need 0 <= low < high <= 100, got {low}, {high}")
        out.update(low=low, high=high)
    elif method == "fixed":
        if cfg.get("lo") is None or cfg.get("hi") is None:
            raise ValueError("bf_to8bit.method=fixed needs bf_to8bit.lo and bf_to8bit.hi (raw values)")
        lo, hi = float(cfg["lo"]), float(cfg["hi"])
        if hi <= lo:
            raise ValueError(f"bf_to8bit.fixed needs hi > lo, got lo={lo}, hi={hi}")
        out.update(lo=lo, hi=hi)
    return out


def stretch_range(frame: np.ndarray, cfg: dict[str, Any]) -> tuple[float, float]:
    """The raw (lo, hi) that this frame's conversion maps to (0, 255)."""
    method = cfg["method"]
    if method == "percentile":
        lo, hi = np.percentile(frame, [cfg["low"], cfg["high"]])
    elif method == "minmax":
        lo, hi = frame.min(), frame.max()
    else:
        lo, hi = cfg["lo"], cfg["hi"]
    return float(lo), float(hi)


def to_uint8(frame: np.ndarray, cfg: dict[str, Any]) -> tuple[np.ndarray, tuple[float, float]]:
    """Convert one frame; returns the 8-bit image and the (lo, hi) used (kept for reporting)."""
    lo, hi = stretch_range(frame, cfg)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (frame.astype(np.float32) - np.float32(lo)) * np.float32(scale)
    return np.clip(out, 0, 255).round().astype(np.uint8), (lo, hi)
