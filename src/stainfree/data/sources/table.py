"""``table``: a ready CSV in the sample-table schema (see ``stainfree.data.samples``)."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from stainfree.data.samples import SampleTableError, validate_samples


def read_table(table: str | os.PathLike, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``table`` (CSV: path, label[, group, split, x0, y0, x1, y1, ...]); relative paths are
    read from ``root`` (default: the CSV's folder)."""
    path = Path(table)
    if not path.is_file():
        raise SampleTableError(f"data.table={path}: no such file; point it at a CSV with columns path,label[,group,...]")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "label": str, "group": str, "split": str, "sample_id": str},
                            keep_default_na=False, na_values={c: [""] for c in ("x0", "y0", "x1", "y1", "channel")})
    except Exception as err:  # noqa: BLE001 - pandas raises many types for a bad CSV
        raise SampleTableError(f"data.table={path}: cannot be read as CSV ({err})") from err
    return validate_samples(frame, source=f"data.table={path}", root=root if root is not None else path.parent)
