"""Sliding-window geometry and fast per-window (per-box) statistics via integral images."""
from __future__ import annotations

import cv2
import numpy as np


def window_origins(height: int, width: int, window: int, stride: int) -> np.ndarray:
    """Top-left (y, x) of every full window, row-major; [N, 2] int. Partial windows are dropped."""
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
    if window > height or window > width:
        raise ValueError(f"window {window} is larger than the {width}x{height} frame; lower data.window (a training "
                         "option; predict uses the window stored in its checkpoint)")
    ys = np.arange(0, height - window + 1, stride)
    xs = np.arange(0, width - window + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int64)


def _sums(integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sums over int boxes [N, 4] (x0, y0, x1, y1) from an integral image."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _window_boxes(origins: np.ndarray, window: int) -> np.ndarray:
    y, x = origins[:, 0], origins[:, 1]
    return np.stack([x, y, x + window, y + window], axis=1)


def box_means(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of ``image`` over each int box [N, 4] (x0, y0, x1, y1) inside the image (float64)."""
    integral = cv2.integral(image.astype(np.float64), sdepth=cv2.CV_64F)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float64)
    return _sums(integral, boxes) / area


def box_stds(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Standard deviation of ``image`` over each int box [N, 4] (x0, y0, x1, y1), clipped to the image."""
    h, w = image.shape
    boxes = np.stack([np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h),
                      np.clip(boxes[:, 2], 0, w), np.clip(boxes[:, 3], 0, h)], axis=1)
    s, sq = cv2.integral2(image.astype(np.float64), sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    n = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1).astype(np.float64)
    mean = _sums(s, boxes) / n
    var = _sums(sq, boxes) / n - mean ** 2
    return np.sqrt(np.clip(var, 0.0, None))


def window_means(image: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``image`` over each window (float64), on the image's own scale."""
    return box_means(image, _window_boxes(origins, window))


def window_stds(image: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of ``image`` over each window (float64)."""
    return box_stds(image, _window_boxes(origins, window))
