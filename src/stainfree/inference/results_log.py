"""predict's append-only results log: every finished image is on disk at once, and a killed run resumes.

A plate of thousands of frames takes hours; a kill, a crash or a full disk must not cost the images
already done. Each image's patch rows and then its image row are appended (flushed and fsynced) to
``patches.partial.csv`` / ``images.partial.csv``, each failure to ``failed.csv``; ``predict_run.json``
records what made the folder (checkpoint hash and the settings that change results). An image is
*done* once its image row is in the log. A second run with ``resume=true`` into the same folder
checks that record, drops what a kill left half-written and skips the done images, so the final
tables (built from the log, in canonical order) equal those of an uninterrupted run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from stainfree.utils.atomic import atomic_path, atomic_write_text
from stainfree.utils.errors import UserError

STATE_FILE = "predict_run.json"
IMAGES_LOG = "images.partial.csv"
PATCHES_LOG = "patches.partial.csv"
FAILED_LOG = "failed.csv"
FAILED_COLUMNS = ("image", "reason")
STATE_VERSION = 1


class ResumeError(UserError):
    """The output folder cannot be (re)used as asked; the message says which option to change."""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (the checkpoint's identity survives a move or a rename, not a retrain)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ResultsLog:
    """The log of one predict run in ``out_dir``; use as a context manager (closes the files).

    ``identity`` holds what changes the results (checkpoint hash, input folder, classes, preprocess,
    precision, device kind, overlays): a resumed run must match it exactly.
    """

    def __init__(self, out_dir: str | os.PathLike, identity: dict[str, Any], resume: bool) -> None:
        self.out_dir = Path(out_dir)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        self.resumed = False
        state = self.out_dir / STATE_FILE
        if state.is_file():
            if not resume:
                raise ResumeError(f"output_dir={self.out_dir} already holds a predict run ({STATE_FILE}); pass "
                                  "resume=true to continue it, or another output_dir= for a new run")
            self._check_identity(state)
            self.resumed = True
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            clash = [n for n in (IMAGES_LOG, PATCHES_LOG, FAILED_LOG) if (self.out_dir / n).exists()]
            if clash:
                raise ResumeError(f"output_dir={self.out_dir} already has {', '.join(clash)} but no {STATE_FILE} "
                                  "(not a run this version can continue); pass another output_dir=")
            atomic_write_text(state, json.dumps({"version": STATE_VERSION, "identity": self.identity},
                                                indent=2, sort_keys=True) + "\n")
        self.done: set[str] = self._repair() if self.resumed else set()
        self._files: dict[str, io.TextIOBase] = {}

    # ------------------------------------------------------------------ resume
    def _check_identity(self, state: Path) -> None:
        try:
            stored = json.loads(state.read_text())["identity"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ResumeError(f"{state}: unreadable ({exc}); this folder cannot be resumed, "
                              "pass another output_dir=") from None
        differ = sorted(k for k in set(stored) | set(self.identity) if stored.get(k) != self.identity.get(k))
        if differ:
            shown = "; ".join(f"{k}: {_short(stored.get(k))} then, {_short(self.identity.get(k))} now" for k in differ)
            raise ResumeError(f"resume=true: {self.out_dir} was made with other settings ({shown}); resume with the "
                              "same checkpoint and settings, or pass another output_dir= for a new run")

    def _repair(self) -> set[str]:
        """Done images (those with an image row); drop a half-written last line and patch rows of
        images a kill interrupted, so re-processing them cannot duplicate rows."""
        images = self.out_dir / IMAGES_LOG
        _drop_partial_line(images)
        _drop_partial_line(self.out_dir / FAILED_LOG)
        done = {row[0] for row in _data_rows(images)}
        patches = self.out_dir / PATCHES_LOG
        _drop_partial_line(patches)
        if patches.is_file():
            lines = patches.read_text().splitlines(keepends=True)
            keep = lines[:1] + [ln for ln in lines[1:] if _first_field(ln) in done]
            if len(keep) != len(lines):
                with atomic_path(patches) as tmp:
                    tmp.write_text("".join(keep))
        return done

    # ------------------------------------------------------------------ appending
    def __enter__(self) -> "ResultsLog":
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def append_image(self, row: dict[str, Any], patches: pd.DataFrame) -> None:
        """Log one finished image: its patch rows first, then its image row (which marks it done)."""
        self._append(PATCHES_LOG, patches)
        self._append(IMAGES_LOG, pd.DataFrame([row]))
        self.done.add(str(row["image"]))

    def append_failure(self, image: str, reason: str) -> None:
        self._append(FAILED_LOG, pd.DataFrame([{"image": image, "reason": reason}], columns=list(FAILED_COLUMNS)))

    def _append(self, name: str, table: pd.DataFrame) -> None:
        """Append rows (the header when the file is new; columns must match it), flushed and fsynced."""
        path = self.out_dir / name
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = open(path, "a", newline="")  # noqa: SIM115 - closed in __exit__
            if f.tell() == 0:
                f.write(table.iloc[:0].to_csv(index=False))
            else:
                header = next(_data_rows(path, header=True), [])
                if header != [str(c) for c in table.columns]:
                    raise ResumeError(f"{path}: its columns {header} differ from this version's "
                                      f"{list(table.columns)}; pass another output_dir= for a new run")
        f.write(table.to_csv(index=False, header=False))
        f.flush()
        os.fsync(f.fileno())

    # ------------------------------------------------------------------ the complete tables
    def tables(self) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame]:
        """(images, patches, failures) of the whole run in canonical order (sorted by image, patches
        in layout order); failures keep the last reason of images that are still not done."""
        self.__exit__()
        images = _read_sorted(self.out_dir / IMAGES_LOG)
        patches = _read_sorted(self.out_dir / PATCHES_LOG)
        failed = _read_sorted(self.out_dir / FAILED_LOG)
        if failed is None:
            failed = pd.DataFrame(columns=list(FAILED_COLUMNS))
        failed = failed[~failed["image"].isin(self.done)].drop_duplicates("image", keep="last")
        return images, patches, failed.reset_index(drop=True)

    def write_failures(self, failed: pd.DataFrame) -> str | None:
        """Replace the failure log with the final list (the log is this run's own file); none -> no file."""
        path = self.out_dir / FAILED_LOG
        if failed.empty:
            path.unlink(missing_ok=True)
            return None
        with atomic_path(path) as tmp:
            failed.to_csv(tmp, index=False)
        return str(path)


def _read_sorted(path: Path) -> pd.DataFrame | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    table = pd.read_csv(path, dtype={"image": str}, keep_default_na=True)
    return table.sort_values("image", kind="mergesort").reset_index(drop=True)


def _drop_partial_line(path: Path) -> None:
    """A kill during a write can leave a last line without its newline: cut it off."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _data_rows(path: Path, header: bool = False) -> Iterable[list[str]]:
    if not path.is_file():
        return iter(())
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return iter(rows if header else rows[1:])


def _first_field(line: str) -> str | None:
    row = next(csv.reader([line]), None)
    return row[0] if row else None


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
