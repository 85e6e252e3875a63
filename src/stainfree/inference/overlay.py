"""Heatmap overlay: where in the field of view the model sees dead cells.

Overlapping windows are averaged per pixel, so the map is as smooth as the stride allows;
pixels covered only by empty (filtered) patches are greyed out, so "no call" never looks
like "live".
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from stainfree.utils.atomic import atomic_path


def _colormap_lut(name: str = "RdYlGn_r") -> np.ndarray:
    """256x3 uint8 BGR lookup table from a matplotlib colormap (green = live, red = dead)."""
    from matplotlib import colormaps

    rgb = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return rgb[:, ::-1].copy()


OVERLAY_MAX_SIDE = 2048  # larger frames are drawn downscaled: an 8000 px overlay costs ~2 GB and a minute


def heatmap_overlay(frame8: np.ndarray, boxes: np.ndarray, p_dead: np.ndarray, empty: np.ndarray,
                    alpha: float = 0.45, max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """BGR uint8 image: ``frame8`` (grey uint8 HxW) blended with mean p(dead) per pixel.

    ``boxes`` is [N, 4] (y, x, h, w) in frame pixels; ``p_dead`` [N] (NaN for empty patches);
    ``empty`` [N] bool. A frame whose longer side exceeds ``max_side`` is drawn scaled down to it.
    """
    if frame8.dtype != np.uint8 or frame8.ndim != 2:
        raise ValueError(f"heatmap_overlay needs a 2-D uint8 frame, got {frame8.dtype} {frame8.shape}")
    frame8, boxes = _fit(frame8, np.asarray(boxes), max_side)
    h, w = frame8.shape
    total = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    covered_empty = np.zeros((h, w), bool)
    for (y, x, bh, bw), p, e in zip(boxes.astype(int), p_dead, empty):
        if e:
            covered_empty[y:y + bh, x:x + bw] = True
        else:
            total[y:y + bh, x:x + bw] += p
            count[y:y + bh, x:x + bw] += 1
    base = cv2.cvtColor(frame8, cv2.COLOR_GRAY2BGR)
    out = base.copy()
    scored = count > 0
    if scored.any():
        mean = np.divide(total, count, out=np.zeros_like(total), where=scored)
        colour = _colormap_lut()[np.clip(mean * 255, 0, 255).astype(np.uint8)]
        blend = cv2.addWeighted(base, 1 - alpha, colour, alpha, 0)
        out[scored] = blend[scored]
    grey_only = covered_empty & ~scored
    if grey_only.any():
        grey = cv2.addWeighted(base, 0.5, np.full_like(base, 128), 0.5, 0)
        out[grey_only] = grey[grey_only]
    return out


LEGEND_MIN_WIDTH = 320  # narrower images are padded (white, right) so the key strip fits


def _fit(frame8: np.ndarray, boxes: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """``frame8`` and its (y, x, h, w) boxes scaled so the longer side is at most ``max_side``."""
    scale = max_side / max(frame8.shape)
    if scale >= 1:
        return frame8, boxes
    size = (max(1, round(frame8.shape[1] * scale)), max(1, round(frame8.shape[0] * scale)))
    small = cv2.resize(frame8, size, interpolation=cv2.INTER_AREA)
    yx = np.floor(boxes[:, :2] * scale + 0.5)
    hw = np.maximum(np.floor((boxes[:, :2] + boxes[:, 2:]) * scale + 0.5) - yx, 1)
    return small, np.hstack([yx, hw]).astype(np.int64)


def add_legend(image_bgr: np.ndarray, caption: str, dead_label: str = "dead") -> np.ndarray:
    """``image_bgr`` with a key strip below it: the p(dead) colour bar, the grey "empty" swatch
    and ``caption`` (image name, dead fraction), so the PNG reads on its own. An image narrower
    than ``LEGEND_MIN_WIDTH`` is padded with white on the right to that width."""
    h, w = image_bgr.shape[:2]
    if w < LEGEND_MIN_WIDTH:
        pad = np.full((h, LEGEND_MIN_WIDTH - w, 3), 255, np.uint8)
        image_bgr, w = np.hstack([image_bgr, pad]), LEGEND_MIN_WIDTH
    strip_h = max(36, w // 24)
    scale = strip_h / 60.0
    strip = np.full((strip_h, w, 3), 255, np.uint8)
    bar_w = max(16, w // 4)
    bar = _colormap_lut()[np.linspace(0, 255, bar_w).astype(np.uint8)]
    y0, y1 = int(strip_h * 0.15), int(strip_h * 0.55)
    x0 = int(8 * scale) + 1
    strip[y0:y1, x0:x0 + bar_w] = bar[None, :, :]
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(scale * 1.5))
    text_y = int(strip_h * 0.9)
    cv2.putText(strip, "0", (x0, text_y), font, 0.5 * scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(strip, f"p({dead_label}) 1", (x0 + bar_w - int(95 * scale), text_y), font, 0.5 * scale, (0, 0, 0),
                thick, cv2.LINE_AA)
    gx = x0 + bar_w + int(20 * scale)
    strip[y0:y1, gx:gx + int(30 * scale) + 1] = 160
    cv2.putText(strip, "empty", (gx + int(36 * scale), y1), font, 0.5 * scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(strip, caption, (gx + int(110 * scale), y1), font, 0.55 * scale, (0, 0, 0), thick, cv2.LINE_AA)
    return np.vstack([image_bgr, strip])


def mark_ood(image_bgr: np.ndarray, label: str = "OOD") -> np.ndarray:
    """A copy of ``image_bgr`` with a red border and ``label`` in its top-left corner: the image was
    flagged as unlike the training data. Any size works (a 1 px image becomes one red pixel)."""
    out = image_bgr.copy()
    h, w = out.shape[:2]
    red = (0, 0, 255)
    border = max(1, min(h, w) // 60)
    out[:border], out[-border:], out[:, :border], out[:, -border:] = red, red, red, red
    scale = min(h, w) / 400.0
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, max(scale, 0.3), max(1, round(scale * 2)))
    if tw + 2 * border + 4 <= w and th + base + 2 * border + 4 <= h:  # text only where it fits
        x, y = border + 2, border + 2 + th
        cv2.rectangle(out, (x - 2, y - th - 2), (x + tw + 2, y + base), (255, 255, 255), -1)
        cv2.putText(out, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, max(scale, 0.3), red, max(1, round(scale * 2)),
                    cv2.LINE_AA)
    return out


def save_overlay(path: str | os.PathLike, image_bgr: np.ndarray) -> Path:
    """Write a PNG atomically (never a half-written file if the run is killed)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image_bgr):
            raise OSError(f"{path}: could not write the overlay PNG; check free disk space and permissions")
    return path
