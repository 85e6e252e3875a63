"""COCO object-detection json (``images``, ``annotations`` with ``bbox`` [x, y, w, h], ``categories``) -> sample table.

Each annotation becomes one sample with the box ``[x, x + w) x [y, y + h)`` (COCO boxes are
already 0-based, continuous). ``iscrowd`` and the annotation id are kept as metadata; the group is
the image, so all cells of one field stay in one split.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from stainfree.data.sources.class_map import map_class_names, normalise_class_map
from stainfree.data.sources.common import (
    SourceError,
    build_table,
    read_sizes,
    relative_key,
    require_file,
    require_folder,
    shorten,
)
from stainfree.data.sources.locate import ImageFinder

SOURCE = "coco"


def read_coco(annotations: str, images: str | None = None, class_map: dict | None = None) -> pd.DataFrame:
    """Read the boxes of one COCO json file into the sample table.

    Options:
      annotations  the COCO .json file.
      images       folder the json's ``file_name`` entries are relative to (searched recursively
                   by file name when the written path does not exist); null = the json's folder.
      class_map    ``{category name: class name}`` (null = names used as written); a name the map
                   lacks stops the import listing all names; ``name: null`` leaves it out.
    """
    path = require_file(annotations, "annotations", "COCO .json file")
    img_root = require_folder(images, "images", "folder that holds the images") if images else path.parent
    doc = _load(path)
    categories = _index(doc, "categories", path)
    image_entries = _index(doc, "images", path)
    anns = doc["annotations"]
    used = {a.get("category_id") for a in anns}
    unknown_cat = sorted(str(c) for c in used - set(categories))
    if unknown_cat:
        raise SourceError(f"{path}: annotations use category id(s) {shorten(unknown_cat)} that 'categories' "
                          "does not list; fix the export")
    names = map_class_names((str(categories[c].get("name", c)) for c in used), normalise_class_map(class_map),
                            SOURCE, str(path))
    orphans = [str(a.get("id", k)) for k, a in enumerate(anns) if a.get("image_id") not in image_entries]
    if orphans:
        raise SourceError(f"{path}: annotation(s) {shorten(orphans)} name an image_id that 'images' does not "
                          "list; fix the export")
    boxed = Counter(ann.get("image_id") for ann in anns)
    finder = ImageFinder(img_root, "data.images")
    files = _resolve_images({i: e for i, e in image_entries.items() if boxed[i]}, finder, path)
    rows, unmapped = [], []
    for k, ann in enumerate(anns):
        image_id = ann["image_id"]
        name = str(categories[ann["category_id"]].get("name", ann["category_id"])).strip()
        label = names[name]
        if label is None:
            unmapped.append(f"{ann.get('id', k)}:{name}")
            continue
        x, y, w, h = _bbox(ann, k, path)
        image = files[image_id]
        key = relative_key(image, finder.root)
        rows.append({"path": str(image), "key": key, "label": label, "group": key,
                     "x0": x, "y0": y, "x1": x + w, "y1": y + h, "region_kind": "box",
                     "source_file": str(path), "source_label": name, "annotation_id": ann.get("id", k),
                     "iscrowd": int(ann.get("iscrowd", 0) or 0)})
    no_boxes = [str(e.get("file_name", i)) for i, e in image_entries.items() if not boxed[i]]
    unlisted = finder.unused(files.values(), (PurePosixPath(str(e.get("file_name", "")).replace("\\", "/")).name
                                              for e in image_entries.values()))
    sizes = read_sizes(Path(r["path"]) for r in rows)
    return build_table(rows, SOURCE, path, sizes, {
        "image(s) without a box": no_boxes,
        "image(s) next to listed ones that the json does not list": unlisted,
        "box(es) of classes mapped to null in data.class_map": unmapped})


def _load(path: Path) -> dict[str, Any]:
    """The parsed json with the three lists COCO requires; anything else stops with the fix."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not valid JSON ({err}); re-export the COCO file") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{path}: a COCO file is a JSON object with 'images', 'annotations' and "
                          "'categories'; this one is a list or value")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if missing:
        raise SourceError(f"{path}: no {missing} list; a COCO file needs 'images', 'annotations' and "
                          "'categories' (is this a COCO detection export?)")
    return doc


def _index(doc: dict[str, Any], key: str, path: Path) -> dict[Any, dict[str, Any]]:
    """``{id: entry}`` of ``doc[key]``; entries without an id or with a repeated one stop the import."""
    out: dict[Any, dict[str, Any]] = {}
    for k, entry in enumerate(doc[key]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise SourceError(f"{path}: entry {k} of '{key}' has no 'id'; fix the export")
        if entry["id"] in out:
            raise SourceError(f"{path}: id {entry['id']!r} appears twice in '{key}'; fix the export")
        out[entry["id"]] = entry
    return out


def _resolve_images(entries: dict[Any, dict[str, Any]], finder: ImageFinder, path: Path) -> dict[Any, Path]:
    """``{image id: file}`` for every listed image; missing ones stop the import with the fix."""
    found, missing = {}, []
    for image_id, entry in entries.items():
        name = entry.get("file_name")
        image = finder.find([name, entry.get("path"), entry.get("coco_url")])
        if image is None:
            missing.append(str(name))
        else:
            found[image_id] = image
    if missing:
        raise SourceError(f"{SOURCE}: {len(missing)} image(s) listed in {path.name} not found under "
                          f"{finder.root} ({shorten(missing, 3)}), by path or by file name; set data.images "
                          "to the folder that holds them")
    return found


def _bbox(ann: dict[str, Any], k: int, path: Path) -> tuple[float, float, float, float]:
    box = ann.get("bbox")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise SourceError(f"{path}: annotation {ann.get('id', k)} has bbox {box!r}; COCO boxes are "
                          "[x, y, width, height] numbers") from None
    return x, y, w, h
