"""Lay out a raw image for predict exactly as training cut it, from the checkpoint's PreprocessSpec.

Pixels come from ``stainfree.data.pixels`` (``load_source`` + ``layout_boxes`` + ``cut_regions``),
the same functions that filled the training crop store, so a checkpoint sees at predict time the
pixels it was trained on (tests/test_parity.py proves it per source). The empty-window filter is
the JIMT-1 one (window statistics of ``jimt.tiling`` / ``jimt.empty_filter``, or the cache's SVM).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stainfree.data import pixels
from stainfree.data.spec import PreprocessSpec


@dataclass
class Tiles:
    """One image, laid out: ``patches`` uint8 [N, S, S] (model inputs), ``boxes`` [N, 4] (y, x, h, w)
    of the layout regions in image pixels, ``empty`` bool [N], ``frame8`` the 8-bit image (overlay), and
    ``raw`` the grey plane as read (bit depth and size for the OOD input checks; None if not kept)."""

    frame8: np.ndarray
    boxes: np.ndarray
    patches: np.ndarray
    empty: np.ndarray
    raw: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.patches.shape[0] != n or self.empty.shape != (n,):
            raise ValueError(f"inconsistent tiles: {n} boxes, {self.patches.shape[0]} patches, "
                             f"{self.empty.shape} empty flags")


EmptyFilter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (raw grey, image8, boxes) -> bool [N]


class Tiler:
    """``tiler(path_or_array) -> Tiles`` for one checkpoint's spec (a path is read by ``pixels.read_grey``)."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec
        self.empty_filter = build_empty_filter(spec.empty_filter)

    def __call__(self, source: str | os.PathLike | np.ndarray) -> Tiles:
        if isinstance(source, np.ndarray):
            raw = pixels.select_channel(source, self.spec.channel)
        else:
            raw = pixels.read_grey(source, self.spec.channel)
        frame8 = pixels.to_8bit(raw, self.spec.to_8bit)
        boxes = pixels.layout_boxes(frame8.shape[0], frame8.shape[1], self.spec)
        patches = pixels.cut_regions(frame8, boxes, self.spec)
        empty = self.empty_filter(raw, frame8, boxes)
        ib = np.floor(boxes + 0.5).astype(np.int64)
        yxhw = np.column_stack([ib[:, 1], ib[:, 0], ib[:, 3] - ib[:, 1], ib[:, 2] - ib[:, 0]])
        return Tiles(frame8=frame8, boxes=yxhw, patches=patches, empty=np.asarray(empty, bool), raw=raw)


def build_tiler(preprocess: dict[str, Any] | PreprocessSpec) -> Tiler:
    """The tiler of a checkpoint's ``preprocess`` entry (schema 2, or a legacy dict: converted)."""
    spec = preprocess if isinstance(preprocess, PreprocessSpec) else PreprocessSpec.from_dict(preprocess)
    return Tiler(spec)


def build_empty_filter(cfg: dict[str, Any] | None) -> EmptyFilter:
    """none / variance (``contrast`` of the raw image or ``bf8_std`` of the 8-bit one, per region) / svm."""
    from stainfree.data.jimt import empty_filter

    cfg = dict(cfg or {"method": "none"})
    method = cfg.get("method", "none")
    if method == "svm":
        return _SvmEmptyFilter(cfg)
    if method == "none":
        return lambda raw, frame8, boxes: np.zeros(len(boxes), bool)
    checked = empty_filter.check_config(cfg)
    threshold = float(checked["threshold"])

    def variance(raw: np.ndarray, frame8: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        from stainfree.data.jimt.tiling import box_stds

        image = frame8 if checked["statistic"] == "bf8_std" else empty_filter.contrast_image(raw)
        return box_stds(image, np.floor(boxes + 0.5).astype(np.int64)) < threshold

    return variance


class _SvmEmptyFilter:
    """The paper's empty filter at predict time: the cache's fitted SVM on frozen CNN features of
    each window's 8-bit source pixels (as in training)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        svm_path = cfg.get("svm_path")
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

    def __call__(self, raw: np.ndarray, frame8: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        from stainfree.data.jimt import empty_filter
        from stainfree.data.spec import Region

        crops = list(pixels.region_pixels(frame8, boxes, Region()))
        if not crops:
            return np.zeros(0, bool)
        feats = empty_filter.extract_features(
            self.net, empty_filter.batched(lambda i: crops[i], len(crops), int(self.cfg.get("batch_size", 64))),
            int(self.cfg.get("feature_size", 224)))
        return self.model.predict(feats) == 1
