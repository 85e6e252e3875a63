"""JimtDataModule contract, class-balanced sampling, and epoch-reproducible augmentation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stainfree.data.jimt.datamodule import JimtDataModule
from stainfree.data.jimt.manifest import ManifestError
from stainfree.data.samplers import EpochWeightedRandomSampler, class_balanced_weights
from stainfree.data.transforms import DihedralAugment


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jimt_dm")


def make_dm(root: Path, **kw) -> JimtDataModule:
    args = dict(manifest=root / "syn" / "manifest.csv", dataset="notreat", cache_dir=root / "cache",
                synthetic={"frames_notreat": 10, "frames_doxo": 2, "seed": 2, "examples_per_class": 4},
                stride=224, input_size=32, batch_size=8, num_workers=0, seed=11)
    args.update(kw)
    return JimtDataModule(**args)


@pytest.fixture(scope="module")
def dm(synthetic_root: Path) -> JimtDataModule:
    d = make_dm(synthetic_root)
    d.prepare_data()  # generates the synthetic set on first use
    d.setup("fit")
    return d


def test_batches_follow_the_contract(dm: JimtDataModule) -> None:
    assert dm.class_names == ["live", "dead"] and dm.num_classes == 2
    for stage, loader in (("fit", dm.train_dataloader()), ("validate", dm.val_dataloader()),
                          ("test", dm.test_dataloader())):
        batch = next(iter(loader))
        assert set(batch) >= {"image", "target", "index"}
        img = batch["image"]
        assert img.dtype == torch.uint8 and img.ndim == 4 and img.shape[1:] == (1, 32, 32)
        assert batch["target"].dtype == torch.int64 and batch["index"].dtype == torch.int64
        table = dm.split_table(stage)
        assert {"target", "frame_id", "dataset", "y", "x", "pi_mean"} <= set(table.columns)
        np.testing.assert_array_equal(table["target"].to_numpy()[batch["index"].numpy()], batch["target"].numpy())
    test = dm.split_table("test")
    np.testing.assert_array_equal(next(iter(dm.test_dataloader()))["index"].numpy(), np.arange(min(8, len(test))))


def test_splits_are_disjoint_by_frame(dm: JimtDataModule) -> None:
    frames = {s: set(dm.split_table(s)["frame_id"]) for s in ("fit", "validate", "test")}
    assert frames["fit"] and frames["validate"] and frames["test"]
    assert not (frames["fit"] & frames["validate"] or frames["fit"] & frames["test"]
                or frames["validate"] & frames["test"])
    assert set(dm.split_table("fit")["dataset"]) == {"notreat"}


def test_summary_and_preprocess_config(dm: JimtDataModule) -> None:
    s = dm.summary().set_index("dataset")
    assert s.loc["notreat", "train_live"] == (dm.split_table("fit")["target"] == 0).sum()
    cfg = dm.preprocess_config()  # PreprocessSpec.to_dict(): what predict needs, stored in checkpoints
    assert cfg["schema"] == 2 and cfg["layout"] == {"kind": "windows", "window": 224, "stride": 224, "n_tiles": None}
    assert cfg["input_size"] == 32 and cfg["source_scale"] == 224 and cfg["to_8bit"]["stretch_8bit"] is True
    assert dm.class_names == ["live", "dead"]
    assert dm.pi_thresholds["live_below"] < dm.pi_thresholds["dead_above"]


def test_weighted_sampler_balances_classes() -> None:
    targets = np.array([0] * 900 + [1] * 100)
    sampler = EpochWeightedRandomSampler(class_balanced_weights(targets), num_samples=20000, seed=0)
    drawn = np.array([i for i, _ in sampler])
    frac_dead = targets[drawn].mean()
    assert 0.47 < frac_dead < 0.53  # unweighted it would be 0.10


def test_sampler_shards_one_epoch_draw_across_ranks() -> None:
    weights = class_balanced_weights(np.array([0] * 50 + [1] * 10))
    full = EpochWeightedRandomSampler(weights, num_samples=40, seed=3)
    ranks = [EpochWeightedRandomSampler(weights, num_samples=40, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for s in (full, *ranks):
        s.set_epoch(7)
    drawn = list(full)
    assert isinstance(full, torch.utils.data.DistributedSampler)  # Lightning keeps it (no wrapper)
    assert [len(list(r)) for r in ranks] == [20, 20] and len(ranks[0]) == 20
    assert list(ranks[0]) == drawn[0::2] and list(ranks[1]) == drawn[1::2]
    assert {e for _, e in drawn} == {7}


def test_same_epoch_same_batches_other_epoch_differs(synthetic_root: Path, dm: JimtDataModule) -> None:
    other = make_dm(synthetic_root)  # a second, independent DataModule on the same cache
    other.setup("fit")

    def first_batch(d: JimtDataModule, epoch: int) -> dict:
        loader = d.train_dataloader()
        d.set_epoch(epoch)
        return next(iter(loader))

    a, b = first_batch(dm, 3), first_batch(other, 3)
    assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
    c = first_batch(dm, 4)
    assert not torch.equal(a["index"], c["index"])
    # same sample, same epoch -> same augmentation; another epoch -> (generally) another one
    ds = dm.train_dataloader().dataset
    assert torch.equal(ds[(5, 3)]["image"], ds[(5, 3)]["image"])
    variants = {ds[(5, e)]["image"].numpy().tobytes() for e in range(40)}
    assert len(variants) > 4


def test_dihedral_augment_reaches_all_eight_symmetries() -> None:
    aug = DihedralAugment()
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    outs = {aug(img, s).tobytes() for s in range(200)}
    assert len(outs) == 8


def test_missing_manifest_without_synthetic_is_a_clear_error(tmp_path: Path) -> None:
    d = JimtDataModule(manifest=tmp_path / "nowhere" / "manifest.csv", cache_dir=tmp_path / "cache")
    with pytest.raises(ManifestError, match=r"nowhere/manifest\.csv"):
        d.prepare_data()


def test_unknown_dataset_and_num_classes(synthetic_root: Path, dm: JimtDataModule) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        make_dm(synthetic_root, num_classes=3)
    with pytest.raises(ValueError, match="notreat"):
        make_dm(synthetic_root, dataset="cisplatin").setup("fit")
    with pytest.raises(ValueError, match="generated with"):
        make_dm(synthetic_root, synthetic={"frames_notreat": 3, "frames_doxo": 0, "seed": 2}).prepare_data()


def test_train_loader_never_ends_on_a_batch_of_one(dm: JimtDataModule) -> None:
    """BatchNorm cannot train on one sample: a lone last draw is dropped, other sizes keep all."""
    from stainfree.data.samplers import drop_lone_last_batch

    assert drop_lone_last_batch(17, 8) and not drop_lone_last_batch(16, 8) and not drop_lone_last_batch(18, 8)
    assert not drop_lone_last_batch(1, 8)
    n = len(dm.split_table("train"))
    dm.batch_size = n - 1  # two batches: n - 1, then 1
    try:
        sizes = [len(b["target"]) for b in dm.train_dataloader()]
    finally:
        dm.batch_size = 8
    assert sizes == [n - 1]
