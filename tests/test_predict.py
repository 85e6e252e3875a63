"""predict on raw frames: a checkpoint made in-test, a folder of mixed files with one corrupt."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import tifffile
import torch
from torch.utils.data import DataLoader

from stainfree.inference.overlay import LEGEND_MIN_WIDTH
from stainfree.inference.predictor import PredictError
from stainfree.inference.results_log import ResumeError
from stainfree.models.checkpoint import CheckpointError
from stainfree.models.classifier import LiveDeadClassifier
from stainfree.tasks.predict import predict

ROOT = Path(__file__).resolve().parents[1]
GRID_PREPROCESS = {"study": "celldeath", "window": None, "n_tiles": 4, "grid": [2, 2], "input_size": 32,
                   "resize": "squish", "to_8bit": {"low_pct": 0.5, "high_pct": 99.5}}


def make_checkpoint(path: Path, preprocess: dict, class_names=("live", "dead"), size: int = 32) -> Path:
    """A real Lightning checkpoint of a tiny classifier trained for one step, with the stainfree entry."""
    torch.manual_seed(0)  # the same weights whatever ran before (the plate test's curve depends on them)
    model = LiveDeadClassifier(
        backbone=dict(name="test_resnet", num_classes=len(class_names), in_chans=3),
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        input_size=size, class_names=list(class_names),
    )
    model.run_metadata = {"config": {"model": {"input_size": size}}, "preprocess": preprocess}
    g = torch.Generator().manual_seed(0)
    data = [dict(image=torch.randint(0, 255, (4, 1, size, size), dtype=torch.uint8, generator=g),
                 target=torch.tensor([0, 1, 0, 1]), index=torch.arange(4))]
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=path.parent)
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=None))
    trainer.save_checkpoint(path)
    return path


def make_frames(folder: Path) -> dict[str, Path]:
    """Two 16-bit TIFFs, an RGB PNG, a grey JPG (in a subfolder) and a corrupt TIFF."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    files = {}
    for i in range(2):
        files[f"f{i}.tif"] = folder / f"f{i}.tif"
        tifffile.imwrite(files[f"f{i}.tif"], rng.integers(1000, 40000, (96, 128), dtype=np.uint16))
    files["rgb.png"] = folder / "rgb.png"
    cv2.imwrite(str(files["rgb.png"]), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    (folder / "sub").mkdir()
    files["sub/g.jpg"] = folder / "sub" / "g.jpg"
    cv2.imwrite(str(files["sub/g.jpg"]), rng.integers(0, 255, (96, 128), dtype=np.uint8))
    files["broken.tif"] = folder / "broken.tif"
    files["broken.tif"].write_bytes(b"II*\x00 this is not really a tiff")
    return files


@pytest.fixture(scope="module")
def grid_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt", GRID_PREPROCESS)


def test_predict_folder_reports_corrupt_file_and_never_overwrites(tmp_path, grid_ckpt):
    make_frames(tmp_path / "raw")
    out = tmp_path / "out"
    summary = predict(grid_ckpt, tmp_path / "raw", out, batch_size=3, device="cpu", progress=False, n_boot=200)
    assert summary.n_images == 5 and summary.n_ok == 4
    assert [f["image"] for f in summary.failures] == ["broken.tif"]
    assert "broken.tif" in summary.failures[0]["reason"] and "broken.tif" in summary.report()
    patches = pd.read_csv(out / "patches.csv")
    assert list(patches.columns) == ["image", "y", "x", "empty", "p(live)", "p(dead)", "predicted", "logit(live)",
                                     "logit(dead)", "ood_score", "ood_flag"]
    assert len(patches) == 4 * 4 and set(patches["image"]) == {"f0.tif", "f1.tif", "rgb.png", "sub/g.jpg"}
    assert np.allclose(patches["p(live)"] + patches["p(dead)"], 1, atol=1e-5)
    assert sorted(patches.loc[patches.image == "f0.tif", "y"].unique()) == [0, 48]
    images = pd.read_csv(out / "images.csv")
    assert list(images.columns) == ["image", "height", "width", "n_patches", "n_empty", "n_dead",
                                    "dead_fraction", "mean_p_dead", "ood_score", "ood_flag", "ood_check", "ood_reason"]
    row = images.set_index("image").loc["f0.tif"]
    f0 = patches[patches.image == "f0.tif"]
    assert row["n_dead"] == (f0["predicted"] == "dead").sum()
    assert row["mean_p_dead"] == pytest.approx(f0["p(dead)"].mean(), abs=1e-6)
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == ["f0_heatmap.png", "f1_heatmap.png", "rgb_heatmap.png", "sub__g_heatmap.png"]
    overlay = cv2.imread(str(out / "overlays" / "f0_heatmap.png"))
    # the frame (padded white on the right to the key's 320 px) plus a key strip (colour bar, "empty"
    # swatch, caption) below it
    assert overlay.shape[1:] == (LEGEND_MIN_WIDTH, 3) and overlay.shape[0] > 96
    assert (overlay[96:] == 255).mean() > 0.5 and not (overlay[:96, :128] == 255).all()
    assert (overlay[:96, 128:] == 255).all()
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed.columns) == ["image", "reason"] and failed["image"].tolist() == ["broken.tif"]
    first = (out / "patches.csv").read_bytes()
    # the same folder again without resume=true: refused, nothing touched
    with pytest.raises(ResumeError, match=r"already holds a predict run.*resume=true"):
        predict(grid_ckpt, tmp_path / "raw", out, device="cpu", progress=False, n_boot=200)
    assert (out / "patches.csv").read_bytes() == first
    # resume=true on a finished run: nothing left to do, its result files are kept, fresh names are used
    again = predict(grid_ckpt, tmp_path / "raw", out, device="cpu", progress=False, n_boot=200, resume=True)
    assert again.n_resumed == 4 and again.n_ok == 4
    assert again.files["patches"].endswith("patches_1.csv") and (out / "patches.csv").read_bytes() == first
    assert (out / "patches_1.csv").read_bytes() == first and not (out / "overlays" / "f0_heatmap_1.png").exists()


