"""Atomic file and folder writes: nothing a user made is half-written or overwritten by accident.

Every artefact is written to a temporary sibling first and then renamed into place, so an
interrupted run never leaves a truncated CSV/PNG/cache behind.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path next to ``target``; rename it onto ``target`` if the block succeeds.

    The temp name keeps the target's suffix so writers that infer the format from the
    extension (matplotlib, cv2, pandas) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files: give results the usual umask permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask (read by set-and-restore; cached so threads never see a zero umask)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def atomic_write_text(target: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(target)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder next to ``target``; rename it to ``target`` when the block succeeds.

    Used for caches: a half-built cache is never mistaken for a finished one. If another
    process finished the same folder first, its result is kept and ours is discarded.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_TAG}{_owner()}-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_TMP_TAG = ".tmp-"
_LEGACY_STALE_SECONDS = 6 * 3600  # temp folders named before the owner tag: stale after 6 h


def _owner() -> str:
    """``<host>-<pid>`` of this process, written into temp folder names (host: no dashes)."""
    return f"{socket.gethostname().replace('-', '_').replace('.', '_')}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_dirs(parent: str | os.PathLike) -> list[Path]:
    """Delete temp folders that killed ``atomic_dir`` builds left in ``parent``; returns them.

    A temp folder is stale when the process that made it (host + pid in its name) is no longer
    running on this host; folders of other hosts (a shared file system) and of live processes are
    left alone. Temp folders named by older versions (no owner) count as stale after 6 hours.
    """
    parent = Path(parent)
    removed = []
    me = socket.gethostname().replace("-", "_").replace(".", "_")
    for tmp in parent.glob(".*"):
        if not tmp.is_dir():
            continue
        name = tmp.name
        if _TMP_TAG in name:
            try:
                host, pid, _ = name.rsplit(_TMP_TAG, 1)[1].rsplit("-", 2)
                stale = host == me and not _alive(int(pid))
            except ValueError:
                continue
        else:
            legacy = re.fullmatch(r"\.(.+)\.[a-z0-9_]{8}", name)
            stale = (legacy is not None and _looks_like_cache(legacy.group(1))
                     and time.time() - tmp.stat().st_mtime > _LEGACY_STALE_SECONDS)
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _looks_like_cache(name: str) -> bool:
    """Legacy temp folders are only removed for stainfree's own cache folder names."""
    return bool(re.fullmatch(r"(frames|jimt|celldeath_tiles|samples|pairs)-[0-9a-f-]+", name))


def discard_dir(folder: str | os.PathLike) -> None:
    """Remove a finished folder so it can be rebuilt: renamed to a temp name of this process first
    (readers never see it half-deleted; a crash leaves a temp folder the next build removes)."""
    folder = Path(folder)
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}{_TMP_TAG}{_owner()}-", dir=folder.parent))
    os.rename(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def unique_path(target: str | os.PathLike) -> Path:
    """Return ``target`` if free, else ``name_1.ext``, ``name_2.ext``...: never clobber earlier output."""
    target = Path(target)
    if not target.exists():
        return target
    for i in range(1, 100000):
        candidate = target.with_name(f"{target.stem}_{i}{target.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free name next to {target}")
