"""Tiny annotated images for the importer tests: every PNG flavour public sets come in, VOC/COCO/CSV writers.

``write_image`` writes a field as 16-bit grey, 8-bit grey, RGB or palette PNG (a palette whose
indices are NOT the grey levels, so a reader that ignores the palette is caught).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import cv2
import numpy as np
import pandas as pd
from PIL import Image

KINDS = ("grey16", "grey8", "rgb", "palette")
# (name, xmin, ymin, xmax, ymax) in VOC's 1-based inclusive pixel indices
VocObject = tuple[str, float, float, float, float]


def write_image(path: Path, kind: str = "grey8", size: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    """Write a ``size`` = (height, width) image of ``kind``; returns its grey content."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "grey16":
        grey = rng.integers(0, 65536, size, dtype=np.uint16)
        assert cv2.imwrite(str(path), grey)
        return grey
    grey = rng.integers(0, 256, size, dtype=np.uint8)
    if kind == "grey8":
        assert cv2.imwrite(str(path), grey)
    elif kind == "rgb":
        assert cv2.imwrite(str(path), np.dstack([grey] * 3))
    elif kind == "palette":
        perm = rng.permutation(256)
        img = Image.fromarray(np.argsort(perm)[grey].astype(np.uint8), mode="P")
        img.putpalette(np.repeat(perm[:, None], 3, axis=1).astype(np.uint8).ravel().tolist())
        img.save(path)
    else:
        raise ValueError(kind)
    return grey


def write_voc(xml: Path, filename: str, size: tuple[int, int], objects: Sequence[VocObject],
              path_text: str | None = None, extra: str = "") -> Path:
    """A Pascal-VOC annotation as LabelImg writes it (``path_text`` = the annotator's absolute path)."""
    objs = "".join(
        f"<object><name>{escape(name)}</name><pose>Unspecified</pose><truncated>{int(k == 0)}</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax>"
        f"<ymax>{y1:g}</ymax></bndbox></object>" for k, (name, x0, y0, x1, y1) in enumerate(objects))
    path_el = f"<path>{escape(path_text)}</path>" if path_text else ""
    xml.parent.mkdir(parents=True, exist_ok=True)
    xml.write_text(f"<annotation><folder>images</folder><filename>{escape(filename)}</filename>{path_el}"
                   f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>1</depth></size>"
                   f"{extra}{objs}</annotation>")
    return xml


def write_coco(path: Path, images: Sequence[dict], boxes: Sequence[tuple[int, str, list[float]]]) -> Path:
    """COCO json: ``images`` entries (id, file_name, height, width), ``boxes`` (image id, category, [x, y, w, h])."""
    names = sorted({name for _, name, _ in boxes})
    doc = {"info": {"description": "test"},
           "images": list(images),
           "categories": [{"id": k + 1, "name": n, "supercategory": "cell"} for k, n in enumerate(names)],
           "annotations": [{"id": k + 1, "image_id": i, "category_id": names.index(n) + 1, "bbox": b,
                            "area": b[2] * b[3], "iscrowd": 0, "segmentation": []}
                           for k, (i, n, b) in enumerate(boxes)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def assert_sample_table(table: pd.DataFrame) -> None:
    """The contract's schema: ``validate_samples`` accepts the table, plus what every importer promises."""
    from stainfree.data.samples import validate_samples

    validate_samples(table, "importer test")
    for col in ("path", "label", "group", "x0", "y0", "x1", "y1", "region_kind", "sample_id"):
        assert col in table.columns, col
    assert len(table) > 0
    assert table["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert (table["label"].str.len() > 0).all() and (table["group"].str.len() > 0).all()
    assert table["sample_id"].is_unique
    assert set(table["region_kind"]) <= {"image", "box", "point"}
    boxed = table[table["region_kind"] != "image"]
    assert (boxed["x1"] > boxed["x0"]).all() and (boxed["y1"] > boxed["y0"]).all()
    assert table.loc[table["region_kind"] == "image", ["x0", "y0", "x1", "y1"]].isna().all().all()
    for col in ("x0", "y0", "x1", "y1"):
        assert table[col].dtype == np.float64
