"""A CSV of cells (one row per cell: image, point or box, label) -> sample table.

The format annotation tools (napari/QuPath/ImageJ/CVAT/Labelbox CSV exports) and spreadsheets
produce. Columns are found by name (case, spaces and dashes ignored) unless given; the log says
which columns were used. Coordinates are source pixels, 0-based unless ``one_based``:
- a box as corners (``x0,y0,x1,y1``, ``xmin,ymin,xmax,ymax``, ``left,top,right,bottom``), half-open,
  or as ``x,y,width,height`` (``BX,BY,Width,Height`` of ImageJ);
- a point (``cx,cy``, ``x,y``, ``X,Y``, ``center_x,center_y``): the pixel index of the cell centre,
  turned into the ``point_size`` square centred on that pixel.
Other columns are kept as metadata (a ``group`` or ``split`` column is honoured downstream). A row
with an image and nothing else lists an image without cells (counted, no sample).
"""
from __future__ import annotations

import csv as csvlib
import logging
import re
from io import StringIO
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from stainfree.data.sources.class_map import map_class_names, normalise_class_map
from stainfree.data.sources.common import (
    LEADING_COLUMNS,
    SourceError,
    build_table,
    read_sizes,
    relative_key,
    require_file,
    require_folder,
    shorten,
)
from stainfree.data.sources.locate import ImageFinder

log = logging.getLogger(__name__)

SOURCE = "points_csv"
IMAGE_COLUMNS = ("image", "image_path", "image_name", "image_file", "filename", "file_name", "file", "path",
                 "img", "frame", "source_image")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "category_name", "name", "state", "status",
                 "type")
# (kind, column names) in the order tried: boxes before points, since x,y,width,height contains x,y
COORD_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("corners", ("x0", "y0", "x1", "y1")), ("corners", ("xmin", "ymin", "xmax", "ymax")),
    ("corners", ("x_min", "y_min", "x_max", "y_max")), ("corners", ("x1", "y1", "x2", "y2")),
    ("corners", ("left", "top", "right", "bottom")),
    ("xywh", ("x", "y", "width", "height")), ("xywh", ("x", "y", "w", "h")),
    ("xywh", ("bx", "by", "width", "height")), ("xywh", ("left", "top", "width", "height")),
    ("xywh", ("bbox_x", "bbox_y", "bbox_width", "bbox_height")),
    ("point", ("cx", "cy")), ("point", ("x", "y")), ("point", ("center_x", "center_y")),
    ("point", ("centre_x", "centre_y")), ("point", ("x_center", "y_center")),
    ("point", ("centroid_x", "centroid_y")), ("point", ("position_x", "position_y")),
)
BOX_FORMATS = ("corners", "xywh")
UNLABELLED = "__stainfree_no_label__"  # the label column added when labels_required=False and none exists


def read_points_csv(csv: str, images: str | None = None, image_column: str | None = None,
                    label_column: str | None = None, coord_columns: Sequence[str] | None = None,
                    box_format: str = "corners", point_size: float | None = None, one_based: bool = False,
                    class_map: dict | None = None, labels_required: bool = True) -> pd.DataFrame:
    """Read one CSV of cells into the sample table (region_kind ``point`` or ``box``).

    Options:
      csv            the CSV file (separator , ; or tab, detected; ``;`` files may use decimal commas).
      images         folder the image column is relative to (searched recursively by file name
                     when the written path does not exist); null = the CSV's folder.
      image_column   column naming the image; null = found by name (image, filename, file, path...).
      label_column   column with the class; null = found by name (label, class, category...).
      coord_columns  2 names (point x, y) or 4 (box); null = found by name (see the module doc).
      box_format     for 4 given columns: corners (x0, y0, x1, y1) or xywh (x, y, width, height).
      point_size     side in source pixels of the square cut around each point (about a cell
                     diameter plus context); required for points.
      one_based      true when positions count from 1 (ImageJ pixel indices, spreadsheets).
      class_map      ``{label in the CSV: class name}`` (null = labels used as written).
      labels_required false when the cells are to be classified (predict's ``regions=``): a file
                     without a label column then gives label '' for every cell.
    """
    path = require_file(csv, "csv", "CSV of cells")
    table = _read(path)
    img_root = require_folder(images, "images", "folder that holds the images") if images else path.parent
    if not labels_required and label_column is None and _find(table, LABEL_COLUMNS) is None:
        table = table.assign(**{UNLABELLED: ""})
        label_column = UNLABELLED
    image_col, label_col, kind, coord_cols = _columns(table, image_column, label_column, coord_columns,
                                                      box_format, path)
    if kind == "point" and (point_size is None or float(point_size) <= 0):
        raise SourceError(f"{path}: cells are points ({', '.join(coord_cols)}); set data.point_size to the side "
                          "in source pixels of the square to cut around each (about one cell diameter plus "
                          "context, e.g. 64)")
    coords = _numbers(table, coord_cols, path) - (1.0 if one_based else 0.0) * _position_mask(kind)
    labels = table[label_col].str.strip()
    images_named = table[image_col].str.strip()
    empty = np.isnan(coords).all(axis=1) & ((labels == "") | (label_col == UNLABELLED))
    shown = labels if label_col != UNLABELLED else pd.Series(np.where(empty, "", "?"), index=labels.index)
    _check_rows(table, coords, shown, images_named, empty, path)
    names = map_class_names(labels[~empty], normalise_class_map(class_map), SOURCE, str(path))
    finder = ImageFinder(img_root, "data.images")
    files = _resolve(images_named.unique(), finder, path)
    extra = [c for c in table.columns if c not in (image_col, label_col, *coord_cols)]
    rows, unmapped = [], []
    for i in np.flatnonzero(~empty):
        label = names[labels.iat[i]]
        if label is None:
            unmapped.append(f"line {i + 2}:{labels.iat[i]}")
            continue
        image = files[images_named.iat[i]]
        key = relative_key(image, finder.root)
        row = {"path": str(image), "key": key, "label": label, "group": key, "region_kind":
               "point" if kind == "point" else "box", "source_file": str(path), "source_label": labels.iat[i],
               **_region(kind, coords[i], point_size)}
        row.update({_safe(c): table[c].iat[i] for c in extra if c != "group"})
        if "group" in extra and table["group"].iat[i].strip():
            row["group"] = table["group"].iat[i].strip()  # the user's own grouping wins
        rows.append(row)
    with_cells = {files[n] for n in images_named[~empty]}
    no_cells = sorted({relative_key(files[n], finder.root) for n in images_named[empty] if files[n] not in with_cells})
    sizes = read_sizes(Path(r["path"]) for r in rows)
    return build_table(rows, SOURCE, path, sizes, {
        "image(s) listed without cells": no_cells,
        "image(s) next to listed ones that the CSV does not list": finder.unused(files.values()),
        "cell(s) of classes mapped to null in data.class_map": unmapped})


