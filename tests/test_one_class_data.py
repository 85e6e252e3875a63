"""Issue 8 case 5: data with a single class stops before training with one line, for every route.

A celldeath folder of one treatment is covered by test_celldeath_datamodule.py::
test_a_folder_with_one_class_stops_before_training; here the importers and JIMT-1.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures_images import KINDS, write_image, write_voc
from stainfree.data.module import SampleDataModule
from stainfree.data.splits import MissingClassError
from test_jimt_datamodule import make_dm


def _setup(**options) -> SampleDataModule:
    dm = SampleDataModule(input_size=16, num_workers=0, **options)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _live_crops(root: Path) -> Path:
    for k in range(12):
        write_image(root / "live" / f"c{k}.png", KINDS[k % len(KINDS)], size=(30, 40), seed=k)
    return root


@pytest.mark.parametrize("num_classes", [None, 1, 2])
def test_folders_with_one_class_folder_stop_with_one_line(num_classes, tmp_path: Path) -> None:
    """Case 5 (folders): one class folder used to train a 1-class model (and num_classes=2 suggested num_classes=1)."""
    root = _live_crops(tmp_path / "crops")
    with pytest.raises(MissingClassError, match=r"^the data has 1 class\(es\) \['live'\]: a classifier needs at "
                                                r"least two") as err:
        _setup(source="folders", root=str(root), num_classes=num_classes, cache_dir=tmp_path / "cache",
               report_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_voc_with_boxes_of_one_class_stops_with_one_line(tmp_path: Path) -> None:
    """Case 5 (voc): every box labelled 'Living Cell' is refused, not trained as a 1-class model."""
    for k in range(12):
        write_image(tmp_path / "voc" / f"f{k}.png", KINDS[k % len(KINDS)], size=(40, 50), seed=k)
        write_voc(tmp_path / "voc" / f"f{k}.xml", f"f{k}.png", (40, 50),
                  [("Living Cell", 3, 4, 12, 20), ("Living Cell", 20, 10, 30, 25)])
    with pytest.raises(MissingClassError, match=r"^the data has 1 class\(es\) \['Living Cell'\]"):
        _setup(source="voc", annotations=str(tmp_path / "voc"), num_classes=1, cache_dir=tmp_path / "cache",
               report_dir=tmp_path)


def test_class_map_merging_both_classes_stops_with_one_line(tmp_path: Path) -> None:
    """Case 5 (folders + class_map): mapping both folders to one name leaves one class: refused."""
    root = _live_crops(tmp_path / "crops")
    for k in range(12):
        write_image(root / "dead" / f"c{k}.png", KINDS[k % len(KINDS)], size=(30, 40), seed=50 + k)
    with pytest.raises(MissingClassError, match=r"\['cell'\].*data.class_map"):
        _setup(source="folders", root=str(root), class_map={"live": "cell", "dead": "cell"}, num_classes=None,
               cache_dir=tmp_path / "cache", report_dir=tmp_path)


def test_jimt_with_only_live_patches_stops_before_training(tmp_path: Path) -> None:
    """Case 5 (JIMT-1, refused already before issue 8; kept so it stays so): every window live -> one line."""
    dm = make_dm(tmp_path, labels={"method": "fixed", "live_below": 1e9, "dead_above": 2e9},
                 synthetic={"frames_notreat": 4, "frames_doxo": 1, "seed": 2, "examples_per_class": 2})
    dm.prepare_data()
    with pytest.raises(MissingClassError, match=r"^the train split has no 'dead' samples.*labels config") as err:
        dm.setup("fit")
    assert "\n" not in str(err.value)
