"""Slicing whole transmitted-light fields into tiles, and an 8-bit tile cache in one memmap.

Grid shapes (rows x cols), for the usual landscape 1280x960 field:
  2 -> 1x2 (640x960 tiles), 4 -> 2x2 (640x480, the authors' default), 6 -> 2x3 (426x480),
  8 -> 2x4 (320x480).
Tiles are ``floor(W/cols) x floor(H/rows)`` anchored at the top-left corner; remainder pixels on
the right/bottom edge are dropped (2 px per row for 6 tiles on 1280 px). This is what the
authors' slicer (image_slicer) does for 2 and 4 tiles; for 8 it makes a 3x3 grid of 9 tiles,
we use 2x4 so every field gives exactly n tiles. The 2x2 result equals the authors' own tiles
pixel-exactly (tests/test_celldeath_tiling.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stainfree.data.imageio import read_image
from stainfree.utils.atomic import atomic_dir
from stainfree.utils.errors import UserError

GRIDS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (1, 2), 4: (2, 2), 6: (2, 3), 8: (2, 4)}
RESIZE_MODES = ("squish", "crop")
CACHE_VERSION = 1


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


def to_uint8(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5, stretch_uint8: bool = False) -> np.ndarray:
    """8-bit images pass unchanged (unless ``stretch_uint8``); 16-bit ones are stretched between per-image percentiles.

    Per-image percentiles (not a fixed /257) because TLM exposure varies between microscopes
    and a fixed scale leaves 16-bit fields nearly black. ``stretch_uint8`` applies the same
    stretch to 8-bit fields: it removes replicate-level brightness/contrast shifts (the real
    U2OS replicates differ mostly in exposure) at the price of absolute-intensity cues.
    """
    if image.dtype == np.uint8 and not stretch_uint8:
        return image
    lo, hi = np.percentile(image, [low_pct, high_pct])
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    scaled = (image.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def resize_tile(tile: np.ndarray, size: int, mode: str = "squish") -> np.ndarray:
    """Resize a tile to ``size`` x ``size``: 'squish' keeps the whole field, 'crop' keeps aspect (centre square)."""
    if mode not in RESIZE_MODES:
        raise UserError(f"data.resize='{mode}' is not supported; use one of {RESIZE_MODES}")
    if mode == "crop":
        h, w = tile.shape
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        tile = tile[y0 : y0 + s, x0 : x0 + s]
    if tile.shape == (size, size):
        return np.ascontiguousarray(tile)
    interp = cv2.INTER_AREA if min(tile.shape) >= size else cv2.INTER_LINEAR
    return cv2.resize(tile, (size, size), interpolation=interp)


@dataclass(frozen=True)
class TileSpec:
    """Everything that decides the pixels of a cached tile (also stored in checkpoints)."""

    n_tiles: int
    input_size: int
    resize: str = "squish"
    low_pct: float = 0.5
    high_pct: float = 99.5
    stretch_uint8: bool = False

    def as_dict(self) -> dict:
        rows, cols = grid_shape(self.n_tiles)
        return {
            "n_tiles": self.n_tiles,
            "grid": [rows, cols],
            "tile_anchor": "top-left; floor(W/cols) x floor(H/rows); remainder dropped",
            "input_size": self.input_size,
            "resize": self.resize,
            "to_8bit": {"uint8": "per-image percentile stretch" if self.stretch_uint8 else "unchanged",
                        "uint16": "per-image percentile stretch", "stretch_uint8": self.stretch_uint8,
                        "low_pct": self.low_pct, "high_pct": self.high_pct},
        }


def image_tiles(path: str | os.PathLike, spec: TileSpec) -> np.ndarray:
    """Read one field and return its tiles as uint8 ``[n_tiles, S, S]`` (the cache's unit of work)."""
    image = to_uint8(read_image(path), spec.low_pct, spec.high_pct, spec.stretch_uint8)
    return np.stack([resize_tile(t, spec.input_size, spec.resize) for t in tile_image(image, spec.n_tiles)])


def _cache_key(paths: Sequence[Path], spec: TileSpec) -> str:
    """Hash of file identities (path, size, mtime) and the tile spec: any change -> a new cache."""
    h = hashlib.sha1(json.dumps([CACHE_VERSION, spec.as_dict()]).encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _fill(out: np.ndarray, paths: Sequence[Path], spec: TileSpec, workers: int) -> None:
    """Tile every image into ``out`` (threads: cv2 decoding releases the GIL)."""
    n = spec.n_tiles

    def work(i: int) -> None:
        out[i * n : (i + 1) * n] = image_tiles(paths[i], spec)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(work, range(len(paths))))


def build_tiles(
    paths: Sequence[str | os.PathLike], spec: TileSpec, cache_dir: str | os.PathLike | None = None, workers: int = 4
) -> np.ndarray:
    """uint8 tiles ``[len(paths) * n_tiles, S, S]``; tile ``k`` of image ``i`` is row ``i * n_tiles + k``.

    With ``cache_dir`` the array is a read-only memmap in ``<cache_dir>/celldeath_tiles_<key>/tiles.npy``,
    built once in a temp folder and renamed into place (an interrupted build never looks finished).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no images to tile; check data.root and the label/time/replicate filters")
    shape = (len(paths) * spec.n_tiles, spec.input_size, spec.input_size)
    if cache_dir is None:
        out = np.empty(shape, np.uint8)
        _fill(out, paths, spec, workers)
        return out
    target = Path(cache_dir) / f"celldeath_tiles_{_cache_key(paths, spec)}"
    if not (target / "tiles.npy").is_file():
        with atomic_dir(target) as tmp:
            mm = np.lib.format.open_memmap(tmp / "tiles.npy", mode="w+", dtype=np.uint8, shape=shape)
            _fill(mm, paths, spec, workers)
            mm.flush()
            del mm
            meta = {"spec": spec.as_dict(), "images": [str(p) for p in paths]}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    tiles = np.load(target / "tiles.npy", mmap_mode="r")
    if tiles.shape != shape:
        raise RuntimeError(f"{target}/tiles.npy has shape {tiles.shape}, expected {shape}; delete that folder to rebuild it")
    return tiles
