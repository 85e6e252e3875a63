"""The `table` and `pairs` sources: their errors, and `data=pairs` / `data=table` through train.py and predict."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import tifffile

from stainfree.data.jimt.synthetic import generate_frame
from stainfree.data.module import SampleDataModule
from stainfree.data.samples import SampleTableError
from stainfree.tasks.train import train

FIXED = {"method": "fixed", "live_below": 259.0, "dead_above": 397.0}


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 synthetic fields as <well>/<site>_BF.tif + <site>_PI.tif in two well folders."""
    root = tmp_path_factory.mktemp("plate")
    for i in range(8):
        f = generate_frame("notreat", i, seed=21, n_frames=8)
        well = root / ("A01" if i < 4 else "B02")
        well.mkdir(exist_ok=True)
        tifffile.imwrite(well / f"s{i}_BF.tif", f.bf)
        tifffile.imwrite(well / f"s{i}_PI.tif", f.pi)
    return root


def test_pairs_errors(plate: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    messy = tmp_path / "messy"
    shutil.copytree(plate, messy)
    (messy / "A01" / "s0_PI.tif").unlink()
    kw = dict(source="pairs", images=messy, input_size=16, cache_dir=tmp_path / "c", labels=FIXED, stride=224)
    with pytest.raises(SampleTableError, match=r"^1 file\(s\) under .*messy have no partner channel: A01/s0_BF.tif"):
        SampleDataModule(**kw).setup("fit")
    dm = SampleDataModule(**kw, on_unpaired="warn")
    dm.setup("fit")
    assert "leaving out 1 file(s)" in capsys.readouterr().out
    assert not dm.sample_table()["path"].str.endswith("s0_BF.tif").any()
    assert dm.sample_table()["group"].str.match(r"^(A01|B02)/s\d_BF\.tif$").all()
    with pytest.raises(SampleTableError, match="need both data.bf_channel and data.fl_channel"):
        SampleDataModule(**{**kw, "bf_channel": 0}).setup("fit")
    with pytest.raises(SampleTableError, match="svm is offered by the JIMT-1 manifest route"):
        SampleDataModule(**kw, empty_filter={"method": "svm", "examples_dir": str(tmp_path)}).setup("fit")
    with pytest.raises(SampleTableError, match=r"no file matches data.bf_pattern='\*_DIC.tif'"):
        SampleDataModule(**kw, bf_pattern="*_DIC.tif").setup("fit")


def test_pairs_gmm_labels_and_thresholds(plate: Path, tmp_path: Path) -> None:
    dm = SampleDataModule(source="pairs", images=plate, input_size=16, cache_dir=tmp_path / "c", stride=112,
                          labels={"method": "gmm", "seed": 0, "reference": "^A01/"}, classes=["live", "dead"])
    dm.setup("fit")
    thr = dm.pi_thresholds
    table = dm.sample_table()
    assert thr["live_below"] < thr["dead_above"]
    assert (table.loc[table["label"] == "live", "pi_mean"] < thr["live_below"]).all()
    assert (table.loc[table["label"] == "dead", "pi_mean"] > thr["dead_above"]).all()
    with pytest.raises(SampleTableError, match=r"reference='\^C' matches no bright-field file"):
        SampleDataModule(source="pairs", images=plate, input_size=16, cache_dir=tmp_path / "c",
                         labels={"reference": "^C"}).setup("fit")


def test_pairs_and_table_train_through_hydra(plate: Path, tmp_path: Path, compose_cfg_in) -> None:
    overrides = ["experiment=demo", "debug=fdr", "trainer=cpu", "model.input_size=32", "data.num_workers=0", "logger=csv"]
    cfg = compose_cfg_in(tmp_path, overrides + ["data=pairs", f"data.images={plate}", "data.stride=224",
                                                "data.labels.method=fixed", "data.labels.live_below=259",
                                                "data.labels.dead_above=397"])
    metrics, objects = train(cfg)
    assert "test/bal_acc" in metrics and (tmp_path / "run" / "split_report.csv").is_file()
    dm = objects["datamodule"]
    assert dm.class_names == ["live", "dead"] and dm.preprocess_config()["layout"]["window"] == 224
    rows = dm.sample_table()[["path", "label", "group", "x0", "y0", "x1", "y1"]]
    rows.to_csv(tmp_path / "samples.csv", index=False)
    cfg = compose_cfg_in(tmp_path / "t", overrides + ["data=table", f"data.table={tmp_path / 'samples.csv'}"])
    metrics, objects = train(cfg)
    assert "test/bal_acc" in metrics
    spec = objects["datamodule"].preprocess_config()
    assert spec["layout"] == {"kind": "windows", "window": 224, "stride": 112, "n_tiles": None}  # boxes -> windows
    assert spec["empty_filter"]["statistic"] == "bf8_std"


def test_pairs_checkpoint_predicts_full_fields(plate: Path, tmp_path: Path) -> None:
    from stainfree.tasks.predict import predict
    from test_predict import make_checkpoint

    dm = SampleDataModule(source="pairs", images=plate, input_size=32, cache_dir=tmp_path / "c", stride=224,
                          labels=FIXED, classes=["live", "dead"])
    dm.setup("fit")
    ckpt = make_checkpoint(tmp_path / "pairs.ckpt", dm.preprocess_config())
    bf = tmp_path / "bf"
    bf.mkdir()
    for f in sorted(plate.glob("*/*_BF.tif"))[:2]:
        shutil.copy(f, bf / f.name)
    summary = predict(ckpt, bf, tmp_path / "pred", device="cpu", progress=False, overlays=False)
    patches = pd.read_csv(summary.files["patches"])
    assert summary.n_ok == 2 and len(patches) == 2 * 4 * 6
    assert patches["empty"].any() and not patches["empty"].all()  # the pairs' empty filter runs at predict
