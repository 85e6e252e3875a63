"""Sample-table validation, group-aware splits (fractions, explicit split, k-fold, leave-one-group-out),
the leakage and class pre-flight checks, and duplicate grouping in the generic DataModule."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from stainfree.data import splits
from stainfree.data.duplicates import DuplicateImagesError
from stainfree.data.module import SampleDataModule
from stainfree.data.samples import SampleTableError, validate_samples
from stainfree.utils.errors import UserError


def table(n_groups: int = 12, per_group: int = 3, classes=("live", "dead")) -> pd.DataFrame:
    rows = [{"path": f"/img/g{g}.png", "label": classes[g % len(classes)], "group": f"g{g}"}
            for g in range(n_groups) for _ in range(per_group)]
    return pd.DataFrame(rows).assign(split="")


def test_validate_samples_errors(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 10), np.uint8))
    ok = validate_samples(pd.DataFrame({"path": ["a.png", "a.png"], "label": [" live", "dead"]}), "t.csv", root=tmp_path)
    assert ok["group"].tolist() == ["a.png", "a.png"] and ok["sample_id"].tolist() == ["a.png#0", "a.png#1"]
    assert ok["label"].tolist() == ["live", "dead"] and ok["region_kind"].tolist() == ["image", "image"]
    cases = [
        (pd.DataFrame(), r"^t.csv: gives no samples"),
        (pd.DataFrame({"path": ["a.png"]}), r"missing column\(s\) \['label'\]"),
        (pd.DataFrame({"path": ["a.png", "a.png"], "label": ["x", ""]}), r"1 row\(s\) have no label \(rows 1\)"),
        (pd.DataFrame({"path": [f"m{i}.png" for i in range(7)], "label": "x"}),
         r"7 image file\(s\) do not exist: .*m0.png, .*m4.png \(\+2 more\); fix the paths"),
        (pd.DataFrame({"path": ["a.png"], "label": ["x"], "x0": [5], "y0": [1], "x1": [5], "y1": [9]}),
         r"boxes with x1 <= x0"),
        (pd.DataFrame({"path": ["a.png"], "label": ["x"], "x0": [5], "y0": [1], "x1": [None], "y1": [9]}),
         r"some box coordinates empty"),
        (pd.DataFrame({"path": ["a.png"], "label": ["x"], "x0": [50], "y0": [1], "x1": [60], "y1": [9],
                       "image_width": [10], "image_height": [10]}), r"entirely outside their image"),
        (pd.DataFrame({"path": ["a.png"] * 2, "label": ["x"] * 2, "sample_id": ["s", "s"]}), r"duplicated sample_id"),
        (pd.DataFrame({"path": ["a.png"], "label": ["x"], "split": ["training"]}), r"\['training'\] are not one of"),
    ]
    for frame, message in cases:
        with pytest.raises(SampleTableError, match=message):
            validate_samples(frame, "t.csv", root=tmp_path)


def test_fraction_split_is_by_group_stratified_and_seeded() -> None:
    cfg = splits.SplitConfig(train=0.5, val=0.25, test=0.25, seed=3)
    a = splits.assign_splits(table(), cfg)
    assert (a.groupby("group")["split"].nunique() == 1).all()
    per = a.drop_duplicates("group").groupby(["split", "label"]).size()
    assert per.to_dict() == {(s, c): 2 for s in ("test", "train", "val") for c in ("dead", "live")}  # 6 per class
    assert a["split"].tolist() == splits.assign_splits(table(), cfg)["split"].tolist()
    assert a["split"].tolist() != splits.assign_splits(table(), splits.SplitConfig(seed=4))["split"].tolist()
    splits.check_leakage(a)


def test_explicit_split_is_honoured_and_mixed_groups_refused() -> None:
    t = table()
    t.loc[t["group"].isin(["g0", "g1"]), "split"] = "test"
    a = splits.assign_splits(t, splits.SplitConfig(train=0.8, val=0.2, test=0.0))
    assert set(a.loc[a["group"].isin(["g0", "g1"]), "split"]) == {"test"}
    assert set(a.loc[~a["group"].isin(["g0", "g1"]), "split"]) == {"train", "val"}
    t.loc[0, "split"] = "train"
    with pytest.raises(splits.LeakageError, match=r"puts group\(s\) g0 in several splits"):
        splits.assign_splits(t, splits.SplitConfig())


def test_group_k_fold_tests_every_group_once() -> None:
    tested = []
    for fold in range(4):
        a = splits.assign_splits(table(), splits.SplitConfig(n_folds=4, fold=fold, seed=1))
        splits.check_leakage(a)
        assert set(a["split"]) == {"train", "val", "test"}
        tested += sorted(a.loc[a["split"] == "test", "group"].unique())
    assert sorted(tested) == sorted(f"g{g}" for g in range(12))
    with pytest.raises(UserError, match=r"data.split.fold=4 must be in 0..3; sweep it with -m data.split.fold=0,1,2,3"):
        splits.SplitConfig.from_config({"n_folds": 4, "fold": 4})


def test_leave_one_group_out_and_group_regex() -> None:
    a = splits.assign_splits(table(), splits.SplitConfig(leave_out="g5"))
    assert a.loc[a["split"] == "test", "group"].unique().tolist() == ["g5"]
    with pytest.raises(UserError, match="leave_out=g99 is not a group"):
        splits.assign_splits(table(), splits.SplitConfig(leave_out="g99"))
    t = pd.DataFrame({"path": ["/p/plate1_A01_f1.png", "/p/plate1_A01_f2.png", "/p/plate2_B03_f1.png"]})
    assert splits.groups_from_names(t, r"^(plate\d+_[A-H]\d+)_").tolist() == ["plate1_A01"] * 2 + ["plate2_B03"]
    with pytest.raises(UserError, match=r"matches no group in 1 file name\(s\), e.g. x.png"):
        splits.groups_from_names(pd.DataFrame({"path": ["/p/x.png"]}), r"^(plate\d+)_")
    with pytest.raises(UserError, match="exactly one capture group"):
        splits.SplitConfig(group_regex="plate").check()


def test_leakage_over_all_three_pairs_and_class_preflight() -> None:
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        t = pd.DataFrame({"group": ["g", "g", "h"], "split": [a, b, "train"], "image_hash": ["1", "2", "3"]})
        with pytest.raises(splits.LeakageError, match=rf"1 group\(s\) in both {a} and {b} \(e.g. g\)"):
            splits.check_leakage(t)
    same = pd.DataFrame({"group": ["a", "b"], "split": ["train", "test"], "image_hash": ["h", "h"]})
    with pytest.raises(splits.LeakageError, match=r"image\(s\) with identical content in both train and test"):
        splits.check_leakage(same)
    t = pd.DataFrame({"label": ["live", "dead", "live"], "split": ["train", "train", "val"]})
    with pytest.raises(splits.MissingClassError, match=r"^the val split has no 'dead' samples"):
        splits.check_every_class(t, ["live", "dead"], ("train", "val"))
    with pytest.raises(splits.MissingClassError, match=r"^the test split is empty"):
        splits.check_every_class(pd.DataFrame({"label": ["live", "dead"] * 2, "split": ["train"] * 2 + ["val"] * 2}),
                                 ["live", "dead"])


def _copies(tmp_path: Path) -> Path:
    """12 fields, 2 boxes each; field 3 saved again as 'copy.png', field 5 flipped + brighter as 'flip.png'."""
    rng = np.random.default_rng(4)
    rows = []
    fields = []
    for i in range(12):
        img = cv2.GaussianBlur(rng.integers(0, 255, (64, 80), dtype=np.uint8), (0, 0), 1.5)
        fields.append(img)
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), img)
    cv2.imwrite(str(tmp_path / "copy.png"), fields[3])
    cv2.imwrite(str(tmp_path / "flip.png"), np.clip(fields[5][::-1].astype(int) + 25, 0, 255).astype(np.uint8))
    for name in [f"f{i:02d}.png" for i in range(12)] + ["copy.png", "flip.png"]:
        for k in range(2):
            rows.append({"path": name, "label": "live" if (len(rows) // 2) % 2 else "dead",
                         "x0": 10 + 30 * k, "y0": 10, "x1": 34 + 30 * k, "y1": 40})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


def test_copies_are_grouped_or_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv = _copies(tmp_path)

    def dm(**kw) -> SampleDataModule:
        return SampleDataModule(source="table", table=csv, input_size=16, cache_dir=tmp_path / "cache",
                                split={"train": 0.5, "val": 0.25, "test": 0.25, "seed": 2}, **kw)

    exact = dm()
    exact.setup("fit")
    t = exact.sample_table()
    assert t.loc[t["path"].str.endswith(("f03.png", "copy.png")), "group"].nunique() == 1
    assert t.loc[t["path"].str.endswith(("f05.png", "flip.png")), "group"].nunique() == 2  # near grouping is off
    assert "1 image(s) are exact copies of others" in capsys.readouterr().out
    near = dm(duplicates={"near": True})
    near.setup("fit")
    t = near.sample_table()
    assert t.loc[t["path"].str.endswith(("f05.png", "flip.png")), "split"].nunique() == 1
    out = capsys.readouterr().out
    assert "near-duplicate grouping (dihedral correlation >= 0.95): 1 cluster(s) of similar images, 1 group(s) merged" in out
    with pytest.raises(DuplicateImagesError, match=r"^2 images are exact copies of each other \(.*f03.png = .*copy.png\)"):
        dm(duplicates={"exact": "refuse"}).setup("fit")


def test_unknown_options_and_class_order(tmp_path: Path) -> None:
    csv = _copies(tmp_path)
    with pytest.raises(UserError, match=r"^data.margin is not an option of data source 'table'; its options are "
                                        r"\['table', 'root'\], plus the common keys"):
        SampleDataModule(source="table", table=csv, margin=0.2)
    with pytest.raises(UserError, match="data.source='labelme' is not a known source"):
        SampleDataModule(source="labelme")
    with pytest.raises(UserError, match=r"data source 'table' needs data.table"):
        SampleDataModule(source="table")
    kw = dict(source="table", table=csv, input_size=16, cache_dir=tmp_path / "c", split={"seed": 2})
    dm = SampleDataModule(**kw)
    dm.setup("fit")
    assert dm.class_names == ["live", "dead"] and dm.positive_class == "dead"  # positive class last
    with pytest.raises(SampleTableError, match=r"label\(s\) \['dead'\] that data.classes=\['live'\] does not list"):
        SampleDataModule(**kw, classes=["live"]).setup("fit")
    with pytest.raises(SampleTableError, match=r"data.num_classes=3 but the data has 2 classes .* set data.num_classes=2"):
        SampleDataModule(**kw, num_classes=3).setup("fit")
