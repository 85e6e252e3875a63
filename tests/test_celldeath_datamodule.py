"""CellDeathDataModule: the batch contract of docs/ARCHITECTURE.md, tasks, class order, reports, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stainfree.data.celldeath import synthetic
from stainfree.data.celldeath.datamodule import CellDeathDataModule
from stainfree.data.splits import MissingClassError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "data" / "celldeath-u2os" / "full"
SYN = dict(lines=["PC3", "MCF7"], images_per_group=2, replicates=2, size=[320, 240])


def _dm(tmp_path: Path, **kw) -> CellDeathDataModule:
    kw.setdefault("synthetic", SYN)
    return CellDeathDataModule(tmp_path / "tlm", input_size=32, num_workers=0, batch_size=4,
                               cache_dir=tmp_path / "cache", report_dir=tmp_path / "run", **kw)


def test_batch_contract_and_split_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dm = _dm(tmp_path, weighted_sampler=True, test_replicate="N2")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.class_names == ["control", "celldeath"] and dm.num_classes == 2
    for loader, stage in ((dm.train_dataloader(), "train"), (dm.test_dataloader(), "test")):
        batch = next(iter(loader))
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (1, 32, 32)
        assert batch["target"].dtype == torch.int64 and batch["index"].dtype == torch.int64
        table = dm.split_table(stage)
        assert batch["target"].tolist() == table["target"].iloc[batch["index"].numpy()].tolist()
    # unaugmented test images are exactly the cached tiles of the rows ``index`` points at
    test = dm.split_table("test")
    batch = next(iter(dm.test_dataloader()))
    assert torch.equal(batch["image"][2, 0], torch.from_numpy(np.asarray(dm.store.array[test["cache_row"].iloc[2]])))
    assert batch["index"].tolist() == [0, 1, 2, 3]
    cols = {"path", "image_id", "tile", "cell_line", "treatment", "time", "replicate", "target"}
    assert cols <= set(test.columns)
    summary = dm.summary()
    assert summary.loc["test", "total"] == len(test) == 2 * 2 * 2 * 4
    assert summary[["control", "celldeath"]].sum().sum() == len(dm.split_table("train")) + len(dm.split_table("val")) + len(test)
    out = capsys.readouterr().out
    assert "held-out replicate (test = N2)" in out and "cell_line" in out
    assert (tmp_path / "run" / "celldeath_split_report.csv").is_file()
    assert (tmp_path / "run" / "celldeath_split_table.csv").is_file()
    pre = dm.preprocess_config()  # PreprocessSpec.to_dict(), stored in checkpoints
    assert pre["layout"]["kind"] == "grid" and pre["layout"]["n_tiles"] == 4 and pre["input_size"] == 32
    assert pre["to_8bit"]["stretch_8bit"] is False and pre["region"]["shape"] == "squish"
    assert pre["source_scale"] == pytest.approx((160 * 120) ** 0.5)  # 320x240 fields -> 160x120 tiles
    # reports are never overwritten: a second setup writes next to them
    dm2 = _dm(tmp_path, test_replicate="N2")
    dm2.setup("fit")
    assert (tmp_path / "run" / "celldeath_split_report_1.csv").is_file()


def test_augmentation_is_seeded_per_epoch_and_sample(tmp_path: Path) -> None:
    dm = _dm(tmp_path)
    dm.setup("fit")
    ds = dm.train_dataloader().dataset
    a, b, c = ds[(3, 0)]["image"], ds[(3, 0)]["image"], ds[(3, 1)]["image"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.uint8 and a.shape == (1, 32, 32)


def test_all_vs_all_classes_and_num_classes_check(tmp_path: Path) -> None:
    dm = _dm(tmp_path, task="all_vs_all", num_classes=4)
    dm.setup("fit")
    assert dm.class_names == ["MCF7_celldeath", "MCF7_control", "PC3_celldeath", "PC3_control"]
    table = dm.split_table("train")
    assert (table["target"] == [dm.class_names.index(f"{ln}_{t}") for ln, t in
                                zip(table["cell_line"], table["treatment"])]).all()
    with pytest.raises(ValueError, match=r"data.num_classes=14 .* set data.num_classes=4"):
        _dm(tmp_path, task="all_vs_all", num_classes=14).setup("fit")
    with pytest.raises(ValueError, match="holdout_cell_line needs data.task=cpt_vs_dmso"):
        _dm(tmp_path, task="all_vs_all", holdout_cell_line="PC3")


def test_time_points_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"time_points=\[3\] selects no image; the folder has time points \[1\]"):
        _dm(tmp_path, time_points=[3]).setup("fit")
    with pytest.raises(ValueError, match="n_tiles=3"):
        _dm(tmp_path, n_tiles=3)
    with pytest.raises(ValueError, match="task='binary'"):
        _dm(tmp_path, task="binary")
    with pytest.raises(FileNotFoundError, match="data.root="):
        CellDeathDataModule(tmp_path / "nowhere").setup("fit")


def test_real_u2os_within_replicate() -> None:
    if not REAL.is_dir():
        pytest.skip("../shared/data/celldeath-u2os is not present")
    # replicate N1 holds 22 DMSO but only 2 CPT fields: val and test cannot both get one, so the
    # pre-flight stops (before the data contract this trained with a one-class val split, AUROC NaN)
    with pytest.raises(MissingClassError, match=r"^the val split has no 'celldeath' samples.*change the split"):
        CellDeathDataModule(REAL, input_size=16, within_replicate="N1", time_points=[1], num_workers=0).setup("fit")
    dm = CellDeathDataModule(REAL, input_size=16, within_replicate="N1", time_points=[1], num_workers=0,
                             val_fraction=0.0)
    dm.setup("fit")
    table = dm.sample_table()
    assert set(table["replicate"]) == {"N1"} and table["image_id"].nunique() == 24
    assert (table.groupby("image_id")["split"].nunique() == 1).all()
    assert set(dm.split_table("test")["treatment"]) == {"control", "celldeath"}


def test_a_folder_with_one_class_stops_before_training(tmp_path: Path) -> None:
    """Issue 8: a folder of CPT fields only used to train and report bal_acc 1.0 with AUROC NaN."""
    root = synthetic.generate(tmp_path / "tlm", ["PC3"], images_per_group=3, replicates=3, size=(160, 120))
    for dmso in root.glob("*DMSO*"):
        dmso.unlink()
    dm = CellDeathDataModule(root, input_size=16, num_workers=0, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"^the train split has no 'control' samples .*change the split settings"):
        dm.setup("fit")
