"""Per-image input statistics the OOD input contract compares against training.

Measured on what the model path sees: the raw array as read (bit depth, size) and the 8-bit frame
the checkpoint's tiler makes of it (intensity percentiles, focus), plus how many source pixels one
side of a model input covers (the scale at which the model sees cells).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import cv2
import numpy as np

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
_STRIP_ROWS = 1024  # focus is computed in row strips so an 8000x8000 frame needs no float copy


def bits_used(raw: np.ndarray) -> int:
    """Bits needed for the brightest pixel (a 12-bit camera in a uint16 file gives <= 12)."""
    peak = int(raw.max()) if raw.size else 0
    return max(1, int(math.ceil(math.log2(peak + 1)))) if peak > 0 else 1


def nominal_bits(dtype: Any) -> int:
    """8 for uint8, 16 for uint16 (the container's depth)."""
    return int(np.dtype(dtype).itemsize * 8)


def intensity_percentiles(frame8: np.ndarray, percentiles: tuple[float, ...] = PERCENTILES) -> list[float]:
    """Percentiles of an 8-bit image from its histogram (exact for integer levels, O(pixels))."""
    if frame8.dtype != np.uint8:
        raise ValueError(f"intensity percentiles need the 8-bit model-path frame, got {frame8.dtype}")
    hist = np.bincount(frame8.ravel(), minlength=256)
    cdf = np.cumsum(hist) / max(1, frame8.size)
    return [float(np.searchsorted(cdf, p / 100.0, side="left")) for p in percentiles]


def focus(frame8: np.ndarray) -> float:
    """Variance of the Laplacian (3x3) of the 8-bit frame: low = blurred, very high = noise or finer scale."""
    h = frame8.shape[0]
    if frame8.shape[0] < 3 or frame8.shape[1] < 3:
        return math.nan
    total = total_sq = 0.0
    count = 0
    for start in range(0, h, _STRIP_ROWS):
        lo, hi = max(0, start - 1), min(h, start + _STRIP_ROWS + 1)
        lap = cv2.Laplacian(frame8[lo:hi], cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT)
        lap = lap[start - lo:start - lo + min(_STRIP_ROWS, h - start)].astype(np.float64)
        total += lap.sum()
        total_sq += np.square(lap).sum()
        count += lap.size
    mean = total / count
    return float(max(0.0, total_sq / count - mean * mean))


def model_input_side(height: int, width: int, preprocess: Mapping[str, Any]) -> float:
    """Source pixels covered by one side of a model input, by the checkpoint's own layout rule.

    Sliding windows (JIMT-1, boxes): the window side, whatever the image size. Grid tiles
    (celldeath): the tile side of THIS image (geometric mean of height and width, the shorter side
    for the 'crop' shape), so a whole field given to a model trained on crops shows up here.
    """
    from stainfree.data.spec import PreprocessSpec

    spec = PreprocessSpec.from_dict(dict(preprocess))
    if spec.layout.kind == "windows":
        return float(spec.layout.window)
    if spec.layout.kind == "grid":
        from stainfree.data.celldeath.tiling import tile_boxes

        _, _, y0, y1, x0, x1 = tile_boxes(height, width, int(spec.layout.n_tiles))[0]
        th, tw = y1 - y0, x1 - x0
        return float(min(th, tw)) if spec.region.shape == "crop" else float(math.sqrt(th * tw))
    return float(math.sqrt(height * width))


def image_statistics(raw: np.ndarray, frame8: np.ndarray, preprocess: Mapping[str, Any]) -> dict[str, Any]:
    """All input-contract statistics of one image (plain python values)."""
    height, width = int(raw.shape[0]), int(raw.shape[1])
    stats: dict[str, Any] = dict(
        dtype=str(raw.dtype), nominal_bits=nominal_bits(raw.dtype), bits=bits_used(raw),
        height=height, width=width, side=model_input_side(height, width, preprocess),
        focus=focus(frame8),
    )
    for p, value in zip(PERCENTILES, intensity_percentiles(frame8)):
        stats[f"p{p}"] = value
    return stats
