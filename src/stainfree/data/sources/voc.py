"""Pascal-VOC boxes (one .xml per image, as LabelImg, CVAT and Roboflow export them) -> sample table.

Each ``<object>`` becomes one sample: its ``<bndbox>`` (1-based, inclusive pixel indices) is
converted to the table's 0-based half-open box ``[xmin - 1, xmax) x [ymin - 1, ymax)``;
``<difficult>`` and ``<truncated>`` are kept as metadata. The group is the image the xml names,
so all cells of one field stay in one split (copies of a field under other names are grouped
later by the duplicate step).
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stainfree.data.sources.class_map import map_class_names, normalise_class_map
from stainfree.data.sources.common import (
    SourceError,
    build_table,
    read_sizes,
    relative_key,
    require_folder,
    shorten,
)
from stainfree.data.sources.locate import ImageFinder

log = logging.getLogger(__name__)

SOURCE = "voc"
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VocFile:
    """What one .xml says: the image it names, its stated size and its boxes."""

    xml: Path
    refs: list[str | None]
    size: tuple[int, int] | None                      # (height, width) as written, if any
    objects: list[dict[str, Any]] = field(default_factory=list)


def read_voc(annotations: str, images: str | None = None, class_map: dict | None = None) -> pd.DataFrame:
    """Read every ``*.xml`` under ``annotations`` (recursively) into the sample table.

    Options:
      annotations  folder of Pascal-VOC .xml files (sub-folders allowed).
      images       folder holding the images (searched recursively); null = next to each xml.
                   The image is found by the xml's ``<filename>``, then by ``<path>`` (absolute
                   paths from another computer fall back to their file name).
      class_map    ``{name in the xml: class name}`` (null = names used as written); a name the
                   map lacks stops the import listing all names; ``name: null`` leaves it out.
    """
    ann_root = require_folder(annotations, "annotations", "folder of Pascal-VOC .xml files")
    img_root = require_folder(images, "images", "folder that holds the images") if images else ann_root
    mapping = normalise_class_map(class_map)
    found = sorted(ann_root.rglob("*.xml"))
    hidden = [p for p in found if any(part.startswith(".") for part in p.relative_to(ann_root).parts)]
    xmls = [p for p in found if p not in hidden]  # ._x.xml (macOS) and checkpoint copies are not annotations
    if not xmls:
        raise SourceError(f"data.annotations={ann_root}: no .xml file found; Pascal-VOC annotations are "
                          "one .xml per image (for COCO json use data=coco, for a CSV data=points_csv)")
    files = [parse_voc_file(x) for x in xmls]
    names = map_class_names((o["name"] for f in files for o in f.objects), mapping, SOURCE, str(ann_root))
    finder = ImageFinder(img_root, "data.images" if images else "data.annotations")
    rows, left_out = _rows(files, finder, ann_root, names)
    left_out["hidden .xml file(s)"] = [relative_key(p, ann_root) for p in hidden]
    sizes = read_sizes(Path(r["path"]) for r in rows)
    _warn_size_mismatch(files, rows, sizes)
    return build_table(rows, SOURCE, ann_root, sizes, left_out)


def parse_voc_file(xml: Path) -> VocFile:
    """One .xml -> ``VocFile``; malformed files stop with the file, the problem and the fix."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise SourceError(f"{xml}: not valid XML ({err}); fix or remove that file") from None
    if root.tag != "annotation":
        cvat = " (CVAT's own XML: export the task as Pascal VOC or COCO instead)" if root.tag == "annotations" else ""
        raise SourceError(f"{xml}: not a Pascal-VOC file (root element <{root.tag}>, expected "
                          f"<annotation>){cvat}; remove it from data.annotations")
    size = None
    if root.find("size") is not None:
        try:
            size = (int(float(root.findtext("size/height"))), int(float(root.findtext("size/width"))))
        except (TypeError, ValueError):
            size = None  # optional element; the image header gives the size anyway
    refs = [root.findtext("filename"), root.findtext("path")]
    return VocFile(xml=xml, refs=refs, size=size,
                   objects=[_parse_object(xml, k, obj) for k, obj in enumerate(root.findall("object"))])


