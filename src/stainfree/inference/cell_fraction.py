"""Dead fraction of whole fields for a model trained on single cells (VOC/COCO/points boxes).

Such a model learned one cell per input, centred, at the training cell side; a whole field cut
into sliding windows shows it mostly background and half cells, and "dead windows / non-empty
windows" measures the area covered by dead-looking texture, not the share of dead cells (live cells
spread in colonies, dead ones round up small). Counting cells is what a biologist means, so here
cell-like spots are found at the training scale and each is classified exactly as training cut its
cells (``pixels.cut_regions`` with the checkpoint's margin and shape):

1. local contrast: the standard deviation of the 8-bit frame in a box of 3/4 of the training cell
   side (box filters), lightly smoothed;
2. cells: local maxima of that map at least half a cell side apart whose contrast exceeds the
   checkpoint's background threshold (the 2nd percentile of the training crops' contrast);
3. one box of the training cell side around each, classified as the mean calibrated probability
   over its 8 dihedral turns (training augmented with exactly these, so the model has no preferred
   orientation; averaging them cuts the per-cell noise); dead fraction = dead / cells.

Measured on the synthetic boxed set (README "Predict on raw images"); without a detector this
misses cells in tight colonies and sometimes splits a large cell, so treat it as an estimate.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import cv2
import numpy as np

from stainfree.data.spec import PreprocessSpec

CELL_SOURCES = ("voc", "coco", "points_csv")  # importers whose samples are single cells
CONTRAST_BOX = 0.75  # side of the contrast box, in training cell sides
MIN_DISTANCE = 0.5   # least distance between two cells, in training cell sides


def trained_on_cells(config: Mapping[str, Any] | None, spec: PreprocessSpec) -> bool:
    """True for a checkpoint whose samples were single cells cut from fields (a per-cell importer,
    a window layout at the cell scale and a contrast threshold for background)."""
    data = (config or {}).get("data") or {}
    empty = spec.empty_filter or {}
    return (str(data.get("source")) in CELL_SOURCES and spec.layout.kind == "windows"
            and spec.source_scale is not None and empty.get("statistic") == "bf8_std")


def cell_side(spec: PreprocessSpec) -> float:
    """The training cell side in source pixels (the cut side without the region margin)."""
    return float(spec.source_scale) / (1.0 + 2.0 * float(spec.region.margin))


def find_cells(frame8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """float [N, 4] (x0, y0, x1, y1) boxes of the training cell side around cell-like spots."""
    side = cell_side(spec)
    k = max(1, int(round(side * CONTRAST_BOX)))
    if frame8.shape[0] < k or frame8.shape[1] < k:
        return np.zeros((0, 4))
    image = frame8.astype(np.float32)
    mean = cv2.blur(image, (k, k), borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.blur(image * image, (k, k), borderType=cv2.BORDER_REFLECT)
    contrast = cv2.GaussianBlur(np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)), (0, 0), k / 6.0)
    d = max(3, int(round(side * MIN_DISTANCE)))
    peak = contrast == cv2.dilate(contrast, cv2.getStructuringElement(cv2.MORPH_RECT, (d, d)))
    threshold = float((spec.empty_filter or {}).get("threshold", 0.0))
    ys, xs = np.nonzero(peak & (contrast > threshold))
    half = side / 2.0
    return np.stack([xs + 0.5 - half, ys + 0.5 - half, xs + 0.5 + half, ys + 0.5 + half], axis=1).astype(np.float64)


def dihedral_turns(patches: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of uint8 patches [N, S, S] (the training augmentation's group)."""
    turns = []
    for k in range(4):
        turned = np.rot90(patches, k, axes=(1, 2))
        turns += [np.ascontiguousarray(turned), np.ascontiguousarray(turned[:, :, ::-1])]
    return turns


class CellCounter:
    """``counter(tiles) -> image columns`` (n_cells, n_dead_cells, dead_fraction, mean_p_dead_cells)."""

    def __init__(self, spec: PreprocessSpec, trusted: Any, dead: int) -> None:
        self.spec, self.trusted, self.dead = spec, trusted, dead

    def dihedral_probabilities(self, patches: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [N, C] averaged over the 8 dihedral turns of each patch."""
        probs = [self.trusted.probabilities(self.trusted.logits_and_features(turn)[0])
                 for turn in dihedral_turns(patches)]
        return np.mean(probs, axis=0)

    def __call__(self, tiles: Any) -> dict[str, Any]:
        from stainfree.data import pixels

        boxes = find_cells(tiles.frame8, self.spec)
        if len(boxes) == 0:
            return dict(n_cells=0, n_dead_cells=0, dead_fraction=math.nan, mean_p_dead_cells=math.nan)
        probs = self.dihedral_probabilities(pixels.cut_regions(tiles.frame8, boxes, self.spec))
        n_dead = int((probs.argmax(axis=1) == self.dead).sum())
        return dict(n_cells=len(boxes), n_dead_cells=n_dead, dead_fraction=n_dead / len(boxes),
                    mean_p_dead_cells=float(probs[:, self.dead].mean()))
