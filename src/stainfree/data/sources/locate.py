"""Find the image an annotation names, even when it was written on another machine.

Annotation files name their image in many ways: a bare file name (VOC ``<filename>``, COCO
``file_name``), a sub-path (``train/img_01.png``), an absolute path from the annotator's computer
(VOC ``<path>``: ``C:\\Users\\x\\cells\\img_01.png``), sometimes without the extension or in
another letter case. ``ImageFinder`` tries, in order: the path as written (relative to the
image folder, or absolute when it exists here), then the file name alone anywhere under the image
folder (exact, then ignoring case). A name that matches two files is an error, never a guess.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Iterable

from stainfree.data.imageio import IMAGE_SUFFIXES
from stainfree.data.sources.common import SourceError, absolute, relative_key, shorten


def _portable(ref: str) -> PurePosixPath:
    """A path written on Windows or POSIX, with '/' separators (``C:\\a\\b.png`` -> ``C:/a/b.png``)."""
    return PurePosixPath(ref.strip().replace("\\", "/"))


class ImageFinder:
    """Resolves image references against one image folder (searched recursively, indexed once)."""

    def __init__(self, root: Path, option: str = "data.images") -> None:
        self.root = root
        self.option = option
        self.images = sorted(p for p in root.rglob("*")
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                             and not any(part.startswith(".") for part in p.relative_to(root).parts))
        self._by_name: dict[str, list[Path]] = defaultdict(list)
        self._by_lower: dict[str, list[Path]] = defaultdict(list)
        for path in self.images:
            self._by_name[path.name].append(path)
            self._by_lower[path.name.lower()].append(path)

    def find(self, refs: list[str | None], hint: str = "") -> Path | None:
        """The first image any of ``refs`` names, or None; ``hint`` (a relative folder) breaks ties."""
        refs = [r for r in refs if r and str(r).strip()]
        for ref in refs:
            found = self._direct(_portable(str(ref)))
            if found is not None:
                return found
        for ref in refs:
            found = self._by_file_name(_portable(str(ref)).name, hint)
            if found is not None:
                return found
        return None

    def unused(self, used: Iterable[Path], names: Iterable[str] = ()) -> list[str]:
        """Images that sit next to a ``used`` one but are neither used nor named in ``names``.

        Only the folders the annotations point into count: other images under the root (crops,
        another split's folder) are not what a user would call "left out".
        """
        used = {absolute(p) for p in used}
        folders = {p.parent for p in used}
        skip = {str(n).lower() for n in names}
        return [relative_key(p, self.root) for p in self.images
                if absolute(p).parent in folders and absolute(p) not in used and p.name.lower() not in skip]

    def _direct(self, ref: PurePosixPath) -> Path | None:
        candidates = [Path(str(ref))] if ref.is_absolute() else [self.root / str(ref)]
        if not ref.suffix:
            candidates += [c.with_name(c.name + s) for c in candidates[:1] for s in _suffixes()]
        return next((absolute(c) for c in candidates if c.is_file()
                     and c.suffix.lower() in IMAGE_SUFFIXES), None)

    def _by_file_name(self, name: str, hint: str) -> Path | None:
        names = [name] if PurePosixPath(name).suffix else [name + s for s in _suffixes()]
        for table, key in ((self._by_name, str), (self._by_lower, str.lower)):
            matches = [p for n in names for p in table.get(key(n), [])]
            if len(matches) == 1:
                return absolute(matches[0])
            if len(matches) > 1:
                near = [p for p in matches if relative_key(p.parent, self.root) == hint]
                if len(near) == 1:
                    return absolute(near[0])
                shown = shorten([relative_key(p, self.root) for p in matches], 3)
                raise SourceError(f"{self.option}={self.root}: the name '{name}' matches {len(matches)} "
                                  f"images ({shown}); give each image a unique name or write its "
                                  "sub-folder in the annotation")
        return None


def _suffixes() -> list[str]:
    """Image suffixes in both cases, for references written without an extension."""
    return [s for suffix in IMAGE_SUFFIXES for s in (suffix, suffix.upper())]
