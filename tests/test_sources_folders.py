"""Folder-per-class importer: any class names, nested folders, class maps, what is left out, errors."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import tifffile

from fixtures_images import KINDS, assert_sample_table, write_image
from stainfree.data.sources.common import SourceError
from stainfree.data.sources.folders import read_folders


def _crops(root) -> None:
    for k, kind in enumerate(KINDS):
        write_image(root / "Living Cell" / f"c{k}.png", kind, size=(30 + k, 40), seed=k)
        write_image(root / "Dead Cell" / "plate 1" / f"c{k}.png", kind, size=(20, 25), seed=10 + k)


def test_classes_with_spaces_nested_folders_and_every_png_flavour(tmp_path) -> None:
    _crops(tmp_path / "crops")
    table = read_folders(str(tmp_path / "crops"))
    assert_sample_table(table)
    assert table["label"].value_counts().to_dict() == {"Dead Cell": 4, "Living Cell": 4}
    assert set(table["region_kind"]) == {"image"}
    row = table[table["label"] == "Dead Cell"].iloc[0]
    assert row.group == "plate 1/c0.png" and row.sample_id == "Dead Cell/plate 1/c0.png#0"
    assert (row.image_height, row.image_width) == (20, 25)
    assert table[table["label"] == "Living Cell"]["image_height"].tolist() == [30, 31, 32, 33]
    assert np.isnan(table[["x0", "y0", "x1", "y1"]].to_numpy()).all()


def test_class_map_renames_merges_and_leaves_out(tmp_path) -> None:
    _crops(tmp_path / "crops")
    write_image(tmp_path / "crops" / "apoptotic" / "a.png", "grey8")
    write_image(tmp_path / "crops" / "debris" / "d.png", "grey8")
    table = read_folders(str(tmp_path / "crops"), class_map={"Living Cell": "live", "Dead Cell": "dead",
                                                             "apoptotic": "dead", "debris": None})
    assert table["label"].value_counts().to_dict() == {"dead": 5, "live": 4}
    assert table.attrs["import_report"]["left_out"]["class folder(s) mapped to null in data.class_map"] == 1
    with pytest.raises(SourceError, match=r"class name\(s\) apoptotic, debris in .* are not in data.class_map; "
                                          r"names found: \['Dead Cell', 'Living Cell', 'apoptotic', 'debris'\]"):
        read_folders(str(tmp_path / "crops"), class_map={"Living Cell": "live", "Dead Cell": "dead"})


def test_loose_and_non_image_files_are_reported(tmp_path, caplog) -> None:
    _crops(tmp_path / "crops")
    write_image(tmp_path / "crops" / "stray.png", "grey8")
    (tmp_path / "crops" / "README.txt").write_text("notes")
    (tmp_path / "crops" / "Living Cell" / "labels.csv").write_text("x")
    write_image(tmp_path / "crops" / "Living Cell" / ".ipynb_checkpoints" / "c0.png", "grey8")
    with caplog.at_level(logging.WARNING):
        table = read_folders(str(tmp_path / "crops"))
    assert len(table) == 8
    left = table.attrs["import_report"]["left_out"]
    assert left["image(s) directly in data.root (no class folder)"] == 1
    assert left["non-image file(s)"] == 2 and left["hidden file(s) or folder(s)"] == 1
    assert "left out 1 image(s) directly in data.root (no class folder): stray.png" in caplog.text


def test_errors_name_the_folder_and_the_fix(tmp_path) -> None:
    write_image(tmp_path / "live" / "a.png", "grey8")
    with pytest.raises(SourceError, match=r"no class folder found \(1 images sit directly in it.*pass its parent"):
        read_folders(str(tmp_path / "live"))
    (tmp_path / "dead").mkdir()
    with pytest.raises(SourceError, match=r"dead: class folder without images.*\{dead: null, \.\.\.\}"):
        read_folders(str(tmp_path))
    (tmp_path / "dead" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match=r"broken.png: the file is empty, truncated or not an image"):
        read_folders(str(tmp_path))
    with pytest.raises(SourceError, match="data.root is not set"):
        read_folders("")


def test_tiff_and_jpeg_sizes_from_headers(tmp_path) -> None:
    (tmp_path / "dead").mkdir()
    (tmp_path / "live").mkdir()
    tifffile.imwrite(tmp_path / "dead" / "a.tif", np.zeros((21, 33), np.uint16))
    assert cv2.imwrite(str(tmp_path / "live" / "b.jpg"), np.full((17, 19, 3), 128, np.uint8))
    table = read_folders(str(tmp_path))
    sizes = dict(zip(table["label"], zip(table["image_height"], table["image_width"])))
    assert sizes == {"dead": (21, 33), "live": (17, 19)}