def _read(path: Path) -> pd.DataFrame:
    """All cells as text (labels like ``01`` stay as written); bad files stop with the fix."""
    if path.suffix.lower() in (".xlsx", ".xls", ".ods"):
        raise SourceError(f"{path}: a spreadsheet file; save it as CSV (File > Save as > CSV) and pass that")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    if not text.strip():
        raise SourceError(f"{path}: the file is empty; export the cells with a header row")
    try:
        sep = csvlib.Sniffer().sniff(text[:20000], delimiters=",;\t").delimiter
    except csvlib.Error:
        sep = ","
    try:
        table = pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as err:
        raise SourceError(f"{path}: not a readable CSV ({str(err).strip().splitlines()[0]}); check the "
                          "separator and quoting of that line") from None
    if table.empty:
        raise SourceError(f"{path}: a header but no rows; export the cells, one row per cell")
    table.columns = [str(c).strip() for c in table.columns]
    table.attrs["sep"] = sep
    return table


def _columns(table: pd.DataFrame, image_column: str | None, label_column: str | None,
             coord_columns: Sequence[str] | None, box_format: str, path: Path) -> tuple[str, str, str, list[str]]:
    """(image column, label column, point|corners|xywh, coordinate columns), logged so users see the choice."""
    image_col = _pick(table, image_column, IMAGE_COLUMNS, "image_column", "the image", path)
    label_col = _pick(table, label_column, LABEL_COLUMNS, "label_column", "the class label", path)
    kind, coord_cols = _coordinates(table, coord_columns, box_format, path)
    log.info("%s: %s: image column '%s', label column '%s', %s column(s) %s", SOURCE, path.name, image_col,
             label_col, "point" if kind == "point" else f"box ({kind})", ", ".join(coord_cols))
    return image_col, label_col, kind, coord_cols


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _find(table: pd.DataFrame, known: Sequence[str]) -> str | None:
    """The first column of ``known`` present (compared by ``_norm``), or None."""
    by_norm = {}
    for col in table.columns:
        by_norm.setdefault(_norm(col), col)
    return next((by_norm[k] for k in known if k in by_norm), None)


def _pick(table: pd.DataFrame, given: str | None, known: Sequence[str], option: str, what: str,
          path: Path) -> str:
    """The column ``given`` names, else the first of ``known`` present (compared by ``_norm``)."""
    by_norm = {}
    for col in table.columns:
        by_norm.setdefault(_norm(col), col)
    if given is not None:
        col = given if given in table.columns else by_norm.get(_norm(given))
        if col is None:
            raise SourceError(f"{path}: data.{option}='{given}' is not a column; columns: {list(table.columns)}")
        return col
    col = _find(table, known)
    if col is None:
        raise SourceError(f"{path}: no column holding {what} found among {list(table.columns)}; set "
                          f"data.{option}=<column name>")
    return col


