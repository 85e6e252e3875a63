"""One folder per class (``root/live/*.png``, ``root/dead/**/*.tif``) -> sample table, one whole image per sample.

The class is the name of the folder directly under ``root`` (any name, spaces included; renamed or
merged by ``class_map``); images may sit in sub-folders below it. The default group is the image's
path relative to its class folder, so ``live/plate1/a.png`` and ``dead/plate1/a.png`` (two crops
named after one field) stay together; ``data.split.group_regex`` derives coarser groups from names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stainfree.data.imageio import IMAGE_SUFFIXES
from stainfree.data.sources.class_map import map_class_names, normalise_class_map
from stainfree.data.sources.common import (
    SourceError,
    absolute,
    build_table,
    read_sizes,
    relative_key,
    require_folder,
)

SOURCE = "folders"


def read_folders(root: str, class_map: dict | None = None) -> pd.DataFrame:
    """Read every image under ``root/<class>/`` into the sample table (region_kind ``image``).

    Options:
      root       the folder that holds one folder per class.
      class_map  ``{folder name: class name}`` (null = folder names are the classes); a folder the
                 map lacks stops the import listing all folders; ``name: null`` leaves it out.
    Files directly in ``root``, non-image files and hidden files/folders are left out and counted.
    """
    base = require_folder(root, "root", "folder that holds one folder per class")
    entries = sorted(base.iterdir())
    class_dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    loose = [p.name for p in entries if p.is_file()]
    loose_images = [n for n in loose if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if not class_dirs:
        hint = (f" ({len(loose_images)} images sit directly in it: is it one class folder? then pass its "
                "parent)") if loose_images else ""
        raise SourceError(f"data.root={base}: no class folder found{hint}; data.root must hold one folder per "
                          "class, e.g. live/ and dead/")
    names = map_class_names((d.name for d in class_dirs), normalise_class_map(class_map), SOURCE, str(base))
    rows: list[dict[str, Any]] = []
    left_out: dict[str, list[str]] = {
        "image(s) directly in data.root (no class folder)": loose_images,
        "non-image file(s)": [n for n in loose if n not in loose_images],
        "hidden file(s) or folder(s)": [p.name for p in entries if p.name.startswith(".")],
        "class folder(s) mapped to null in data.class_map": [],
    }
    for folder in class_dirs:
        label = names[folder.name.strip()]
        if label is None:
            left_out["class folder(s) mapped to null in data.class_map"].append(folder.name)
            continue
        images = _images_in(folder, base, left_out)
        if not images:
            raise SourceError(f"{folder}: class folder without images; add images, remove the folder, or "
                              f"leave it out with data.class_map (e.g. '{{{folder.name.strip()}: null, ...}}')")
        rows += [{"path": str(absolute(p)), "key": relative_key(p, base), "label": label,
                  "group": relative_key(p, folder), "region_kind": "image",
                  "source_label": folder.name} for p in images]
    sizes = read_sizes(Path(r["path"]) for r in rows)
    return build_table(rows, SOURCE, base, sizes, left_out)


def _images_in(folder: Path, base: Path, left_out: dict[str, list[str]]) -> list[Path]:
    """Images below ``folder`` (sorted); other files are recorded in ``left_out``."""
    images = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        key = relative_key(path, base)
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            left_out["hidden file(s) or folder(s)"].append(key)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            left_out["non-image file(s)"].append(key)
    return images
