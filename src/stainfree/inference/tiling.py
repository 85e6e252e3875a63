"""Tile a raw frame exactly as training did, from the checkpoint's ``preprocess`` settings.

The tiling, 8-bit conversion and empty-patch filter are the data packages' own functions (not
re-implementations), so a checkpoint sees at predict time the pixels it saw in training.
Two layouts exist: sliding windows with an empty filter (JIMT-1, ``window``/``stride`` keys)
and a fixed grid of tiles resized to the model input (celldeath, ``n_tiles`` key).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class Tiles:
    """One frame, tiled: ``patches`` uint8 [N, S, S] (model input size), ``boxes`` [N, 4] (y, x, h, w)
    in frame pixels, ``empty`` bool [N], and ``frame8`` the 8-bit frame (for the overlay)."""

    frame8: np.ndarray
    boxes: np.ndarray
    patches: np.ndarray
    empty: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.patches.shape[0] != n or self.empty.shape != (n,):
            raise ValueError(f"inconsistent tiles: {n} boxes, {self.patches.shape[0]} patches, "
                             f"{self.empty.shape} empty flags")


Tiler = Callable[[np.ndarray], Tiles]


def build_tiler(preprocess: dict[str, Any]) -> Tiler:
    """Pick the tiler for a checkpoint's ``preprocess`` dict; a clear error for unknown layouts."""
    if "n_tiles" in preprocess:
        return GridTiler(preprocess)
    if "window" in preprocess:
        return WindowTiler(preprocess)
    raise ValueError(
        f"checkpoint preprocess settings {sorted(preprocess)} name neither 'n_tiles' (celldeath grid) nor "
        "'window' (JIMT-1 sliding windows); the checkpoint was written by an incompatible version"
    )


class GridTiler:
    """celldeath: grid of ``n_tiles`` tiles, each resized to the model input (no empty filter)."""

    def __init__(self, preprocess: dict[str, Any]) -> None:
        from stainfree.data.celldeath.tiling import TileSpec

        eight = preprocess.get("to_8bit", {}) or {}
        self.spec = TileSpec(n_tiles=int(preprocess["n_tiles"]), input_size=int(preprocess["input_size"]),
                             resize=str(preprocess.get("resize", "squish")),
                             low_pct=float(eight.get("low_pct", 0.5)), high_pct=float(eight.get("high_pct", 99.5)))

    def __call__(self, image: np.ndarray) -> Tiles:
        from stainfree.data.celldeath.tiling import resize_tile, tile_boxes, to_uint8

        frame8 = to_uint8(image, self.spec.low_pct, self.spec.high_pct)
        boxes = tile_boxes(*frame8.shape, self.spec.n_tiles)
        patches = np.stack([resize_tile(frame8[y0:y1, x0:x1], self.spec.input_size, self.spec.resize)
                            for _, _, y0, y1, x0, x1 in boxes])
        yxhw = np.array([(y0, x0, y1 - y0, x1 - x0) for _, _, y0, y1, x0, x1 in boxes], dtype=np.int64)
        return Tiles(frame8=frame8, boxes=yxhw, patches=patches, empty=np.zeros(len(boxes), bool))