def _parse_object(xml: Path, k: int, obj: ET.Element) -> dict[str, Any]:
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise SourceError(f"{xml}: <object> {k + 1} has no <name>; give every box a class name")
    box = obj.find("bndbox")
    if box is None:
        raise SourceError(f"{xml}: <object> {k + 1} ('{name}') has no <bndbox>; only boxes are read "
                          "(export polygons/masks as boxes)")
    try:
        xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in _CORNERS)
    except (TypeError, ValueError):
        written = {tag: box.findtext(tag) for tag in _CORNERS}
        raise SourceError(f"{xml}: <object> {k + 1} ('{name}') has a bad <bndbox> {written}; each of "
                          "xmin, ymin, xmax, ymax must be a number") from None
    return {"name": name, "x0": xmin - 1.0, "y0": ymin - 1.0, "x1": xmax, "y1": ymax,
            "difficult": _flag(obj.findtext("difficult")), "truncated": _flag(obj.findtext("truncated"))}


def _flag(text: str | None) -> int:
    """VOC 0/1 flags; absent means 0 (the format's default)."""
    return int((text or "0").strip().lower() in ("1", "true", "yes"))


def _rows(files: list[VocFile], finder: ImageFinder, ann_root: Path,
          names: dict[str, str | None]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Sample rows of all files, plus what was left out and why."""
    rows: list[dict[str, Any]] = []
    no_boxes, unmapped, missing = [], [], []
    seen: dict[Path, Path] = {}
    for f in files:
        xml_key = relative_key(f.xml, ann_root)
        hint = relative_key(f.xml.parent, ann_root)
        ref = f.refs[0]
        image = finder.find([f"{hint}/{ref}" if ref and hint != "." else None, *f.refs, f.xml.stem], hint)
        if not f.objects:
            no_boxes.append(xml_key)
            if image is not None:
                seen.setdefault(image, f.xml)
            continue
        if image is None:
            missing.append(f"{xml_key} -> {f.refs[0] or f.refs[1] or f.xml.stem}")
            continue
        if image in seen:
            raise SourceError(f"{SOURCE}: {image} is annotated by two files, {seen[image]} and {f.xml}; "
                              "keep one (its cells would be counted twice)")
        seen[image] = f.xml
        key = relative_key(image, finder.root)
        for obj in f.objects:
            label = names[obj["name"]]
            if label is None:
                unmapped.append(f"{xml_key}:{obj['name']}")
                continue
            rows.append({"path": str(image), "key": key, "label": label, "group": key,
                         "x0": obj["x0"], "y0": obj["y0"], "x1": obj["x1"], "y1": obj["y1"],
                         "region_kind": "box", "source_file": str(f.xml), "source_label": obj["name"],
                         "difficult": obj["difficult"], "truncated": obj["truncated"]})
    if missing:
        raise SourceError(f"{SOURCE}: {len(missing)} image(s) named in the xml files not found "
                          f"({shorten(missing, 3)}) under {finder.root}, by path or by file name; set "
                          "data.images to the folder that holds them")
    unannotated = finder.unused(seen)
    return rows, {"image(s) whose xml has no box": no_boxes,
                  "image(s) without an xml file": unannotated,
                  "box(es) of classes mapped to null in data.class_map": unmapped}


def _warn_size_mismatch(files: list[VocFile], rows: list[dict[str, Any]],
                        sizes: dict[Path, tuple[int, int]]) -> None:
    """Warn when an xml's <size> disagrees with its image (boxes may be for a resized copy)."""
    image_of = {Path(r["source_file"]): Path(r["path"]) for r in rows}
    odd = [f"{f.xml.name} says {f.size[1]}x{f.size[0]}, image is {sizes[image_of[f.xml]][1]}x"
           f"{sizes[image_of[f.xml]][0]}" for f in files
           if f.xml in image_of and f.size and min(f.size) > 0 and f.size != sizes[image_of[f.xml]]]
    if odd:
        log.warning(
            "%s: %d xml file(s) state another image size than their image (%s); boxes are used as "
            "written: check that they were drawn on these images", SOURCE, len(odd), shorten(odd, 3))
