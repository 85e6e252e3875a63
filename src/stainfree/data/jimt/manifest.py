"""The frame manifest: which BF/PI file pairs exist, validated before any heavy work starts."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from stainfree.errors import UserError

REQUIRED_COLUMNS = ("frame_id", "dataset", "bf_path", "pi_path")


class ManifestError(UserError):
    """The manifest is missing or malformed; the message names the file and the fix."""


def _how_to_make() -> str:
    return ("make one with `python -m stainfree.data.jimt.synthetic --out <folder>` (synthetic data) "
            f"or write a CSV with columns {','.join(REQUIRED_COLUMNS)} "
            "(paths relative to the manifest's folder)")


def load_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate ``manifest.csv``; returns it with absolute ``bf_abs``/``pi_abs`` columns.

    Frame order is the file order, so frame indices in the cache are stable for a given manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}; {_how_to_make()}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:  # noqa: BLE001 - pandas raises many types for a bad CSV
        raise ManifestError(f"{path}: cannot be parsed as CSV ({err}); {_how_to_make()}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; {_how_to_make()}")
    if df.empty:
        raise ManifestError(f"{path}: lists no frames; {_how_to_make()}")
    blank = df[list(REQUIRED_COLUMNS)].eq("").any(axis=1)
    if blank.any():
        rows = (df.index[blank] + 2).tolist()[:5]
        raise ManifestError(f"{path}: empty cells on line(s) {rows}; fill in every column")
    dup = df["frame_id"][df["frame_id"].duplicated()].unique().tolist()
    if dup:
        raise ManifestError(f"{path}: duplicated frame_id(s) {dup[:5]}; each frame needs a unique id")
    root = path.parent
    df = df.copy()
    df["bf_abs"] = [str((root / p).resolve()) for p in df["bf_path"]]
    df["pi_abs"] = [str((root / p).resolve()) for p in df["pi_path"]]
    return df


def manifest_digest(path: str | os.PathLike) -> str:
    """SHA-256 of the manifest bytes: part of the cache key, so an edited manifest means a new cache."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
