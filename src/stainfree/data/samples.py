"""The sample table: one row per labelled sample, the one way any source enters stainfree.

Required: ``path`` (absolute source image the input is cut from), ``label`` (class name as it should
appear in every output), ``group`` (the unit never split: field, frame, well, duplicate cluster;
default the path relative to its root). Optional: ``split`` (train|val|test|'' = let the splitter
decide), ``x0, y0, x1, y1`` (source pixels, half-open, 0-based; NaN = whole image), ``region_kind``
(image|box|point|window|tile), ``sample_id`` (unique; default ``<relpath>#<k>``), ``channel`` (page or
channel index), plus any metadata columns, carried to ``split_table()`` and the predictions CSVs.
Importers may put preprocessing hints in ``table.attrs[HINTS]`` (``layout``, ``empty_filter``,
``pi_thresholds``); the DataModule turns them into the PreprocessSpec.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from stainfree.utils.errors import UserError

REQUIRED = ("path", "label", "group")
BOX = ("x0", "y0", "x1", "y1")
OPTIONAL = ("split", *BOX, "region_kind", "sample_id", "channel")
REGION_KINDS = ("image", "box", "point", "window", "tile")
SPLITS = ("train", "val", "test")
HINTS = "stainfree_hints"


class SampleTableError(UserError):
    """The sample table (or the files it lists) cannot be used; the message names the source and the fix."""


def _some(values: list, n: int = 5) -> str:
    more = f" (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(str(v) for v in values[:n]) + more


def _root_of(paths: pd.Series, root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root).resolve()
    folders = {str(Path(p).parent) for p in paths}
    return Path(os.path.commonpath(sorted(folders))) if folders else Path("/")


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def validate_samples(table: pd.DataFrame, source: str, root: str | os.PathLike | None = None,
                     check_files: bool = True) -> pd.DataFrame:
    """A checked, normalised copy of ``table``; SampleTableError (one line naming ``source``) otherwise.

    Relative paths are resolved against ``root``; a missing ``group`` is the path relative to
    ``root`` (or the images' common folder), a missing ``sample_id`` is ``<relpath>#<k>``.
    """
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise SampleTableError(f"{source}: gives no samples; check that it lists labelled images")
    t = table.copy()
    hints = dict(table.attrs.get(HINTS) or {})
    missing = [c for c in ("path", "label") if c not in t.columns]
    if missing:
        raise SampleTableError(f"{source}: missing column(s) {missing}; a sample table needs at least path and label")
    base = Path(root).resolve() if root is not None else None
    given = t["path"].astype(str)
    resolved = {p: str((Path(p) if Path(p).is_absolute() or base is None else base / p).resolve())
                for p in pd.unique(given)}
    t["path"] = given.map(resolved)
    rel_root = _root_of(pd.Series(list(resolved.values())), root)
    rel_of = {p: _relative(p, rel_root) for p in resolved.values()}
    rel = t["path"].map(rel_of).tolist()
    t["label"] = t["label"].astype("string").str.strip().fillna("")
    empty = t.index[t["label"] == ""].tolist()
    if empty:
        raise SampleTableError(f"{source}: {len(empty)} row(s) have no label (rows {_some(empty)}); "
                               "give every sample a class name or remove those rows")
    t["label"] = t["label"].astype(str)
    if "group" not in t.columns:
        t["group"] = rel
    t["group"] = t["group"].astype("string").fillna("").astype(str)
    blank = t["group"] == ""
    t.loc[blank, "group"] = np.asarray(rel, dtype=object)[blank.to_numpy()]
    _normalise_split(t, source)
    _normalise_boxes(t, source)
    if "sample_id" not in t.columns:
        k = pd.Series(rel).groupby(rel).cumcount().to_numpy()
        t["sample_id"] = [f"{r}#{i}" for r, i in zip(rel, k)]
    t["sample_id"] = t["sample_id"].astype(str)
    dup = t["sample_id"][t["sample_id"].duplicated()].unique().tolist()
    if dup:
        raise SampleTableError(f"{source}: duplicated sample_id(s) {_some(dup)}; each sample needs a unique id")
    if "channel" in t.columns:
        ch = pd.to_numeric(t["channel"].astype("object").where(t["channel"].notna(), np.nan), errors="coerce")
        given = ch.dropna()
        if ((given < 0) | (given != given.round())).any() or ch.isna().sum() > t["channel"].isna().sum():
            raise SampleTableError(f"{source}: channel must be a page/channel index >= 0 or empty")
        t["channel"] = ch.astype("Int64")
    if check_files:
        gone = [p for p in pd.unique(t["path"]) if not Path(p).is_file()]
        if gone:
            raise SampleTableError(f"{source}: {len(gone)} image file(s) do not exist: {_some(gone)}; "
                                   "fix the paths (relative paths are read from the table's folder) or remove those rows")
    first = [c for c in (*REQUIRED, *OPTIONAL) if c in t.columns]
    t = t[first + [c for c in t.columns if c not in first]].reset_index(drop=True)
    t.attrs[HINTS] = hints
    return t


def _normalise_split(t: pd.DataFrame, source: str) -> None:
    if "split" not in t.columns:
        t["split"] = ""
    t["split"] = t["split"].astype("string").fillna("").str.strip().str.lower().astype(str)
    bad = sorted(set(t["split"]) - {"", *SPLITS})
    if bad:
        raise SampleTableError(f"{source}: split value(s) {bad} are not one of {list(SPLITS)} (or empty)")


def _normalise_boxes(t: pd.DataFrame, source: str) -> None:
    present = [c for c in BOX if c in t.columns]
    if present and len(present) < 4:
        raise SampleTableError(f"{source}: has box column(s) {present} but not all of {list(BOX)}")
    for c in BOX:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float) if c in t.columns else np.nan
    b = t[list(BOX)].to_numpy()
    nan = np.isnan(b)
    partial = nan.any(axis=1) & ~nan.all(axis=1)
    if partial.any():
        raise SampleTableError(f"{source}: rows {_some(t.index[partial].tolist())} have some box coordinates "
                               "empty; give all four of x0, y0, x1, y1 or none (whole image)")
    boxed = ~nan.any(axis=1)
    flat = boxed & ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))
    if flat.any():
        raise SampleTableError(f"{source}: rows {_some(t.index[flat].tolist())} have boxes with x1 <= x0 or "
                               "y1 <= y0; boxes are [x0, x1) x [y0, y1) in pixels")
    if {"image_width", "image_height"} <= set(t.columns):
        w, h = t["image_width"].to_numpy(float), t["image_height"].to_numpy(float)
        outside = boxed & ((b[:, 0] >= w) | (b[:, 1] >= h) | (b[:, 2] <= 0) | (b[:, 3] <= 0))
        if outside.any():
            raise SampleTableError(f"{source}: rows {_some(t.index[outside].tolist())} have boxes entirely "
                                   "outside their image; check the coordinates (0-based pixels)")
    if "region_kind" not in t.columns:
        t["region_kind"] = np.where(boxed, "box", "image")
    t["region_kind"] = t["region_kind"].astype(str)
    bad = sorted(set(t["region_kind"]) - set(REGION_KINDS))
    if bad:
        raise SampleTableError(f"{source}: region_kind value(s) {bad} are not one of {list(REGION_KINDS)}")
