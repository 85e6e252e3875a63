"""The authors' tile grid for whole transmitted-light fields (geometry only).

Grid shapes (rows x cols), for the usual landscape 1280x960 field:
  2 -> 1x2 (640x960 tiles), 4 -> 2x2 (640x480, the authors' default), 6 -> 2x3 (426x480),
  8 -> 2x4 (320x480).
Tiles are ``floor(W/cols) x floor(H/rows)`` anchored at the top-left corner; remainder pixels on
the right/bottom edge are dropped (2 px per row for 6 tiles on 1280 px). This is what the
authors' slicer (image_slicer) does for 2 and 4 tiles; for 8 it makes a 3x3 grid of 9 tiles,
we use 2x4 so every field gives exactly n tiles. The 2x2 result equals the authors' own tiles
pixel-exactly (tests/test_celldeath_tiling.py). The tiles' pixels (8-bit rule, resize) come from
``stainfree.data.pixels`` like every other model input.
"""
from __future__ import annotations

import numpy as np

from stainfree.utils.errors import UserError

GRIDS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (1, 2), 4: (2, 2), 6: (2, 3), 8: (2, 4)}


def grid_shape(n_tiles: int) -> tuple[int, int]:
    """(rows, cols) for ``n_tiles``; a clear error for unsupported counts."""
    if n_tiles not in GRIDS:
        raise UserError(f"data.n_tiles={n_tiles} is not supported; use one of {sorted(GRIDS)}")
    return GRIDS[n_tiles]


def tile_boxes(height: int, width: int, n_tiles: int) -> list[tuple[int, int, int, int, int, int]]:
    """(row, col, y0, y1, x0, x1) of every tile in row-major order (row/col are 1-based, as the authors name them)."""
    rows, cols = grid_shape(n_tiles)
    th, tw = height // rows, width // cols
    if th < 1 or tw < 1:
        raise UserError(f"an image of {width}x{height} px is too small for {n_tiles} tiles")
    return [(r + 1, c + 1, r * th, (r + 1) * th, c * tw, (c + 1) * tw) for r in range(rows) for c in range(cols)]


def tile_image(image: np.ndarray, n_tiles: int) -> list[np.ndarray]:
    """Slice a 2-D image into ``n_tiles`` views (row-major)."""
    if image.ndim != 2:
        raise ValueError(f"tile_image expects a grey 2-D image, got shape {image.shape}")
    return [image[y0:y1, x0:x1] for _, _, y0, y1, x0, x1 in tile_boxes(*image.shape, n_tiles)]
