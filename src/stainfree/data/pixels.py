"""THE one way a source image becomes model inputs, for training (crop store) and predict alike.

``load_source(path, spec)`` reads the grey plane (``spec.channel``) and applies the 8-bit rule;
``cut_regions(image8, boxes, spec)`` turns boxes into uint8 [N, S, S] inputs; ``layout_boxes`` lays
out a whole image for predict. Nothing else in stainfree converts, crops or resizes model inputs.

Geometry rule (all in integer source pixels, boxes half-open ``[x0, x1) x [y0, y1)``):
1. a box with NaN coordinates is the whole image; edges are rounded half up (``floor(v + 0.5)``),
   a box is at least 1 px wide and high;
2. margin: ``floor(margin * side + 0.5)`` pixels are added on each side (per axis);
3. shape ``crop``: the centre square of side min(w, h), offset ``(w - s) // 2``; ``square``: the
   square of side max(w, h) around it, offset ``-((s - w) // 2)``; ``squish``: unchanged;
4. pixels outside the image are mirrored (BORDER_REFLECT_101) or zero;
5. resize to S x S: none when already S x S, INTER_AREA when both sides >= S, else INTER_LINEAR.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np

from stainfree.data.imageio import read_channel, read_image
from stainfree.data.spec import EightBit, Layout, PreprocessSpec, Region, SpecError

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


# ---------------------------------------------------------------------------- grey + 8-bit
def read_grey(path: str | os.PathLike, channel: str | int = "mean") -> np.ndarray:
    """The grey plane of ``path`` at its own bit depth: the mean of the colour channels (palette
    images expanded first) for ``"mean"``, else page/channel ``channel``."""
    if channel == "mean" or channel is None:
        return read_image(path, grey=True)
    return read_channel(path, int(channel))


def select_channel(image: np.ndarray, channel: str | int = "mean") -> np.ndarray:
    """The grey plane of an already decoded array (H x W, H x W x C), by the same rule as ``read_grey``."""
    if image.ndim == 2:
        return image
    if channel == "mean" or channel is None:
        return image[..., :3].mean(axis=2).round().astype(image.dtype)
    return np.ascontiguousarray(image[..., int(channel)])


def stretch_range(image: np.ndarray, eight: EightBit) -> tuple[float, float]:
    """The raw (lo, hi) that ``to_8bit`` maps to (0, 255) for this image."""
    if eight.method == "percentile":
        lo, hi = np.percentile(image, [eight.low, eight.high])
    elif eight.method == "minmax":
        lo, hi = image.min(), image.max()
    else:
        lo, hi = eight.lo, eight.hi
    return float(lo), float(hi)


def to_8bit(image: np.ndarray, eight: EightBit) -> np.ndarray:
    """uint8 of a grey image: uint8 passes unchanged unless ``stretch_8bit``; the rest is mapped
    linearly so (lo, hi) -> (0, 255), clipped, then rounded (``np.round``). A flat image gives zeros."""
    return to_8bit_with_range(image, eight)[0]


def to_8bit_with_range(image: np.ndarray, eight: EightBit) -> tuple[np.ndarray, tuple[float, float]]:
    """``to_8bit`` plus the (lo, hi) it mapped to (0, 255) ((0, 255) for a uint8 image passed unchanged)."""
    if image.dtype == np.uint8 and not eight.stretch_8bit:
        return image, (0.0, 255.0)
    lo, hi = stretch_range(image, eight)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = image.astype(np.float32)  # in place from here: one float copy of a huge frame, not four
    out -= np.float32(lo)
    out *= np.float32(scale)
    np.clip(out, 0, 255, out=out)
    np.round(out, out=out)
    return out.astype(np.uint8), (lo, hi)


def load_source(path: str | os.PathLike, spec: PreprocessSpec, channel: str | int | None = None) -> np.ndarray:
    """uint8 H x W of a source image: grey plane (``channel`` overrides ``spec.channel``) + 8-bit rule."""
    return to_8bit(read_grey(path, spec.channel if channel is None else channel), spec.to_8bit)


# ---------------------------------------------------------------------------- regions
def region_boxes(boxes: np.ndarray, height: int, width: int, region: Region) -> np.ndarray:
    """int64 [N, 4] (x0, y0, x1, y1) actually cut for float ``boxes`` (steps 1-3 of the module rule)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    whole = np.isnan(b).any(axis=1)
    b[whole] = (0.0, 0.0, float(width), float(height))
    ib = np.floor(b + 0.5).astype(np.int64)
    x0, y0 = ib[:, 0], ib[:, 1]
    w, h = np.maximum(ib[:, 2] - x0, 1), np.maximum(ib[:, 3] - y0, 1)
    if region.margin:
        mx, my = np.floor(region.margin * w + 0.5).astype(np.int64), np.floor(region.margin * h + 0.5).astype(np.int64)
        x0, y0, w, h = x0 - mx, y0 - my, w + 2 * mx, h + 2 * my
    if region.shape == "crop":
        s = np.minimum(w, h)
        x0, y0, w, h = x0 + (w - s) // 2, y0 + (h - s) // 2, s, s
    elif region.shape == "square":
        s = np.maximum(w, h)
        x0, y0, w, h = x0 - (s - w) // 2, y0 - (s - h) // 2, s, s
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def _reflect_101(index: np.ndarray, n: int) -> np.ndarray:
    """cv2.BORDER_REFLECT_101 index mapping (``dcb|abcd|cba``) for any distance outside [0, n)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def _cut(image8: np.ndarray, box: np.ndarray, border: str) -> np.ndarray:
    """The pixels of one integer box, padded by ``border`` where it leaves the image."""
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = image8.shape
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return image8[y0:y1, x0:x1]
    rows, cols = np.arange(y0, y1), np.arange(x0, x1)
    if border == "reflect":
        return image8[np.ix_(_reflect_101(rows, height), _reflect_101(cols, width))]
    out = np.zeros((len(rows), len(cols)), np.uint8)
    ry, rx = (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)
    out[np.ix_(ry, rx)] = image8[np.ix_(rows[ry], cols[rx])]
    return out


def region_pixels(image8: np.ndarray, boxes: np.ndarray, region: Region) -> Iterator[np.ndarray]:
    """The source pixels of every box (after margin/shape/padding), before the resize to S x S."""
    for box in region_boxes(boxes, image8.shape[0], image8.shape[1], region):
        yield _cut(image8, box, region.border)


def resize_square(patch: np.ndarray, size: int) -> np.ndarray:
    """S x S model input: unchanged at S x S, INTER_AREA when both sides >= S, else INTER_LINEAR."""
    h, w = patch.shape
    if h == size and w == size:
        return np.ascontiguousarray(patch)
    interp = cv2.INTER_AREA if min(h, w) >= size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)


def cut_regions(image8: np.ndarray, boxes: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 [N, S, S] model inputs of ``boxes`` ([N, 4] x0, y0, x1, y1; NaN = whole image)."""
    if image8.dtype != np.uint8 or image8.ndim != 2:
        raise ValueError(f"cut_regions needs a uint8 H x W image (from load_source), got {image8.dtype} {image8.shape}")
    size = spec.input_size
    out = [resize_square(p, size) for p in region_pixels(image8, boxes, spec.region)]
    return np.stack(out) if out else np.zeros((0, size, size), np.uint8)


