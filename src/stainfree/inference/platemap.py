"""Plate map reader: links each raw image to its well, compound, dose and control role.

Screens are analysed per well, not per image, so the plate map is the bridge between the
per-image predictions and the biology (dose-response, assay quality).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from stainfree.utils.errors import UserError

REQUIRED_COLUMNS = ("image", "well", "compound")
OPTIONAL_COLUMNS = ("dose", "control")
CONTROL_VALUES = ("neg", "pos")


class PlateMapError(UserError):
    """The plate map CSV is malformed; the message names the file and the fix."""


def read_plate_map(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a plate map CSV (columns image, well, compound[, dose][, control]).

    Returns a frame with all five columns: ``dose`` as float (NaN when absent), ``control`` as
    ``"neg"``/``"pos"``/``""``. Column names are matched case-insensitively.
    """
    path = Path(path)
    if not path.is_file():
        raise PlateMapError(f"{path}: plate map not found; pass plate_map=<csv with columns "
                            f"{', '.join(REQUIRED_COLUMNS)}[, dose][, control]>")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for one user problem
        raise PlateMapError(f"{path}: could not be parsed as CSV ({exc}); save it as comma-separated text") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise PlateMapError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(table.columns) or 'none'}); "
            f"add a header row with {', '.join(REQUIRED_COLUMNS)}[, dose][, control]"
        )
    if table.empty:
        raise PlateMapError(f"{path}: the plate map has no rows; add one row per image")
    for col in REQUIRED_COLUMNS:
        table[col] = table[col].str.strip()
        blank = table.index[table[col] == ""].tolist()
        if blank:
            raise PlateMapError(f"{path}: empty '{col}' in data row(s) {[i + 1 for i in blank[:5]]}; fill it in")
    dup = table["image"][table["image"].duplicated()].unique().tolist()
    if dup:
        raise PlateMapError(f"{path}: image(s) listed twice: {dup[:5]}; each image belongs to one well")
    table["dose"] = _parse_doses(path, table["dose"] if "dose" in table.columns else None, len(table))
    table["control"] = _parse_controls(path, table["control"] if "control" in table.columns else None, len(table))
    conflicting = table.groupby("well")[["compound", "control"]].nunique()
    conflicting = conflicting[(conflicting > 1).any(axis=1)].index.tolist()
    if conflicting:
        raise PlateMapError(
            f"{path}: well(s) {conflicting[:5]} have rows with different compound/control; one well = one condition"
        )
    dose_conflict = table.groupby("well")["dose"].apply(lambda d: d.dropna().nunique() > 1)
    if dose_conflict.any():
        raise PlateMapError(
            f"{path}: well(s) {dose_conflict[dose_conflict].index.tolist()[:5]} have several doses; one well = one dose"
        )
    return table[["image", "well", "compound", "dose", "control"]].reset_index(drop=True)


def _parse_doses(path: Path, column: pd.Series | None, n: int) -> list[float]:
    """Doses as floats; blanks become NaN (e.g. untreated controls)."""
    if column is None:
        return [math.nan] * n
    doses: list[float] = []
    for i, raw in enumerate(column.str.strip()):
        if raw == "":
            doses.append(math.nan)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise PlateMapError(f"{path}: dose '{raw}' in data row {i + 1} is not a number; write e.g. 0.5") from None
        if value < 0 or math.isinf(value):
            raise PlateMapError(f"{path}: dose {raw} in data row {i + 1} must be a finite number >= 0")
        doses.append(value)
    return doses


def _parse_controls(path: Path, column: pd.Series | None, n: int) -> list[str]:
    """Control roles normalised to 'neg'/'pos'/'' so Z' can find them."""
    if column is None:
        return [""] * n
    values = column.str.strip().str.lower()
    bad = sorted(set(values) - {"", *CONTROL_VALUES})
    if bad:
        raise PlateMapError(f"{path}: control value(s) {bad} not understood; use 'neg', 'pos' or leave blank")
    return values.tolist()


def match_images(plate: pd.DataFrame, images: list[str], plate_path: str | os.PathLike = "plate map") -> pd.DataFrame:
    """Attach each predicted image (relative path) to its plate-map row.

    Plate maps are written by hand, so an entry may name the relative path, the file name or the
    stem; tried in that order. A file name or stem shared by images in two sub-folders is
    ambiguous and refused (one line naming both; write the relative path), never matched to the
    first. Returns the plate rows with a new column ``image_key`` (the predicted image's name as
    used in images.csv); unmatched plate rows are dropped and listed in ``attrs['unmatched']`` so
    the caller can report them.
    """
    lookup: dict[str, list[str]] = {}
    for key in images:
        p = Path(key)
        for alias in dict.fromkeys((p.as_posix(), p.name, p.stem)):
            lookup.setdefault(alias, []).append(key)
    keys = [_lookup_entry(str(entry), lookup, plate_path) for entry in plate["image"]]
    out = plate.assign(image_key=keys)
    unmatched = out.loc[out["image_key"].isna(), "image"].tolist()
    out = out.dropna(subset=["image_key"]).reset_index(drop=True)
    if out.empty:
        raise PlateMapError(
            f"{plate_path}: none of its {len(plate)} image entries match the predicted images "
            f"(e.g. '{plate['image'].iloc[0]}' vs '{images[0] if images else '-'}'); use file names as in the input folder"
        )
    out.attrs["unmatched"] = unmatched
    return out


def _lookup_entry(entry: str, lookup: dict[str, list[str]], plate_path: str | os.PathLike) -> str | None:
    """The one image a plate-map entry names (exact relative path first), None if none."""
    p = Path(entry)
    exact = lookup.get(p.as_posix(), [])
    if p.as_posix() in exact:
        return p.as_posix()
    for alias in (p.as_posix(), p.name, p.stem):
        found = sorted(set(lookup.get(alias, [])))
        if len(found) > 1:
            raise PlateMapError(f"{plate_path}: entry '{entry}' matches {len(found)} images ({', '.join(found[:4])}"
                                f"{' ...' if len(found) > 4 else ''}); write the path relative to the input folder, "
                                f"e.g. {found[0]}")
        if found:
            return found[0]
    return None
