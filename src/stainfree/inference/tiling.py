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
    if preprocess.get("study") == "celldeath" or preprocess.get("n_tiles"):
        return GridTiler(preprocess)
    if preprocess.get("window"):
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


class WindowTiler:
    """JIMT-1: 16->8-bit conversion, sliding windows, empty filter, resize to the model input.

    The empty filter uses the statistic the training cache used (``contrast`` of the raw frame or
    ``bf8_std`` of the 8-bit one) or the SVM saved with the cache (``svm_path``).
    """

    def __init__(self, preprocess: dict[str, Any]) -> None:
        from stainfree.data.jimt import bitdepth, empty_filter

        self.window = int(preprocess["window"])
        self.stride = int(preprocess.get("stride") or self.window)
        self.input_size = int(preprocess.get("input_size") or self.window)
        self.to8 = bitdepth.check_config(dict(preprocess.get("bf_to8bit") or {}))
        raw_filter = dict(preprocess.get("empty_filter") or {"method": "none"})
        svm_path = raw_filter.pop("svm_path", None) or preprocess.get("svm_path")
        self.empty_cfg = empty_filter.check_config(raw_filter) if raw_filter.get("method") != "svm" else raw_filter
        self.svm = None
        if self.empty_cfg["method"] == "svm":
            self.svm = _SvmEmptyFilter(self.empty_cfg, svm_path)

    def __call__(self, image: np.ndarray) -> Tiles:
        import cv2

        from stainfree.data.jimt import bitdepth, empty_filter
        from stainfree.data.jimt.tiling import window_origins, window_stds

        frame8, _ = bitdepth.to_uint8(image, self.to8)
        origins = window_origins(*frame8.shape, self.window, self.stride)
        w = self.window
        crops = [frame8[y:y + w, x:x + w] for y, x in origins]
        method = self.empty_cfg["method"]
        if method == "variance":
            source = frame8 if self.empty_cfg["statistic"] == "bf8_std" else empty_filter.contrast_image(image)
            empty = window_stds(source, origins, w) < float(self.empty_cfg["threshold"])
        elif method == "svm":
            empty = self.svm(crops)
        else:
            empty = np.zeros(len(origins), bool)
        if self.input_size != w:
            interp = cv2.INTER_AREA if self.input_size < w else cv2.INTER_LINEAR
            crops = [cv2.resize(c, (self.input_size, self.input_size), interpolation=interp) for c in crops]
        patches = np.stack(crops) if crops else np.zeros((0, self.input_size, self.input_size), np.uint8)
        boxes = np.column_stack([origins, np.full((len(origins), 2), w, np.int64)])
        return Tiles(frame8=frame8, boxes=boxes, patches=np.ascontiguousarray(patches),
                     empty=np.asarray(empty, bool))


class _SvmEmptyFilter:
    """The paper's empty filter at predict time: the cache's fitted SVM on frozen CNN features."""

    def __init__(self, cfg: dict[str, Any], svm_path: str | None) -> None:
        from pathlib import Path

        if not svm_path or not Path(svm_path).is_file():
            raise FileNotFoundError(
                f"the checkpoint's empty filter is an SVM but its file ({svm_path or 'no svm_path recorded'}) "
                "is missing; copy the training cache's svm.joblib there or retrain with empty_filter.method=variance"
            )
        import joblib

        from stainfree.data.jimt import empty_filter

        self.cfg = cfg
        self.model = joblib.load(svm_path)
        self.net = empty_filter.build_feature_backbone(cfg)

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        from stainfree.data.jimt import empty_filter

        if not crops:
            return np.zeros(0, bool)
        feats = empty_filter.extract_features(
            self.net, empty_filter.batched(lambda i: crops[i], len(crops), int(self.cfg.get("batch_size", 64))),
            int(self.cfg.get("feature_size", 224)))
        return self.model.predict(feats) == 1
