"""The image catalogue: one row per whole field with the metadata its name carries, and the task's classes.

Files that match no label are never used silently nor dropped silently: they are counted and
either stop the run (``on_unlabelled='error'``) or are left out with a warning listing them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from stainfree.data.celldeath.naming import NameScheme
from stainfree.data.imageio import list_images
from stainfree.utils.errors import MissingPathError, UserError

log = logging.getLogger(__name__)

TASKS = ("cpt_vs_dmso", "all_vs_all")
BINARY_CLASSES = ["control", "celldeath"]
CATALOG_COLUMNS = ["path", "image_id", "label", "treatment_token", "cell_line", "time", "replicate"]


class UnlabelledImagesError(UserError):
    """Some files match no label token; the message lists them and the fix."""


def _describe(names: Sequence[str], what: str, root: Path, fix: str) -> str:
    shown = ", ".join(names[:5])
    more = f" (+{len(names) - 5} more)" if len(names) > 5 else ""
    return f"{len(names)} file(s) under {root} {what}: {shown}{more}; {fix}"


def scan_folder(root: str | os.PathLike, scheme: NameScheme, on_unlabelled: str = "error") -> pd.DataFrame:
    """Parse every image under ``root``; returns the catalogue sorted by ``image_id`` (path relative to root)."""
    if on_unlabelled not in ("error", "warn"):
        raise UserError(f"data.on_unlabelled='{on_unlabelled}' is not supported; use 'error' or 'warn'")
    root = Path(root)
    if not root.is_dir():
        raise MissingPathError(f"data.root={root}: folder not found; point data.root at a folder of TLM images")
    paths = list_images(root)
    if not paths:
        raise MissingPathError(f"data.root={root}: no PNG/JPG/TIFF images found; check the folder")
    rows, unlabelled = [], []
    for path in paths:
        parsed = scheme.parse(path.name)
        if parsed.label is None:
            unlabelled.append(str(path.relative_to(root)))
            continue
        rows.append({"path": str(path), "image_id": str(path.relative_to(root)), "label": parsed.label,
                     "treatment_token": parsed.treatment_token, "cell_line": parsed.cell_line,
                     "time": parsed.time, "replicate": parsed.replicate})
    if unlabelled:
        fix = "rename them or add their token to data.naming.labels (or set data.on_unlabelled=warn to leave them out)"
        msg = _describe(unlabelled, "match no label token", root, fix)
        if on_unlabelled == "error":
            raise UnlabelledImagesError(msg)
        log.warning("Leaving out " + msg)
    if not rows:
        raise UnlabelledImagesError(f"data.root={root}: none of {len(paths)} images matches a label token; "
                                    "check data.naming.labels")
    table = pd.DataFrame(rows, columns=CATALOG_COLUMNS)
    table["time"] = table["time"].astype("Int64")
    table.attrs["n_unlabelled"] = len(unlabelled)
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)


def select_time_points(table: pd.DataFrame, time_points: Iterable[int] | None) -> pd.DataFrame:
    """Keep the requested time points (None = all); images without a time token are reported, not guessed."""
    if time_points is None:
        return table
    wanted = {int(t) for t in time_points}
    missing = table[table["time"].isna()]
    if len(missing):
        raise UserError(_describe(list(missing["image_id"]), "have no time token (e.g. `1h`)", Path("data.root"),
                                   "rename them, fix data.naming.time_regex, or set data.time_points=null"))
    kept = table[table["time"].isin(wanted)].reset_index(drop=True)
    if kept.empty:
        found = sorted(int(t) for t in table["time"].unique())
        raise UserError(f"data.time_points={sorted(wanted)} selects no image; the folder has time points {found}")
    kept.attrs["n_other_time_points"] = len(table) - len(kept)
    return kept


def class_names_for(table: pd.DataFrame, task: str, cell_lines: Sequence[str] | None = None) -> list[str]:
    """Fixed, sorted class order: binary ``[control, celldeath]`` or ``<line>_<treatment>`` for all_vs_all."""
    if task == "cpt_vs_dmso":
        return list(BINARY_CLASSES)
    if task == "all_vs_all":
        if table["cell_line"].isna().any():
            bad = list(table.loc[table["cell_line"].isna(), "image_id"])
            raise UserError(_describe(bad, "have no cell-line token", Path("data.root"),
                                       "add it to data.naming.cell_lines or set data.naming.default_cell_line"))
        lines = sorted(cell_lines) if cell_lines else sorted(table["cell_line"].unique())
        return [f"{line}_{label}" for line in lines for label in sorted(BINARY_CLASSES)]
    raise UserError(f"data.task='{task}' is not supported; use one of {TASKS}")


def targets_for(table: pd.DataFrame, task: str, class_names: Sequence[str]) -> pd.Series:
    """Class index of every row; rows of a class outside ``class_names`` are an error naming them."""
    keys = table["label"] if task == "cpt_vs_dmso" else table["cell_line"].astype(str) + "_" + table["label"]
    lookup = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(keys) - set(lookup))
    if unknown:
        raise UserError(f"classes {unknown} are in the data but not in data.cell_lines ({list(class_names)}); "
                         "add those lines or remove the images")
    return keys.map(lookup).astype("int64")
