"""What every annotation importer shares: its error type, the table it returns, the box checks, the report.

Importers gather one dict per labelled region (``path``, ``label``, ``group``, box, metadata) and
hand them to ``build_table``, which numbers them (``sample_id``), checks every box against its
image's size and logs one summary line. Anything an importer leaves out is counted in that line.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from stainfree.data.imageio import ImageReadError, image_size
from stainfree.data.samples import SampleTableError

log = logging.getLogger(__name__)

BOX_COLUMNS = ["x0", "y0", "x1", "y1"]
# the sample-table columns (CONTRACT section 2) in the order importers write them
LEADING_COLUMNS = ["path", "label", "group", *BOX_COLUMNS, "region_kind", "sample_id"]
REGION_KINDS = ("image", "box", "point")


class SourceError(SampleTableError):
    """An annotation source cannot be read as it is; the message names the file and the fix."""


def shorten(names: Iterable[Any], limit: int = 5) -> str:
    """``a, b, c (+7 more)``: long lists in one-line messages."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def relative_key(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with '/' separators, or the absolute path when it lies elsewhere."""
    try:
        return Path(os.path.relpath(path, root)).as_posix() if path.is_relative_to(root) else path.as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


def absolute(path: str | os.PathLike) -> Path:
    """Absolute, normalised path (symlinks kept, so the user's own names stay in every output)."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def require_folder(value: Any, option: str, what: str) -> Path:
    """The folder an option names, or a one-line error saying how to set it."""
    return _required_path(value, option, what, "folder", Path.is_dir)


def require_file(value: Any, option: str, what: str) -> Path:
    """The file an option names, or a one-line error saying how to set it."""
    return _required_path(value, option, what, "file", Path.is_file)


def _required_path(value: Any, option: str, what: str, kind: str, exists: Callable[[Path], bool]) -> Path:
    if value is None or str(value).strip() == "":
        raise SourceError(f"data.{option} is not set; pass data.{option}=<{what}>")
    path = absolute(value)
    if not exists(path):
        raise SourceError(f"data.{option}={value}: {kind} not found; point it at the {what}")
    return path


def read_sizes(paths: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """``{path: (height, width)}`` from image headers; an unreadable image stops with its name."""
    sizes = {}
    for path in paths:
        if path not in sizes:
            try:
                sizes[path] = image_size(path)
            except ImageReadError as err:
                raise SourceError(str(err)) from None
    return sizes


def build_table(rows: Sequence[dict[str, Any]], source: str, where: Path,
                sizes: dict[Path, tuple[int, int]], left_out: dict[str, Sequence[str]]) -> pd.DataFrame:
    """The sample table from per-region ``rows`` (each with ``path``, ``key``, ``label``, ...).

    ``key`` (the image's path relative to its root) names the samples ``<key>#<k>``, k counting the
    regions of that image in annotation order. ``left_out`` maps a reason to the names it applies
    to; each non-empty reason is logged as a warning with its count, never dropped silently.
    """
    if not rows:
        reasons = "; ".join(f"{len(v)} {k} ({shorten(v, 3)})" for k, v in left_out.items() if v)
        raise SourceError(f"{source}: {where} gives no labelled sample" + (f": {reasons}" if reasons else "")
                          + "; check the annotations and data.class_map")
    table = pd.DataFrame(list(rows))
    for col in BOX_COLUMNS:
        table[col] = table[col].astype("float64") if col in table else np.nan
    table["path"] = table["path"].map(str)
    table["image_height"] = [sizes[Path(p)][0] for p in table["path"]]
    table["image_width"] = [sizes[Path(p)][1] for p in table["path"]]
    table["sample_id"] = table["key"] + "#" + table.groupby("key", sort=False).cumcount().astype(str)
    table = table.drop(columns="key")
    check_boxes(table, source)
    table = table[LEADING_COLUMNS + [c for c in table.columns if c not in LEADING_COLUMNS]].reset_index(drop=True)
    report(table, source, where, left_out)
    return table


def check_boxes(table: pd.DataFrame, source: str) -> None:
    """Stop on empty boxes and boxes entirely outside their image; log those partly outside (kept)."""
    box = table[BOX_COLUMNS].to_numpy(float)
    has_box = ~np.isnan(box).any(axis=1)
    where = table.get("source_file", table["path"])
    bad = has_box & ((box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1]))
    if bad.any():
        _box_error(table, where, bad, source, "have x1 <= x0 or y1 <= y0 (empty boxes)",
                   "fix or delete those boxes")
    w, h = table["image_width"].to_numpy(float), table["image_height"].to_numpy(float)
    outside = has_box & ((box[:, 2] <= 0) | (box[:, 3] <= 0) | (box[:, 0] >= w) | (box[:, 1] >= h))
    if outside.any():
        _box_error(table, where, outside, source, "lie entirely outside their image",
                   "the annotation probably belongs to another image or uses other units; fix it")
    partly = has_box & ~outside & ((box[:, 0] < 0) | (box[:, 1] < 0) | (box[:, 2] > w) | (box[:, 3] > h))
    if partly.any():
        log.info("%s: %d region(s) reach past the image border; kept (the part outside is padded)",
                 source, int(partly.sum()))


def _box_error(table: pd.DataFrame, where: pd.Series, mask: np.ndarray, source: str, what: str,
               fix: str) -> None:
    idx = np.flatnonzero(mask)
    examples = [f"{table['sample_id'].iat[i]} [{', '.join(f'{v:g}' for v in table[BOX_COLUMNS].iloc[i])}] "
                f"in {where.iat[i]}" for i in idx[:3]]
    raise SourceError(f"{source}: {len(idx)} box(es) {what}: {shorten(examples, 3)}; {fix}")


def report(table: pd.DataFrame, source: str, where: Path, left_out: dict[str, Sequence[str]]) -> None:
    """One summary line (samples per class, images) plus one warning per kind of left-out input.

    The counts are also kept in ``table.attrs["import_report"]`` for callers and tests.
    """
    per_class = Counter(table["label"])
    classes = ", ".join(f"{name} {n}" for name, n in sorted(per_class.items()))
    log.info("%s: %d sample(s) from %d image(s) in %s (%s)", source, len(table), table["path"].nunique(),
             where, classes)
    for reason, names in left_out.items():
        if names:
            log.warning("%s: left out %d %s: %s", source, len(names), reason, shorten(names))
    table.attrs["import_report"] = {
        "samples": len(table), "images": int(table["path"].nunique()), "per_class": dict(per_class),
        "left_out": {reason: len(names) for reason, names in left_out.items()},
    }