def test_predict_plate_map_wells_dose_response_and_zprime(tmp_path, grid_ckpt):
    rng = np.random.default_rng(1)
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = []
    for i in range(14):
        cv2.imwrite(str(raw / f"im{i:02d}.png"), rng.integers(0, 255, (64, 64), dtype=np.uint8))
    for i, well in enumerate(["A1", "A2"]):
        rows.append(f"im{i:02d}.png,{well},DMSO,,neg")
    for i, well in enumerate(["B1", "B2"]):
        rows.append(f"im{i + 2:02d}.png,{well},staurosporine,,pos")
    for i, dose in enumerate([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300]):
        rows.append(f"im{i + 4:02d},C{i + 1},cpt,{dose},")
    plate = tmp_path / "plate.csv"
    plate.write_text("image,well,compound,dose,control\n" + "\n".join(rows) + "\n")
    summary = predict(grid_ckpt, raw, tmp_path / "out", plate_map=plate, device="cpu", progress=False, n_boot=200)
    wells = pd.read_csv(summary.files["wells"])
    assert len(wells) == 14 and (wells["n_patches"] == 4).all()
    assert ((wells["ci_low"] <= wells["dead_fraction"]) & (wells["dead_fraction"] <= wells["ci_high"])).all()
    z = json.loads(Path(summary.files["zprime"]).read_text())
    assert z["n_pos_wells"] == 2 and z["n_neg_wells"] == 2
    assert ("z_prime" in z and z["z_prime"] is None) == ("error" in z)
    dr = json.loads(Path(summary.files["dose_response"]).read_text())["fits"]
    assert [f["compound"] for f in dr] == ["cpt"]
    assert ("ic50" in dr[0]) != ("error" in dr[0])  # a random model may or may not give a curve: reported either way
    assert Path(summary.files["dose_response_cpt"]).is_file()


def test_predict_clear_errors(tmp_path, grid_ckpt):
    with pytest.raises(CheckpointError, match="no such file"):
        predict(tmp_path / "nope.ckpt", tmp_path, tmp_path / "o", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    with pytest.raises(PredictError, match=r"none of the 1 image\(s\).*x\.png"):
        predict(grid_ckpt, tmp_path / "bad", tmp_path / "o", device="cpu", progress=False)
    with pytest.raises(PredictError, match="positive_class='necrotic'"):
        predict(grid_ckpt, tmp_path / "bad", tmp_path / "o2", device="cpu", positive_class="necrotic", progress=False)


def test_predict_celldeath_classes_use_last_class_as_dead(tmp_path):
    ckpt = make_checkpoint(tmp_path / "cd.ckpt", GRID_PREPROCESS, class_names=("control", "celldeath"))
    raw = tmp_path / "raw"
    raw.mkdir()
    cv2.imwrite(str(raw / "U2_CPT2_1H_RGB_0001_N3.png"), np.full((96, 128, 3), 90, np.uint8))
    summary = predict(ckpt, raw / "U2_CPT2_1H_RGB_0001_N3.png", tmp_path / "out", device="cpu", progress=False)
    patches = pd.read_csv(summary.files["patches"])
    assert {"p(control)", "p(celldeath)"} <= set(patches.columns)
    images = pd.read_csv(summary.files["images"])
    assert images["mean_p_dead"].iloc[0] == pytest.approx(patches["p(celldeath)"].mean(), abs=1e-6)


@pytest.mark.slow
def test_predict_cli_hydra_run_folder_and_exit_codes(tmp_path, grid_ckpt):
    make_frames(tmp_path / "raw")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "predict.py"), f"ckpt_path={grid_ckpt}", f"input={tmp_path / 'raw'}",
           f"paths.log_dir={tmp_path / 'logs'}", "device=cpu", "n_boot=200", "progress=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "predicted 4/5 image(s)" in done.stdout and "broken.tif" in done.stdout
    runs = list((tmp_path / "logs" / "predict" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "patches.csv").is_file() and (runs[0] / "summary.json").is_file()
    bad = subprocess.run(cmd[:3] + [f"input={tmp_path / 'missing'}"] + cmd[4:], capture_output=True, text=True,
                         env=env, timeout=180)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("predict.py: error: input=") and "no such file or folder" in bad.stderr
