"""Annotated versions of a synthetic JIMT-1 set: VOC, COCO, point CSV, folder-per-class crops and per-frame truth.

Why: the generator knows every cell's position, size and state, so the same frames can be
handed to each importer as a lab would (images as public sets ship them: 16-bit, 8-bit grey,
RGB and palette PNGs; optionally near-duplicate copies of some fields under unrelated names), and
a model's per-frame dead fraction can be checked against the truth. Everything is derived from
the generated folder (``bf/``, ``cells.csv``) and deterministic from its seed. Layout written
(atomically) under ``<set>/annotated/``:

    images/<frame_id>.png  (+ img_<hex>.png copies)   voc/<image stem>.xml   coco.json
    points.csv   folders/<class>/<frame_id>_<k>.png   truth.csv   export.json
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from stainfree.data.imageio import read_image
from stainfree.data.jimt.synthetic import GENERATOR_FILE, _percentile_8bit
from stainfree.utils.atomic import atomic_dir

EXPORT_DIR = "annotated"
FORMATS = ("voc", "coco", "points", "folders")
STYLES = ("grey16", "grey8", "rgb", "palette")
# An annotator's box encloses the visible outline, which the rendered wobble and the dead cells'
# bright rim push up to ~15 % beyond the nominal ellipse.
BOX_PAD = 1.15


@dataclass
class ExportImage:
    """One exported image: its pixels (before encoding), style, and its cells in its own coordinates."""

    name: str
    frame_id: str
    dataset: str
    style: str
    pixels: np.ndarray              # uint16 grey (grey16) or uint8 grey (other styles)
    boxes: np.ndarray               # float [N, 4] half-open x0, y0, x1, y1 (not clipped)
    centres: np.ndarray             # float [N, 2] pixel-index x, y of each cell centre
    dead: np.ndarray                # bool [N]
    copy_of: str = ""
    transform: str = ""
    palette_seed: int = 0
    extra: dict = field(default_factory=dict)


def cell_boxes(cells: pd.DataFrame) -> np.ndarray:
    """Half-open boxes around each cell's rendered ellipse (semi-axes r*sqrt(a), r/sqrt(a) at ``angle``)."""
    a = np.sqrt(cells["aspect"].to_numpy(float))
    r = cells["radius"].to_numpy(float)
    big, small = r * a, r / a
    ca, sa = np.cos(cells["angle"].to_numpy(float)), np.sin(cells["angle"].to_numpy(float))
    hx = BOX_PAD * np.sqrt((big * ca) ** 2 + (small * sa) ** 2)
    hy = BOX_PAD * np.sqrt((big * sa) ** 2 + (small * ca) ** 2)
    cx, cy = cells["x"].to_numpy(float) + 0.5, cells["y"].to_numpy(float) + 0.5  # pixel i spans [i, i+1)
    return np.stack([cx - hx, cy - hy, cx + hx, cy + hy], axis=1)


def dihedral(array: np.ndarray, op: int) -> np.ndarray:
    """One of the 8 flips/rotations: ``op`` = 4 * flip + quarter turns (numpy ``rot90`` direction)."""
    out = np.fliplr(array) if op >= 4 else array
    return np.ascontiguousarray(np.rot90(out, op % 4))


def dihedral_points(xy: np.ndarray, op: int, shape: tuple[int, int]) -> np.ndarray:
    """Continuous (x, y) coordinates moved exactly as ``dihedral`` moves the pixels of a ``shape`` image."""
    h, w = shape
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    if op >= 4:
        x = w - x
    for _ in range(op % 4):  # rot90: new x = old y, new y = old width - old x
        x, y, w, h = y, w - x, h, w
    return np.stack([x, y], axis=1)


def _dihedral_boxes(boxes: np.ndarray, op: int, shape: tuple[int, int]) -> np.ndarray:
    a = dihedral_points(boxes[:, :2], op, shape)
    b = dihedral_points(boxes[:, 2:], op, shape)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)


def _encode_pixels(bf: np.ndarray, style: str) -> np.ndarray:
    """16-bit frames stay 16-bit; the other styles hold the 8-bit percentile stretch."""
    return bf if style == "grey16" else _percentile_8bit(bf)


def _write_png(path: Path, pixels: np.ndarray, style: str, palette_seed: int) -> None:
    """PNG in ``style``; palettes are shuffled, so a reader that ignores the palette sees noise."""
    if style == "palette":
        perm = np.random.default_rng(palette_seed).permutation(256)
        img = Image.fromarray(np.argsort(perm)[pixels].astype(np.uint8), mode="P")
        img.putpalette(np.repeat(perm[:, None], 3, axis=1).astype(np.uint8).ravel().tolist())
        img.save(path)
        return
    out = np.dstack([pixels] * 3) if style == "rgb" else pixels
    if not cv2.imwrite(str(path), out):
        raise OSError(f"{path}: could not write the image; check the disk and permissions")