def _coordinates(table: pd.DataFrame, given: Sequence[str] | None, box_format: str,
                 path: Path) -> tuple[str, list[str]]:
    """(``point`` | ``corners`` | ``xywh``, the coordinate columns in x, y[, x/w, y/h] order)."""
    by_norm = {}
    for col in table.columns:
        by_norm.setdefault(_norm(col), col)
    if given is not None:
        given = [str(g) for g in given]
        if len(given) not in (2, 4):
            raise SourceError(f"data.coord_columns={given}: give 2 names (point x, y) or 4 (box)")
        if box_format not in BOX_FORMATS:
            raise SourceError(f"data.box_format='{box_format}' is not one of {BOX_FORMATS}")
        cols = [g if g in table.columns else by_norm.get(_norm(g)) for g in given]
        missing = [g for g, c in zip(given, cols) if c is None]
        if missing:
            raise SourceError(f"{path}: data.coord_columns names {missing}, not columns of the file; columns: "
                              f"{list(table.columns)}")
        return ("point" if len(cols) == 2 else box_format), cols
    for kind, names in COORD_PATTERNS:
        if all(n in by_norm for n in names):
            return kind, [by_norm[n] for n in names]
    raise SourceError(f"{path}: no point (x, y / cx, cy) or box (x0, y0, x1, y1 / xmin.. / x, y, width, height) "
                      f"columns found among {list(table.columns)}; set data.coord_columns=[<x>, <y>] or "
                      "[<x0>, <y0>, <x1>, <y1>]")


def _position_mask(kind: str) -> np.ndarray:
    """Which coordinate columns are positions (shifted by ``one_based``) rather than sizes."""
    return np.array([1.0, 1.0] if kind == "point" else [1.0, 1.0, 1.0, 1.0] if kind == "corners"
                    else [1.0, 1.0, 0.0, 0.0])


def _numbers(table: pd.DataFrame, cols: list[str], path: Path) -> np.ndarray:
    """Coordinates as floats (empty = NaN); decimal commas are read in ``;``/tab files."""
    out = np.empty((len(table), len(cols)))
    for j, col in enumerate(cols):
        text = table[col].str.strip()
        if table.attrs.get("sep", ",") != ",":
            text = text.str.replace(",", ".", regex=False)
        values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & (text != "").to_numpy())
        if len(bad):
            shown = shorten([f"line {i + 2}: '{table[col].iat[i]}'" for i in bad], 3)
            raise SourceError(f"{path}: column '{col}' has {len(bad)} value(s) that are not numbers ({shown}); "
                              "fix them")
        out[:, j] = values.to_numpy(float)
    return out


def _check_rows(table: pd.DataFrame, coords: np.ndarray, labels: pd.Series, images: pd.Series,
                empty: np.ndarray, path: Path) -> None:
    """Rows without an image, with part of a position, or with a position but no label stop the import."""
    problems = {
        "have no image name": images == "",
        "have some coordinates empty": np.isnan(coords).any(axis=1) & ~np.isnan(coords).all(axis=1),
        "have no label": (labels == "") & ~empty,
        "have a label but no coordinates": (labels != "") & np.isnan(coords).all(axis=1),
    }
    for what, mask in problems.items():
        rows = np.flatnonzero(np.asarray(mask))
        if len(rows):
            raise SourceError(f"{path}: {len(rows)} row(s) {what} (line(s) {shorten([i + 2 for i in rows])}); "
                              "fix or delete them (a row with only an image lists an image without cells)")


def _resolve(names: Sequence[str], finder: ImageFinder, path: Path) -> dict[str, Path]:
    found, missing = {}, []
    for name in names:
        image = finder.find([name])
        if image is None:
            missing.append(name)
        else:
            found[name] = image
    if missing:
        raise SourceError(f"{SOURCE}: {len(missing)} image(s) named in {path.name} not found under {finder.root} "
                          f"({shorten(missing, 3)}), by path or by file name; set data.images to the folder "
                          "that holds them")
    return found


def _region(kind: str, c: np.ndarray, point_size: float | None) -> dict[str, float]:
    """The half-open box of one row; a point at pixel index (cx, cy) gets the square centred on that pixel."""
    if kind == "point":
        half = float(point_size) / 2.0
        return {"x0": c[0] + 0.5 - half, "y0": c[1] + 0.5 - half, "x1": c[0] + 0.5 + half,
                "y1": c[1] + 0.5 + half, "cx": c[0], "cy": c[1]}
    if kind == "xywh":
        return {"x0": c[0], "y0": c[1], "x1": c[0] + c[2], "y1": c[1] + c[3]}
    return {"x0": c[0], "y0": c[1], "x1": c[2], "y1": c[3]}


_RESERVED = set(LEADING_COLUMNS) | {"source_file", "source_label", "image_width", "image_height", "cx", "cy"}


def _safe(column: str) -> str:
    """Metadata column name that cannot overwrite a table column (``path`` -> ``csv_path``)."""
    return f"csv_{column}" if column in _RESERVED else column
