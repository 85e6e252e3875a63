"""16-bit -> 8-bit bright-field settings of the JIMT-1 config (``data.bf_to8bit``).

Methods (the rule itself is ``stainfree.data.pixels.to_8bit``; JIMT-1 frames are always stretched):
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

from stainfree.data import pixels
from stainfree.data.spec import EIGHT_BIT_METHODS as METHODS  # noqa: F401 - re-exported for callers
from stainfree.data.spec import EightBit, SpecError


def eight_bit(cfg: dict[str, Any]) -> EightBit:
    """The EightBit of a ``bf_to8bit`` dict (always stretched, also for 8-bit frames)."""
    keys = ("method", "low", "high", "lo", "hi")
    try:
        return EightBit(**{k: cfg[k] for k in keys if cfg.get(k) is not None}, stretch_8bit=True)
    except SpecError as err:
        raise SpecError(str(err).replace("to_8bit", "bf_to8bit")) from None


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Normalise a ``bf_to8bit`` config dict (only the keys its method uses: the cache key)."""
    e = eight_bit(cfg)
    out: dict[str, Any] = {"method": e.method}
    if e.method == "percentile":
        out.update(low=float(e.low), high=float(e.high))
    elif e.method == "fixed":
        out.update(lo=float(e.lo), hi=float(e.hi))
    return out


def to_uint8(frame: np.ndarray, cfg: dict[str, Any]) -> tuple[np.ndarray, tuple[float, float]]:
    """Convert one frame; returns the 8-bit image and the (lo, hi) used (kept for reporting)."""
    return pixels.to_8bit_with_range(frame, eight_bit(cfg))
