"""CSV-of-cells importer: column detection, points and boxes, one-based positions, spreadsheets, errors."""
from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from fixtures_images import KINDS, assert_sample_table, write_image
from stainfree.data.sources.common import SourceError
from stainfree.data.sources.points_csv import read_points_csv


def _images(root) -> None:
    for k, kind in enumerate(KINDS):
        write_image(root / "img" / f"f{k}.png", kind, size=(40, 50), seed=k)


def test_points_with_detected_columns_and_every_flavour(tmp_path, caplog) -> None:
    _images(tmp_path)
    rows = ["File Name,X,Y,Class,well"] + [f"img/f{k}.png,{10 + k},20,Living Cell,A{k}" for k in range(4)]
    rows += ["img/f3.png,48.5,2,Dead Cell,A3", "img/f2.png,,,,A2"]  # border point; a no-cell image row
    (tmp_path / "cells.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO):
        table = read_points_csv(str(tmp_path / "cells.csv"), point_size=9)
    assert_sample_table(table)
    assert "image column 'File Name', label column 'Class', point column(s) X, Y" in caplog.text
    assert set(table["region_kind"]) == {"point"} and len(table) == 5
    first = table.iloc[0]
    # the 9 px square centred on pixel (10, 20): pixels 6..14 and 16..24
    assert (first.x0, first.y0, first.x1, first.y1, first.cx, first.cy) == (6.0, 16.0, 15.0, 25.0, 10.0, 20.0)
    assert first.well == "A0" and first.group == "img/f0.png" and first.label == "Living Cell"
    assert table.iloc[-1]["x1"] > 50  # partly outside the 50 px wide image: kept
    # f2 has a cell row and an empty row: not an image without cells; nothing else is
    assert table.attrs["import_report"]["left_out"]["image(s) listed without cells"] == 0


def test_image_listed_without_cells_is_reported(tmp_path) -> None:
    _images(tmp_path)
    text = "image,cx,cy,label\nimg/f0.png,5,5,live\nimg/f1.png,,,\n"
    (tmp_path / "c.csv").write_text(text)
    table = read_points_csv(str(tmp_path / "c.csv"), point_size=4)
    assert len(table) == 1 and table.attrs["import_report"]["left_out"]["image(s) listed without cells"] == 1


@pytest.mark.parametrize("header, row, box", [
    ("image,xmin,ymin,xmax,ymax,label", "f0.png,2,3,12,15,dead", (2, 3, 12, 15)),
    ("Image,BX,BY,Width,Height,Label", "f0.png,2,3,10,12,dead", (2, 3, 12, 15)),
    ("filename,x,y,width,height,class", "f0.png,2,3,10,12,dead", (2, 3, 12, 15)),
    ("file,left,top,right,bottom,state", "f0.png,2,3,12,15,dead", (2, 3, 12, 15)),
])
def test_box_columns_detected(tmp_path, header, row, box) -> None:
    write_image(tmp_path / "f0.png", "grey16", size=(40, 50))
    (tmp_path / "b.csv").write_text(f"{header}\n{row}\n")
    table = read_points_csv(str(tmp_path / "b.csv"))
    assert tuple(table.iloc[0][["x0", "y0", "x1", "y1"]]) == box and table.iloc[0].region_kind == "box"


def test_semicolon_decimal_comma_one_based_and_explicit_columns(tmp_path) -> None:
    write_image(tmp_path / "pics" / "a.png", "palette", size=(40, 50))
    (tmp_path / "t.csv").write_text("bild;pos x;pos y;zustand;group\na.png;10,5;20;tot;dish 1\n")
    table = read_points_csv(str(tmp_path / "t.csv"), images=str(tmp_path / "pics"), image_column="bild",
                            label_column="zustand", coord_columns=["pos x", "pos y"], point_size=4,
                            one_based=True, class_map={"tot": "dead"})
    row = table.iloc[0]
    assert (row.cx, row.cy, row.x0, row.x1) == (9.5, 19.0, 8.0, 12.0)
    assert row.label == "dead" and row.group == "dish 1"  # the CSV's own group column wins


def test_unknown_class_and_missing_point_size(tmp_path) -> None:
    _images(tmp_path)
    (tmp_path / "c.csv").write_text("image,x,y,label\nimg/f0.png,5,5,Living Cell\nimg/f1.png,6,6,Dead Cell\n")
    with pytest.raises(SourceError, match="set data.point_size"):
        read_points_csv(str(tmp_path / "c.csv"))
    with pytest.raises(SourceError, match=r"class name\(s\) Dead Cell .*names found: \['Dead Cell', 'Living Cell'\]"
                                          r".*data.class_map='\{Dead Cell: <class>, Living Cell: live\}'"):
        read_points_csv(str(tmp_path / "c.csv"), point_size=8, class_map={"Living Cell": "live"})


@pytest.mark.parametrize("text, match", [
    ("", "the file is empty"),
    ("image,x,y,label\n", "a header but no rows"),
    ("image,x,y,label\nimg/f0.png,5,five,live\n",
     r"column 'y' has 1 value\(s\) that are not numbers \(line 2: 'five'\)"),
    ("image,x,y,label\nimg/f0.png,5,,live\n", r"1 row\(s\) have some coordinates empty \(line\(s\) 2\)"),
    ("image,x,y,label\nimg/f0.png,5,5,\n", r"1 row\(s\) have no label"),
    ("image,x,y,label\n,5,5,live\n", r"1 row\(s\) have no image name"),
    ("picture,x,y,label\nimg/f0.png,5,5,live\n", r"no column holding the image found .*set data.image_column"),
    ("image,u,v,label\nimg/f0.png,5,5,live\n", r"no point .* columns found .*set data.coord_columns"),
    ('image,x,y,label\n"img/f0.png,5,5,live\n', "not a readable CSV"),
    ("image,x,y,label\nimg/missing.png,5,5,live\n", r"not found .*\(img/missing.png\).*set data.images"),
])
def test_bad_csv_is_one_clear_line(tmp_path, text, match) -> None:
    _images(tmp_path)
    (tmp_path / "c.csv").write_text(text)
    with pytest.raises(SourceError, match=match) as err:
        read_points_csv(str(tmp_path / "c.csv"), point_size=8)
    assert "c.csv" in str(err.value) and "\n" not in str(err.value)


def test_spreadsheet_file_refused_with_the_fix(tmp_path) -> None:
    (tmp_path / "cells.xlsx").write_bytes(b"PK")
    with pytest.raises(SourceError, match="save it as CSV"):
        read_points_csv(str(tmp_path / "cells.xlsx"))


def test_hydra_containers_and_unlisted_neighbours(tmp_path) -> None:
    _images(tmp_path)
    (tmp_path / "c.csv").write_text("img,px,py,kind\nimg/f0.png,5,5,a\nimg/f1.png,6,6,b\n")
    table = read_points_csv(str(tmp_path / "c.csv"), image_column="img", label_column="kind",
                            coord_columns=OmegaConf.create(["px", "py"]), point_size=8,
                            class_map=OmegaConf.create({"a": "live", "b": "dead"}))
    assert table["label"].tolist() == ["live", "dead"]
    assert table.attrs["import_report"]["left_out"]["image(s) next to listed ones that the CSV does not list"] == 2
