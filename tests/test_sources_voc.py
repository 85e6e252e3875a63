"""Pascal-VOC importer: PNG flavours, box conversion, path resolution, border boxes, errors with fixes."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from fixtures_images import KINDS, assert_sample_table, write_image, write_voc
from stainfree.data.imageio import read_image
from stainfree.data.sources.common import SourceError
from stainfree.data.sources.voc import read_voc

MAP = {"Living Cell": "live", "Dead Cell": "dead"}


def _public_like(root, annotator_dir="C:\\Users\\someone\\cells"):
    """xml next to each PNG (the public set's layout), absolute Windows <path> from the annotator's PC."""
    greys = {}
    for k, kind in enumerate(KINDS):
        greys[kind] = write_image(root / f"field_{k}.png", kind, size=(40, 50), seed=k)
        write_voc(root / f"field_{k}.xml", f"field_{k}.png", (40, 50),
                  [("Living Cell", 3, 4, 12, 20), ("Dead Cell", 20, 10, 30, 25)],
                  path_text=f"{annotator_dir}\\field_{k}.png")
    return greys


def test_every_png_flavour_with_class_map(tmp_path) -> None:
    greys = _public_like(tmp_path / "set")
    table = read_voc(str(tmp_path / "set"), class_map=MAP)
    assert_sample_table(table)
    assert len(table) == 8 and sorted(table["label"].unique()) == ["dead", "live"]
    assert set(table["region_kind"]) == {"box"}
    first = table.iloc[0]
    # VOC 1-based inclusive [3, 12] -> 0-based half-open [2, 12)
    assert (first.x0, first.y0, first.x1, first.y1) == (2.0, 3.0, 12.0, 20.0)
    assert first.source_label == "Living Cell" and first.truncated == 1 and first.difficult == 0
    assert (table["image_width"] == 50).all() and (table["image_height"] == 40).all()
    # group = the source image; sample ids stable and unique per image
    assert table.groupby("group")["sample_id"].apply(list)["field_0.png"] == ["field_0.png#0", "field_0.png#1"]
    for k, kind in enumerate(KINDS):  # every flavour decodes to its grey content (palette expanded)
        np.testing.assert_array_equal(read_image(tmp_path / "set" / f"field_{k}.png"), greys[kind])
    again = read_voc(str(tmp_path / "set"), class_map=MAP)
    assert again["sample_id"].tolist() == table["sample_id"].tolist()


def test_separate_images_folder_and_names_resolved_by_file_name(tmp_path) -> None:
    write_image(tmp_path / "imgs" / "a" / "one.png", "grey8")
    write_image(tmp_path / "imgs" / "two.png", "grey16")
    write_voc(tmp_path / "ann" / "one.xml", "one.png", (48, 64), [("live", 1, 1, 10, 10)],
              path_text="/home/other/machine/one.png")
    write_voc(tmp_path / "ann" / "two.xml", "", (48, 64), [("dead", 1, 1, 10, 10)],
              path_text="/mnt/elsewhere/two.png")  # empty <filename>: the <path>'s name is used
    table = read_voc(str(tmp_path / "ann"), images=str(tmp_path / "imgs"))
    assert sorted(table["group"]) == ["a/one.png", "two.png"]
    with pytest.raises(SourceError, match=r"not found .*set data.images"):
        read_voc(str(tmp_path / "ann"))  # images are not next to the xml files


def test_border_box_kept_outside_box_refused(tmp_path) -> None:
    write_image(tmp_path / "s" / "f.png", "rgb", size=(40, 50))
    write_voc(tmp_path / "s" / "f.xml", "f.png", (40, 50), [("live", 1, 1, 8, 8), ("dead", 45, 30, 60, 48)])
    table = read_voc(str(tmp_path / "s"))
    assert table.iloc[1][["x0", "y0", "x1", "y1"]].tolist() == [44.0, 29.0, 60.0, 48.0]  # reaches past 50x40
    write_voc(tmp_path / "s" / "f.xml", "f.png", (40, 50), [("live", 1, 1, 8, 8), ("dead", 70, 50, 90, 60)])
    with pytest.raises(SourceError, match=r"1 box\(es\) lie entirely outside their image: f.png#1"):
        read_voc(str(tmp_path / "s"))


def test_image_without_boxes_is_reported_and_gives_no_sample(tmp_path, caplog) -> None:
    _public_like(tmp_path / "s")
    write_image(tmp_path / "s" / "empty.png", "grey8")
    write_voc(tmp_path / "s" / "empty.xml", "empty.png", (48, 64), [])
    write_image(tmp_path / "s" / "no_xml.png", "grey8")
    (tmp_path / "s" / "._field_0.xml").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    with caplog.at_level(logging.WARNING):
        table = read_voc(str(tmp_path / "s"), class_map=MAP)
    assert len(table) == 8 and not table["path"].str.contains("empty|no_xml").any()
    assert table.attrs["import_report"]["left_out"]["image(s) whose xml has no box"] == 1
    assert table.attrs["import_report"]["left_out"]["image(s) without an xml file"] == 1
    assert table.attrs["import_report"]["left_out"]["hidden .xml file(s)"] == 1
    assert "left out 1 image(s) whose xml has no box: empty.xml" in caplog.text


def test_two_class_names_with_spaces_used_as_written_without_map(tmp_path) -> None:
    _public_like(tmp_path / "s")
    table = read_voc(str(tmp_path / "s"))
    assert sorted(table["label"].unique()) == ["Dead Cell", "Living Cell"]


def test_unknown_class_stops_with_names_found_and_the_fix(tmp_path) -> None:
    _public_like(tmp_path / "s")
    write_image(tmp_path / "s" / "x.png", "grey8")
    write_voc(tmp_path / "s" / "x.xml", "x.png", (48, 64), [("Debris", 1, 1, 5, 5)])
    with pytest.raises(SourceError) as err:
        read_voc(str(tmp_path / "s"), class_map=MAP)
    msg = str(err.value)
    assert "\n" not in msg
    assert "class name(s) Debris" in msg and "['Dead Cell', 'Debris', 'Living Cell']" in msg
    assert "data.class_map='{Dead Cell: dead, Debris: <class>, Living Cell: live}'" in msg
    # mapping it to null leaves those boxes out, counted
    table = read_voc(str(tmp_path / "s"), class_map={**MAP, "Debris": None})
    assert len(table) == 8
    assert table.attrs["import_report"]["left_out"]["box(es) of classes mapped to null in data.class_map"] == 1


@pytest.mark.parametrize("content, match", [
    ("<annotation><object>", "not valid XML"),
    ("<coco/>", "not a Pascal-VOC file"),
    ("<annotations><image name='f.png'/></annotations>", "CVAT's own XML: export the task as Pascal VOC"),
    ("<annotation><filename>f.png</filename><object><name>live</name></object></annotation>", "no <bndbox>"),
    ("<annotation><filename>f.png</filename><object><name>live</name><bndbox><xmin>a</xmin></bndbox>"
     "</object></annotation>", "bad <bndbox>"),
])
def test_bad_xml_is_one_clear_line(tmp_path, content, match) -> None:
    write_image(tmp_path / "s" / "f.png", "grey8")
    (tmp_path / "s" / "f.xml").write_text(content)
    with pytest.raises(SourceError, match=match) as err:
        read_voc(str(tmp_path / "s"))
    assert "f.xml" in str(err.value) and "\n" not in str(err.value)


def test_options_errors(tmp_path) -> None:
    with pytest.raises(SourceError, match="data.annotations is not set"):
        read_voc(None)
    with pytest.raises(SourceError, match="folder not found"):
        read_voc(str(tmp_path / "nope"))
    (tmp_path / "e").mkdir()
    with pytest.raises(SourceError, match="no .xml file found"):
        read_voc(str(tmp_path / "e"))
    _public_like(tmp_path / "s")
    write_voc(tmp_path / "s" / "copy.xml", "field_0.png", (40, 50), [("Living Cell", 1, 1, 5, 5)])
    with pytest.raises(SourceError, match="annotated by two files"):
        read_voc(str(tmp_path / "s"))


def test_empty_box_refused_and_size_mismatch_warned(tmp_path, caplog) -> None:
    write_image(tmp_path / "s" / "f.png", "grey8", size=(40, 50))
    write_voc(tmp_path / "s" / "f.xml", "f.png", (80, 100), [("live", 10, 10, 5, 20)])
    with pytest.raises(SourceError, match="x1 <= x0"):
        read_voc(str(tmp_path / "s"))
    write_voc(tmp_path / "s" / "f.xml", "f.png", (80, 100), [("live", 1, 1, 5, 20)])
    with caplog.at_level(logging.WARNING):
        read_voc(str(tmp_path / "s"))
    assert "f.xml says 100x80, image is 50x40" in caplog.text
