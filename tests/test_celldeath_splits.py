"""Splits by whole field: replicate holdout, leave-one-cell-line-out, within-replicate; leakage check."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stainfree.data.celldeath import synthetic
from stainfree.data.celldeath.datamodule import CellDeathDataModule
from stainfree.data.celldeath.splits import LeakageError, SplitConfig, assign_splits, check_no_leakage


@pytest.fixture(scope="module")
def tlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 lines x 2 treatments x 3 replicates x 3 fields, small (320x240)."""
    root = tmp_path_factory.mktemp("tlm") / "set"
    return synthetic.generate(root, ["PC3", "MCF7", "U2OS"], images_per_group=3, replicates=3, size=(320, 240))


def _dm(root: Path, **kw) -> CellDeathDataModule:
    dm = CellDeathDataModule(root, input_size=16, n_tiles=kw.pop("n_tiles", 4), num_workers=0,
                             synthetic=None, naming={"cell_lines": {"PC3": ["PC3"], "MCF7": ["MCF7"], "U2OS": ["U2OS"]}},
                             **kw)
    dm.setup("fit")
    return dm


def _all(dm: CellDeathDataModule) -> pd.DataFrame:
    return pd.concat([dm.split_table(s) for s in ("train", "val", "test")])


def _assert_fields_in_one_split(dm: CellDeathDataModule) -> None:
    table = _all(dm)
    assert (table.groupby("image_id")["split"].nunique() == 1).all()
    assert (table.groupby("image_id").size() == dm.n_tiles).all()


def test_held_out_replicate(tlm: Path) -> None:
    dm = _dm(tlm, test_replicate="N2", n_tiles=6)
    _assert_fields_in_one_split(dm)
    table = _all(dm)
    assert set(dm.split_table("test")["replicate"]) == {"N2"}
    assert "N2" not in set(dm.split_table("train")["replicate"]) | set(dm.split_table("val")["replicate"])
    fit = table[table["split"] != "test"].drop_duplicates("image_id")
    assert (fit["split"] == "val").sum() == pytest.approx(0.3 * len(fit), abs=2)  # 70/30 by field
    assert _dm(tlm, test_replicate="last").split_table("test")["replicate"].unique().tolist() == ["N3"]


def test_leave_one_cell_line_out(tlm: Path) -> None:
    dm = _dm(tlm, holdout_cell_line="MCF7")
    _assert_fields_in_one_split(dm)
    assert set(dm.split_table("test")["cell_line"]) == {"MCF7"}
    assert len(dm.split_table("test")) == 2 * 3 * 3 * 4  # every MCF7 field, all replicates
    assert "MCF7" not in set(dm.split_table("train")["cell_line"]) | set(dm.split_table("val")["cell_line"])
    with pytest.raises(ValueError, match=r"holdout_cell_line=H9 is not in the data; lines found: \['MCF7', 'PC3', 'U2OS'\]"):
        _dm(tlm, holdout_cell_line="H9")


def test_within_replicate(tlm: Path) -> None:
    dm = _dm(tlm, within_replicate="n1", test_fraction=0.34)
    _assert_fields_in_one_split(dm)
    table = _all(dm)
    assert set(table["replicate"]) == {"N1"}
    for split in ("train", "val", "test"):  # 9 fields per class: each split gets both classes
        assert set(dm.split_table(split)["treatment"]) == {"control", "celldeath"}
    with pytest.raises(ValueError, match="within_replicate=N7 is not in the data"):
        _dm(tlm, within_replicate="N7")


def test_splits_are_seeded(tlm: Path) -> None:
    a, b = _dm(tlm, split_seed=1), _dm(tlm, split_seed=1)
    assert a.split_table("val")["image_id"].tolist() == b.split_table("val")["image_id"].tolist()
    c = _dm(tlm, split_seed=2)
    assert a.split_table("val")["image_id"].tolist() != c.split_table("val")["image_id"].tolist()


def test_leakage_check_names_the_field() -> None:
    table = pd.DataFrame({"image_id": ["a.png", "a.png", "b.png"], "split": ["train", "test", "val"]})
    with pytest.raises(LeakageError, match=r"1 image\(s\).*a\.png"):
        check_no_leakage(table)
    check_no_leakage(table.iloc[1:])


def test_split_config_errors() -> None:
    images = pd.DataFrame({"image_id": ["x", "y"], "target": [0, 1], "cell_line": ["PC3", "PC3"],
                           "replicate": ["N1", "N1"]})
    with pytest.raises(ValueError, match="only replicate N1 is present"):
        assign_splits(images, SplitConfig(test_replicate="last"))
    with pytest.raises(ValueError, match="set only one of"):
        assign_splits(images, SplitConfig(holdout_cell_line="PC3", within_replicate="N1"))
    with pytest.raises(ValueError, match="no replicate token"):
        assign_splits(images.assign(replicate=[None, "N1"]), SplitConfig(test_replicate="N1"))
