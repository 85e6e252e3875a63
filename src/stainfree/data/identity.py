"""Which files a cache was built from, so a cache is never reused for other data.

Every cache folder is named ``<prefix>-<what>-<data>``: ``what`` hashes the settings and the list
of resolved source paths, ``data`` each file's size and mtime_ns. ``identity.json`` inside records
them, plus a content hash per file when ``verify`` asks: ``sample`` = three 64 KiB blocks (start,
middle, end), ``all`` = the whole file. On reuse the identities are read again: a missing file
stops the run naming it; a changed file (size/mtime, or content under ``verify``) is named in a
one-line notice, the cache is rebuilt and the stale one removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from stainfree.utils.errors import UserError

VERIFY_MODES = ("none", "sample", "all")
IDENTITY_FILE = "identity.json"
_BLOCK = 64 * 1024


class MissingSourceError(UserError):
    """A file the data lists (or a cache was built from) is gone; the message names it."""


def check_verify(verify: str) -> str:
    if verify not in VERIFY_MODES:
        raise UserError(f"data.verify='{verify}' is not one of {VERIFY_MODES}")
    return verify


def digest(payload: Any, length: int = 16) -> str:
    """Short SHA-256 of a JSON-able payload (sorted keys: the same settings always give the same key)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _content_hash(path: Path, size: int, verify: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        if verify == "all":
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            for offset in sorted({0, max(0, size // 2 - _BLOCK // 2), max(0, size - _BLOCK)}):
                f.seek(offset)
                h.update(f.read(_BLOCK))
    return h.hexdigest()


def file_identity(path: str | os.PathLike, verify: str = "none", listed_in: str = "the data") -> dict[str, Any]:
    """{path (resolved), size, mtime_ns[, sample|all: content hash]} of one file; MissingSourceError if gone."""
    resolved = Path(path).resolve()
    try:
        st = resolved.stat()
    except FileNotFoundError:
        raise MissingSourceError(f"{resolved}: no such file, but {listed_in} lists it; restore the file or "
                                 "remove it from the list") from None
    record: dict[str, Any] = {"path": str(resolved), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
    if verify != "none":
        record[verify] = _content_hash(resolved, int(st.st_size), verify)
    return record


def identities(paths: Sequence[str | os.PathLike], verify: str = "none", listed_in: str = "the data",
               workers: int | None = None) -> list[dict[str, Any]]:
    """``file_identity`` of every path (threads: hashing is I/O bound); the first missing file stops it."""
    check_verify(verify)
    if verify == "none" or len(paths) < 8:
        return [file_identity(p, verify, listed_in) for p in paths]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda p: file_identity(p, verify, listed_in), paths))


def _differs(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Size/mtime differ, or a content hash both records carry differs."""
    if old is None:
        return False
    return any(old.get(k) != new[k] for k in new if k != "path" and (k in ("size", "mtime_ns") or k in old))


def changed_files(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[str]:
    """Paths whose identity differs between two records of the same file list."""
    before = {r["path"]: r for r in old}
    return [r["path"] for r in new if _differs(before.get(r["path"]), r)]


def _read_records(folder: Path) -> list[dict[str, Any]] | None:
    try:
        return json.loads((folder / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class CacheSlot:
    """Where the cache for (settings, files) lives; stale siblings / a changed content are noticed."""

    folder: Path
    stale: list[Path]
    changed: list[str]
    records: list[dict[str, Any]]
    invalid: bool = False  # the folder exists but a file's content changed (same size and mtime)

    def ready(self, marker: str) -> bool:
        """True when the cache is complete and built from exactly these files."""
        return (self.folder / marker).is_file() and not self.invalid

    def notice(self, what: str) -> None:
        """One line naming the files that changed since the (stale) cache was built."""
        if not (self.stale or self.invalid):
            return
        names = self.changed or ["(file list or settings)"]
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        msg = (f"{what}: {len(self.changed)} source file(s) changed since the cache was built "
               f"({', '.join(names[:3])}{more}); rebuilding it")
        print(msg)

    def clear(self) -> None:
        """Remove an invalid folder before rebuilding it (renamed aside first: atomic for readers)."""
        if self.invalid and self.folder.exists():
            from stainfree.utils.atomic import discard_dir

            discard_dir(self.folder)

    def write_identity(self, tmp: Path) -> None:
        """Record the identities in the folder being built (names changed files on the next change)."""
        (tmp / IDENTITY_FILE).write_text(json.dumps(self.records, indent=0))

    def remove_stale(self) -> None:
        for folder in self.stale:
            shutil.rmtree(folder, ignore_errors=True)


def cache_slot(cache_dir: str | os.PathLike, prefix: str, settings: Any,
               records: Sequence[dict[str, Any]]) -> CacheSlot:
    """The folder for ``settings`` + file ``records``; stale = same settings, other file sizes/mtimes."""
    cache_dir = Path(cache_dir)
    what = digest({"settings": settings, "files": [r["path"] for r in records]}, 12)
    data = digest([(r["size"], r["mtime_ns"]) for r in records], 8)
    folder = cache_dir / f"{prefix}-{what}-{data}"
    slot = CacheSlot(folder=folder, stale=[], changed=[], records=list(records))
    recorded = _read_records(folder) if folder.is_dir() else None
    if recorded is not None:
        slot.changed = changed_files(recorded, records)
        slot.invalid = bool(slot.changed)
        if not slot.invalid and any(k not in old for new, old in zip(records, recorded) for k in new):
            _remember(folder, [{**old, **new} for new, old in zip(records, recorded)])
        return slot
    slot.stale = [p for p in sorted(cache_dir.glob(f"{prefix}-{what}-*")) if p != folder and p.is_dir()]
    for old in slot.stale:
        slot.changed = changed_files(_read_records(old) or [], records)
        if slot.changed:
            break
    return slot


def _remember(folder: Path, records: list[dict[str, Any]]) -> None:
    """Add content hashes computed under a stricter ``verify`` to a valid cache's record."""
    from stainfree.utils.atomic import atomic_write_text

    try:
        atomic_write_text(folder / IDENTITY_FILE, json.dumps(records, indent=0))
    except OSError:  # a read-only cache stays usable; it is just checked again next time
        pass