def model_inputs(path: str | os.PathLike, boxes: np.ndarray, spec: PreprocessSpec,
                 channel: str | int | None = None) -> np.ndarray:
    """``cut_regions(load_source(path, spec), boxes, spec)``."""
    return cut_regions(load_source(path, spec, channel), boxes, spec)


# ---------------------------------------------------------------------------- whole-image layout
def layout_boxes(height: int, width: int, spec: PreprocessSpec) -> np.ndarray:
    """float [N, 4] (x0, y0, x1, y1) regions of a whole image for predict, in the sample table's terms:
    ``cut_regions`` then adds the margin/shape exactly as in training.

    windows: row-major sliding windows whose side AFTER margin is ``layout.window`` (partial windows
    at the right/bottom edge are dropped); grid: the ``n_tiles`` grid; whole: the image.
    """
    layout: Layout = spec.layout
    if layout.kind == "whole":
        return np.array([[0.0, 0.0, float(width), float(height)]])
    if layout.kind == "grid":
        from stainfree.data.celldeath.tiling import tile_boxes

        return np.array([(x0, y0, x1, y1) for _, _, y0, y1, x0, x1 in tile_boxes(height, width, layout.n_tiles)],
                        dtype=np.float64)
    from stainfree.data.jimt.tiling import window_origins

    window = int(layout.window)
    stride = int(layout.stride or window)
    if window > height or window > width:
        raise SpecError(f"a {width}x{height} image is smaller than the model's {window} px window "
                        "(the region side it was trained on, stored in the checkpoint); use images at least "
                        f"{window}x{window} px at the training magnification, or a checkpoint trained with a smaller "
                        "data.window")
    origins = window_origins(height, width, window, stride)
    inner = float(np.floor(window / (1.0 + 2.0 * spec.region.margin) + 0.5)) if spec.region.margin else float(window)
    pad = np.floor((window - inner) / 2.0)
    y, x = origins[:, 0].astype(np.float64) + pad, origins[:, 1].astype(np.float64) + pad
    return np.stack([x, y, x + inner, y + inner], axis=1)