def _styles(n: int, image_style: str, rng: np.random.Generator) -> list[str]:
    """Per-frame styles: one fixed style, or ``mixed`` = every style once in each block of four frames."""
    if image_style != "mixed":
        return [image_style] * n
    blocks = [STYLES[i] for _ in range((n + 3) // 4) for i in rng.permutation(len(STYLES))]
    return blocks[:n]


def _originals(folder: Path, image_style: str, rng: np.random.Generator) -> list[ExportImage]:
    """One ``ExportImage`` per frame of the generated set, in manifest order."""
    manifest = pd.read_csv(folder / "manifest.csv")
    cells = pd.read_csv(folder / "cells.csv")
    by_frame = dict(tuple(cells.groupby("frame_id", sort=False)))
    styles = _styles(len(manifest), image_style, rng)
    images = []
    for row, style in zip(manifest.itertuples(index=False), styles):
        frame_cells = by_frame.get(row.frame_id, cells.iloc[:0])
        images.append(ExportImage(
            name=f"{row.frame_id}.png", frame_id=row.frame_id, dataset=row.dataset, style=style,
            pixels=_encode_pixels(read_image(folder / row.bf_path), style), boxes=cell_boxes(frame_cells),
            centres=frame_cells[["x", "y"]].to_numpy(float), dead=frame_cells["dead"].to_numpy(bool),
            palette_seed=int(rng.integers(2**31))))
    return images


def _near_duplicates(originals: list[ExportImage], n: int, rng: np.random.Generator) -> list[ExportImage]:
    """``n`` flipped/rotated, brightness-shifted copies of distinct fields under unrelated names."""
    copies = []
    pick = np.sort(rng.choice(len(originals), size=min(n, len(originals)), replace=False))
    for k in pick:
        src = originals[k]
        op, gain = int(rng.integers(1, 8)), float(rng.choice([-1, 1]) * rng.uniform(0.04, 0.12) + 1.0)
        top = np.iinfo(src.pixels.dtype).max
        pixels = np.clip(dihedral(src.pixels, op).astype(np.float64) * gain, 0, top).round()
        centres = dihedral_points(src.centres + 0.5, op, src.pixels.shape) - 0.5
        copies.append(ExportImage(
            name=f"img_{int(rng.integers(16**8)):08x}.png", frame_id=src.frame_id, dataset=src.dataset,
            style=src.style, pixels=pixels.astype(src.pixels.dtype),
            boxes=_dihedral_boxes(src.boxes, op, src.pixels.shape), centres=centres, dead=src.dead,
            copy_of=src.name, transform=f"dihedral {op}, brightness x{gain:.3f}",
            palette_seed=int(rng.integers(2**31))))
    return copies


def _clipped(image: ExportImage) -> np.ndarray:
    """Boxes clipped to the image, as annotation tools save them."""
    h, w = image.pixels.shape
    return np.clip(image.boxes, 0, [w, h, w, h])


def _write_voc(path: Path, image: ExportImage, image_path: Path, names: tuple[str, str]) -> None:
    """One Pascal-VOC xml (1-based inclusive integer corners; truncated = clipped at the border)."""
    h, w = image.pixels.shape
    root = ET.Element("annotation")
    for tag, text in (("folder", "images"), ("filename", image.name), ("path", str(image_path))):
        ET.SubElement(root, tag).text = text
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "stainfree synthetic JIMT-1"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 3 if image.style == "rgb" else 1)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box, clip, dead in zip(image.boxes, _clipped(image), image.dead):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[int(dead)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(not np.allclose(box, clip)))
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        corners = (int(np.floor(clip[0])) + 1, int(np.floor(clip[1])) + 1, int(np.ceil(clip[2])),
                   int(np.ceil(clip[3])))
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners):
            ET.SubElement(bnd, tag).text = str(value)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=False)


def _coco(images: list[ExportImage], names: tuple[str, str]) -> dict:
    doc = {"info": {"description": "stainfree synthetic JIMT-1"},
           "categories": [{"id": 1, "name": names[0], "supercategory": "cell"},
                          {"id": 2, "name": names[1], "supercategory": "cell"}],
           "images": [], "annotations": []}
    for i, image in enumerate(images, start=1):
        h, w = image.pixels.shape
        doc["images"].append({"id": i, "file_name": f"images/{image.name}", "height": h, "width": w})
        for clip, dead in zip(_clipped(image), image.dead):
            x, y, bw, bh = (round(float(v), 2) for v in (clip[0], clip[1], clip[2] - clip[0], clip[3] - clip[1]))
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i,
                                       "category_id": 2 if dead else 1, "bbox": [x, y, bw, bh],
                                       "area": round(bw * bh, 2), "iscrowd": 0, "segmentation": []})
    return doc


