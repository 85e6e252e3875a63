"""Synthetic set -> VOC / COCO / point CSV / folder crops / truth: consistent with cells.csv, deterministic."""
from __future__ import annotations

import filecmp
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stainfree.data.jimt.synthetic import generate_dataset, main
from stainfree.data.jimt.synthetic_export import (
    ExportOptions,
    dihedral,
    dihedral_points,
    export_annotated,
)
from stainfree.data.sources.coco import read_coco
from stainfree.data.sources.folders import read_folders
from stainfree.data.sources.points_csv import read_points_csv
from stainfree.data.sources.voc import read_voc

NAMES = ("Living Cell", "Dead Cell")
MAP = {"Living Cell": "live", "Dead Cell": "dead"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("syn") / "set"
    generate_dataset(folder, frames_notreat=3, frames_doxo=2, seed=1, examples_per_class=2, verbose=False)
    out = export_annotated(folder, ExportOptions(class_names=NAMES, near_duplicates=2), verbose=False)
    return folder, out


def _per_image(table, key="path"):
    names = table[key].map(lambda p: str(p).replace("\\", "/").rsplit("/", 1)[-1])
    return table.assign(image=names).groupby("image")["label"].agg(n="size", n_dead=lambda s: (s == "dead").sum())


def test_every_format_has_each_frames_cells_and_truth_matches_cells_csv(exported) -> None:
    folder, out = exported
    cells = pd.read_csv(folder / "cells.csv")
    want = cells.groupby("frame_id")["dead"].agg(n="size", n_dead="sum")
    truth = pd.read_csv(out / "truth.csv")
    assert len(truth) == 5 + 2 and (truth["copy_of"].notna()).sum() == 2
    t = truth.set_index("image")
    for frame_id, row in want.iterrows():
        assert t.loc[f"{frame_id}.png", "n_cells"] == row.n and t.loc[f"{frame_id}.png", "n_dead"] == row.n_dead
        assert t.loc[f"{frame_id}.png", "dead_fraction"] == pytest.approx(row.n_dead / row.n)
    expect = t[["n_cells", "n_dead"]].rename(columns={"n_cells": "n"})
    for table in (read_voc(str(out / "voc"), class_map=MAP), read_coco(str(out / "coco.json"), class_map=MAP),
                  read_points_csv(str(out / "points.csv"), point_size=48, class_map=MAP)):
        got = _per_image(table)
        pd.testing.assert_frame_equal(got.sort_index(), expect.loc[got.index].sort_index(), check_dtype=False)
        assert set(got.index) == set(expect.index)  # no frame here is empty
    crops = read_folders(str(out / "folders"), class_map=MAP)
    per_frame = crops.assign(frame=crops["group"].str.rsplit("_", n=1).str[0]).groupby("frame")["label"]
    assert per_frame.size().to_dict() == want["n"].to_dict()
    assert (per_frame.apply(lambda s: (s == "dead").sum()) == want["n_dead"]).all()


def test_image_styles_mixed_and_copies_renamed(exported) -> None:
    _, out = exported
    truth = pd.read_csv(out / "truth.csv")
    modes = {Image.open(out / "images" / name).mode for name in truth["image"]}
    assert {"I;16", "L", "RGB", "P"} <= modes
    copies = truth[truth["copy_of"].notna()]
    assert copies["image"].str.match(r"img_[0-9a-f]{8}\.png$").all()
    assert copies["transform"].str.contains("dihedral").all()
    voc = read_voc(str(out / "voc"), class_map=MAP)  # found through the xml's absolute <path>
    assert voc["group"].nunique() == 7 and (voc["truncated"] == 1).any()  # border cells are clipped


def test_export_is_deterministic_and_never_overwrites(exported) -> None:
    folder, out = exported
    with pytest.raises(FileExistsError, match="already exists"):
        export_annotated(folder, ExportOptions(class_names=NAMES, near_duplicates=2), verbose=False)
    out.rename(folder / "first")
    try:
        export_annotated(folder, ExportOptions(class_names=NAMES, near_duplicates=2), verbose=False)
        cmp = filecmp.dircmp(folder / "first", out)
        files = ["coco.json", "points.csv", "truth.csv", "export.json"]
        assert filecmp.cmpfiles(folder / "first", out, files, shallow=False)[0] == files
        for sub in ("images", "voc", "folders/Dead Cell"):
            names = sorted(p.name for p in (out / sub).iterdir())
            assert filecmp.cmpfiles(folder / "first" / sub, out / sub, names, shallow=False)[0] == names
        assert not cmp.left_only and not cmp.right_only
    finally:
        shutil.rmtree(out)
        (folder / "first").rename(out)


@pytest.mark.parametrize("op", range(8))
def test_dihedral_points_follow_the_pixels(op) -> None:
    image = np.zeros((5, 7), np.uint8)
    image[1, 5] = 255  # pixel (x=5, y=1): continuous centre (5.5, 1.5)
    moved = dihedral(image, op)
    y, x = np.argwhere(moved == 255)[0]
    np.testing.assert_allclose(dihedral_points(np.array([[5.5, 1.5]]), op, image.shape), [[x + 0.5, y + 0.5]])


def test_cli_checks_export_options_first_and_reuses_a_matching_set(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    assert main(["--out", str(out), "--frames-notreat", "1", "--frames-doxo", "0", "--export", "voc,yolo"]) == 2
    assert "yolo" in capsys.readouterr().err and not out.exists()  # nothing generated
    assert main(["--out", str(out), "--frames-notreat", "1", "--frames-doxo", "0", "--examples-per-class", "1"]) == 0
    assert not (out / "annotated").exists()  # the default output is unchanged
    assert main(["--out", str(out), "--frames-notreat", "2", "--frames-doxo", "0", "--examples-per-class", "1",
                 "--export", "points"]) == 2
    assert "was generated with" in capsys.readouterr().err
    assert main(["--out", str(out), "--frames-notreat", "1", "--frames-doxo", "0", "--examples-per-class", "1",
                 "--export", "points", "--image-style", "grey8"]) == 0
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["export.json", "images", "points.csv",
                                                                     "truth.csv"]
    assert json.loads((out / "annotated" / "export.json").read_text())["image_style"] == "grey8"
