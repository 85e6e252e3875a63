"""Sliding-window geometry and fast per-window statistics via integral images."""
from __future__ import annotations

import cv2
import numpy as np


def window_origins(height: int, width: int, window: int, stride: int) -> np.ndarray:
    """Top-left (y, x) of every full window, row-major; [N, 2] int. Partial windows are dropped."""
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
    if window > height or window > width:
        raise ValueError(f"window {window} is larger than the {width}x{height} frame; lower `window`")
    ys = np.arange(0, height - window + 1, stride)
    xs = np.arange(0, width - window + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int64)


def _box_sums(integral: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    y, x = origins[:, 0], origins[:, 1]
    return (integral[y + window, x + window] - integral[y, x + window]
            - integral[y + window, x] + integral[y, x])


def window_means(image: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``image`` over each window (float64), on the image's own scale."""
    integral = cv2.integral(image.astype(np.float64), sdepth=cv2.CV_64F)
    return _box_sums(integral, origins, window) / float(window * window)


def window_stds(image: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of ``image`` over each window (float64)."""
    img = image.astype(np.float64)
    s, sq = cv2.integral2(img, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    n = float(window * window)
    mean = _box_sums(s, origins, window) / n
    var = _box_sums(sq, origins, window) / n - mean ** 2
    return np.sqrt(np.clip(var, 0.0, None))
