"""Predict one row per annotated cell (``predict.py regions=<file>``): the importers read the file, and
every region is cut by ``pixels.load_source`` + ``pixels.cut_regions``, exactly as the training crop
store cut it, so a crop-trained model sees each cell as it saw its training cells.

A points CSV needs no label column here (cells to classify); labels that are present (VOC names,
COCO categories, a CSV's label column) are kept as ``truth`` so a user can check the model on
their own annotations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from stainfree.data import pixels
from stainfree.data.samples import SampleTableError
from stainfree.data.spec import PreprocessSpec
from stainfree.utils.errors import UserError

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
CELL_COLUMNS = ["image", "sample_id", "region_kind", "x0", "y0", "x1", "y1", "truth"]


class RegionsError(UserError):
    """The ``regions=`` annotation cannot be used; the message names the file and the fix."""


def default_point_size(spec: PreprocessSpec) -> float | None:
    """The training cell side in source pixels: the checkpoint's source scale (side of the cut,
    margin included) divided by ``1 + 2 * margin``; None when the checkpoint has no scale."""
    if spec.source_scale is None:
        return None
    return float(spec.source_scale) / (1.0 + 2.0 * float(spec.region.margin))


def read_regions(regions: str | os.PathLike, images: str | os.PathLike, spec: PreprocessSpec,
                 point_size: float | None = None) -> pd.DataFrame:
    """The importer's sample table for ``regions`` (VOC folder or .xml, COCO .json, points/boxes CSV),
    images looked up under ``images`` (predict's ``input``)."""
    from stainfree.data.sources.coco import read_coco
    from stainfree.data.sources.points_csv import read_points_csv
    from stainfree.data.sources.voc import read_voc

    path = Path(regions)
    images_root = Path(images) if Path(images).is_dir() else Path(images).parent
    if not path.exists():
        raise RegionsError(f"regions={regions}: no such file or folder; pass a VOC folder/.xml, a COCO .json "
                           "or a CSV of points/boxes")
    read: Callable[[], pd.DataFrame]
    if path.is_dir() or path.suffix.lower() == ".xml":
        folder = path if path.is_dir() else path.parent
        read = lambda: read_voc(str(folder), images=str(images_root))  # noqa: E731
    elif path.suffix.lower() == ".json":
        read = lambda: read_coco(str(path), images=str(images_root))  # noqa: E731
    elif path.suffix.lower() in CSV_SUFFIXES:
        size = point_size if point_size is not None else default_point_size(spec)
        read = lambda: read_points_csv(str(path), images=str(images_root), point_size=size,  # noqa: E731
                                       labels_required=False)
    else:
        raise RegionsError(f"regions={regions}: unknown annotation type '{path.suffix}'; use a VOC folder or "
                           ".xml, a COCO .json or a .csv of points/boxes")
    try:
        table = read()
    except SampleTableError as err:
        raise RegionsError(f"regions={regions}: {err} (the data.* names refer to predict's regions=/input=/"
                           "region_point_size= here)") from err
    if path.suffix.lower() == ".xml":  # one xml: only its own image's regions
        table = table[table["source_file"].map(lambda f: Path(str(f)).resolve() == path.resolve())] \
            if "source_file" in table else table
    return table.reset_index(drop=True)


def region_inputs(table: pd.DataFrame, spec: PreprocessSpec) -> Any:
    """Yield ``(path, rows, raw, frame8, patches)`` per image: ``patches`` uint8 [n, S, S] cut by the
    training rule (``pixels.cut_regions`` of ``pixels.to_8bit`` of ``pixels.read_grey``)."""
    for path, rows in table.groupby("path", sort=False):
        raw = pixels.read_grey(path, spec.channel)
        frame8 = pixels.to_8bit(raw, spec.to_8bit)
        boxes = rows[list(pixels.BOX_COLUMNS)].to_numpy(np.float64)
        yield path, rows, raw, frame8, pixels.cut_regions(frame8, boxes, spec)


def cell_rows(rows: pd.DataFrame, name: str, probs: np.ndarray, logits: np.ndarray, class_names: list[str],
              patch_columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """cells.csv rows of one image: the region, its truth (if annotated), p per class (calibrated),
    the raw logits, the predicted class and the per-cell OOD columns."""
    out = pd.DataFrame({"image": name, "sample_id": rows["sample_id"].to_numpy(),
                        "region_kind": rows["region_kind"].to_numpy()})
    for col in pixels.BOX_COLUMNS:
        out[col] = rows[col].to_numpy(float)
    labels = rows["label"].astype(str).to_numpy()
    out["truth"] = np.where(labels == "", "", labels)
    for j, c in enumerate(class_names):
        out[f"p({c})"] = probs[:, j]
    out["predicted"] = np.array(class_names, dtype=object)[probs.argmax(axis=1)] if len(probs) else []
    for key, values in patch_columns.items():
        out[key] = values
    return out


def predict_cells(table: pd.DataFrame, spec: PreprocessSpec, trusted: Any, root: Path) -> pd.DataFrame:
    """cells.csv: one row per region of ``table``, classified by ``trusted``
    (:class:`~stainfree.inference.trust_columns.TrustedClassifier`; calibrated p, logits, OOD per cell)."""
    from stainfree.inference.tiling import Tiles

    base = root if root.is_dir() else root.parent
    parts = []
    for path, rows, raw, frame8, patches in region_inputs(table, spec):
        n = len(patches)
        tiles = Tiles(frame8=frame8, boxes=np.zeros((n, 4), np.int64), patches=patches,
                      empty=np.zeros(n, bool), raw=raw)
        result = trusted(tiles)
        name = Path(path).relative_to(base).as_posix() if Path(path).is_relative_to(base) else Path(path).name
        cells = cell_rows(rows, name, result.probs, result.logits, trusted.class_names, result.patch_columns)
        parts.append(cells.assign(image_ood_flag=bool(result.image_columns.get("ood_flag", False))))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CELL_COLUMNS)
