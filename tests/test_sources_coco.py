"""COCO importer: box conversion, image resolution, class maps, empty images, malformed files."""
from __future__ import annotations

import json

import pytest

from fixtures_images import KINDS, assert_sample_table, write_coco, write_image
from stainfree.data.sources.coco import read_coco
from stainfree.data.sources.common import SourceError

MAP = {"Living Cell": "live", "Dead Cell": "dead"}


def _coco_set(root):
    images = []
    for k, kind in enumerate(KINDS):
        write_image(root / "images" / f"f{k}.png", kind, size=(40, 50), seed=k)
        images.append({"id": 10 + k, "file_name": f"images/f{k}.png", "height": 40, "width": 50})
    write_image(root / "images" / "empty.png", "grey8", size=(40, 50))
    images.append({"id": 99, "file_name": "images/empty.png", "height": 40, "width": 50})
    boxes = [(10 + k, name, [2.0 + k, 3.0, 10.0, 12.5]) for k in range(4) for name in MAP]
    boxes.append((13, "Dead Cell", [44.0, 30.0, 20.0, 20.0]))  # reaches past the 50x40 border
    return write_coco(root / "coco.json", images, boxes)


def test_boxes_flavours_border_and_empty_image(tmp_path) -> None:
    path = _coco_set(tmp_path)
    table = read_coco(str(path), class_map=MAP)
    assert_sample_table(table)
    assert len(table) == 9 and table["label"].value_counts().to_dict() == {"dead": 5, "live": 4}
    first = table.iloc[0]
    assert (first.x0, first.y0, first.x1, first.y1) == (2.0, 3.0, 12.0, 15.5)  # [x, y, w, h] -> corners
    assert first.group == "images/f0.png" and first.sample_id == "images/f0.png#0"
    assert first.iscrowd == 0 and first.annotation_id == 1 and first.source_label == "Living Cell"
    assert table.iloc[-1][["x1", "y1"]].tolist() == [64.0, 50.0]  # partly outside: kept
    assert table.attrs["import_report"]["left_out"]["image(s) without a box"] == 1


def test_file_names_from_another_machine_fall_back_to_the_images_folder(tmp_path) -> None:
    path = _coco_set(tmp_path)
    doc = json.loads(path.read_text())
    for entry in doc["images"]:
        entry["file_name"] = "D:\\export\\" + entry["file_name"].split("/")[-1]
    path.write_text(json.dumps(doc))
    # found by file name anywhere under the json's folder, or under data.images
    assert read_coco(str(path), class_map=MAP)["group"].iloc[0] == "images/f0.png"
    table = read_coco(str(path), images=str(tmp_path / "images"), class_map=MAP)
    assert table["group"].iloc[0] == "f0.png" and len(table) == 9
    (tmp_path / "images" / "f1.png").rename(tmp_path / "f1_moved.png")
    with pytest.raises(SourceError, match=r"1 image\(s\) listed in coco.json not found .*\(D:\\export\\f1.png\)"
                                          r".*set data.images"):
        read_coco(str(path), images=str(tmp_path / "images"))


def test_spaces_unknown_class_and_null(tmp_path) -> None:
    path = _coco_set(tmp_path)
    assert sorted(read_coco(str(path))["label"].unique()) == ["Dead Cell", "Living Cell"]
    with pytest.raises(SourceError, match=r"class name\(s\) Dead Cell in .*coco.json are not in data.class_map"):
        read_coco(str(path), class_map={"Living Cell": "live"})
    table = read_coco(str(path), class_map={"Living Cell": "live", "Dead Cell": None})
    assert set(table["label"]) == {"live"}


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[]", "a COCO file is a JSON object"),
    ('{"images": []}', r"no \['annotations', 'categories'\] list"),
    ('{"images": [{"id": 1, "file_name": "images/f0.png"}], "categories": [{"id": 1, "name": "live"}],'
     ' "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4]}]}', "name an image_id"),
    ('{"images": [{"id": 1, "file_name": "images/f0.png"}], "categories": [{"id": 1, "name": "live"}],'
     ' "annotations": [{"id": 5, "image_id": 1, "category_id": 7, "bbox": [0, 0, 4, 4]}]}', "category id"),
    ('{"images": [{"id": 1, "file_name": "images/f0.png"}], "categories": [{"id": 1, "name": "live"}],'
     ' "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0]}]}', "has bbox"),
])
def test_bad_json_is_one_clear_line(tmp_path, text, match) -> None:
    write_image(tmp_path / "images" / "f0.png", "grey8")
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(SourceError, match=match) as err:
        read_coco(str(tmp_path / "c.json"))
    assert "c.json" in str(err.value) and "\n" not in str(err.value)


def test_unlisted_images_next_to_listed_ones_are_reported_others_not(tmp_path) -> None:
    path = _coco_set(tmp_path)
    write_image(tmp_path / "images" / "forgotten.png", "grey8")
    write_image(tmp_path / "crops" / "live" / "c.png", "grey8")  # another dataset under the json's folder
    table = read_coco(str(path), class_map=MAP)
    assert table.attrs["import_report"]["left_out"]["image(s) next to listed ones that the json does not list"] == 1