def _points(images: list[ExportImage], names: tuple[str, str]) -> pd.DataFrame:
    rows = [{"image": f"images/{im.name}", "x": round(float(c[0]), 2), "y": round(float(c[1]), 2),
             "label": names[int(d)], "frame_id": im.frame_id, "dataset": im.dataset}
            for im in images for c, d in zip(im.centres, im.dead)]
    return pd.DataFrame(rows, columns=["image", "x", "y", "label", "frame_id", "dataset"])


def _truth(images: list[ExportImage]) -> pd.DataFrame:
    rows = []
    for im in images:
        n, n_dead = len(im.dead), int(im.dead.sum())
        rows.append({"image": im.name, "frame_id": im.frame_id, "dataset": im.dataset, "copy_of": im.copy_of,
                     "transform": im.transform, "style": im.style, "n_cells": n, "n_dead": n_dead,
                     "dead_fraction": n_dead / n if n else np.nan})
    return pd.DataFrame(rows)


def _write_crops(folder: Path, image: ExportImage, names: tuple[str, str]) -> None:
    for k, (clip, dead) in enumerate(zip(_clipped(image), image.dead)):
        x0, y0 = int(np.floor(clip[0])), int(np.floor(clip[1]))
        x1, y1 = int(np.ceil(clip[2])), int(np.ceil(clip[3]))
        target = folder / names[int(dead)] / f"{Path(image.name).stem}_{k:03d}.png"
        _write_png(target, np.ascontiguousarray(image.pixels[y0:y1, x0:x1]), image.style, image.palette_seed)


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_annotated`` writes (recorded in ``export.json``)."""

    formats: tuple[str, ...] = FORMATS
    image_style: str = "mixed"
    class_names: tuple[str, str] = ("live", "dead")
    near_duplicates: int = 0

    def check(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"export formats {bad or '[]'} unknown; choose from {','.join(FORMATS)}")
        if self.image_style not in ("mixed", *STYLES):
            raise ValueError(f"image style '{self.image_style}' unknown; use mixed or one of {STYLES}")
        if len(self.class_names) != 2 or len(set(self.class_names)) != 2 or not all(
                n.strip() and "/" not in n for n in self.class_names):
            raise ValueError(f"class names {list(self.class_names)}: give two different names (live first), "
                             "e.g. 'Living Cell,Dead Cell'")
        if self.near_duplicates < 0:
            raise ValueError(f"near_duplicates={self.near_duplicates} must be >= 0")


def export_annotated(folder: str | Path, options: ExportOptions = ExportOptions(), verbose: bool = True) -> Path:
    """Write ``<folder>/annotated/`` for a set made by ``generate_dataset``; returns that folder.

    Refuses a folder that is not a generated set or that already has an export (never overwrites).
    """
    folder = Path(folder).resolve()
    options.check()
    if not (folder / GENERATOR_FILE).is_file() or not (folder / "cells.csv").is_file():
        raise ValueError(f"{folder} is not a synthetic set made by stainfree.data.jimt.synthetic (no "
                         f"{GENERATOR_FILE} / cells.csv); generate one with --out first")
    out = folder / EXPORT_DIR
    if out.exists():
        raise FileExistsError(f"{out} already exists; delete it to export again")
    seed = int(json.loads((folder / GENERATOR_FILE).read_text())["seed"])
    rng = np.random.default_rng([seed, 271828])
    images = _originals(folder, options.image_style, rng)
    originals = list(images)
    images += _near_duplicates(originals, options.near_duplicates, rng)
    names = tuple(options.class_names)
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        for image in images:
            _write_png(tmp / "images" / image.name, image.pixels, image.style, image.palette_seed)
        _write_formats(tmp, out, images, originals, names, options.formats)
        _truth(images).to_csv(tmp / "truth.csv", index=False)
        (tmp / "export.json").write_text(json.dumps({**asdict(options), "seed": seed}, indent=2))
    if verbose:
        n_cells = sum(len(im.dead) for im in originals)
        print(f"annotated export: {len(originals)} frames + {len(images) - len(originals)} near-duplicate "
              f"copies, {n_cells} cells ({', '.join(options.formats)}) -> {out}")
    return out


def _write_formats(tmp: Path, out: Path, images: list[ExportImage], originals: list[ExportImage],
                   names: tuple[str, str], formats: tuple[str, ...]) -> None:
    if "voc" in formats:
        (tmp / "voc").mkdir()
        for image in images:  # <path> = where the image will be once the folder is in place
            _write_voc(tmp / "voc" / f"{Path(image.name).stem}.xml", image, out / "images" / image.name, names)
    if "coco" in formats:
        (tmp / "coco.json").write_text(json.dumps(_coco(images, names)))
    if "points" in formats:
        _points(images, names).to_csv(tmp / "points.csv", index=False)
    if "folders" in formats:  # originals only: a copy's crops would duplicate its field's crops
        for name in names:
            (tmp / "folders" / name).mkdir(parents=True)
        for image in originals:
            _write_crops(tmp / "folders", image, names)
