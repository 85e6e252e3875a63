"""Trust profile end to end: train.py stores calibration + OOD blocks in best.ckpt, the report shows
ECE before/after, eval.py fits them for an older checkpoint into a copy, predict's API scores frames."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from stainfree.data.imageio import read_image
from stainfree.inference.predictor import load_model
from stainfree.inference.tiling import build_tiler
from stainfree.models.checkpoint import read_checkpoint_meta
from stainfree.tasks.evaluate import evaluate
from stainfree.tasks.train import train
from stainfree.trust.scoring import score_image

TINY = [
    "experiment=demo", "logger=csv", "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
    "trainer.num_sanity_val_steps=0", "model.input_size=32", "model.backbone.name=test_resnet",
    "data.num_workers=0", "data.synthetic.frames_notreat=6", "data.stride=224",
    "callbacks.eval_report.tsne_max_points=40", "callbacks.progress_bar=null",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compose_cfg_in) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("trust")
    metrics, _ = train(compose_cfg_in(tmp, TINY))
    return tmp, metrics


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_best_checkpoint_carries_trust_blocks_and_report_shows_ece(trained):
    tmp, metrics = trained
    ckpt = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)
    cal, ood = ckpt["stainfree"]["calibration"], ckpt["stainfree"]["ood"]
    assert 0.05 <= cal["temperature"] <= 20 and cal["n_val"] > 0
    assert {"ece_val_before", "ece_val_after"} <= set(cal)
    assert ood["input"]["nominal_bits"] == [16] and ood["input"]["side"] == [224.0, 224.0]
    feats = ood["features"]
    assert feats["means"].shape[1] == feats["precision"].shape[0] and feats["patch_threshold"] > 0
    assert feats["image_threshold"] >= feats["patch_threshold"]
    report = json.loads((tmp / "run" / "eval" / "metrics.json").read_text())
    c = report["calibration"]
    assert c["calibrated"] and c["temperature"] == pytest.approx(cal["temperature"])
    assert 0 <= c["ece_before"] <= 1 and 0 <= c["ece_after"] <= 1
    assert (tmp / "run" / "eval" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    flat = pd.read_csv(tmp / "run" / "eval" / "metrics.csv")
    assert {"ece_before", "ece_after", "temperature"} <= set(flat.columns)
    preds = pd.read_csv(tmp / "run" / "eval" / "predictions.csv")
    np.testing.assert_allclose(preds[["p_cal_live", "p_cal_dead"]].sum(axis=1), 1.0, atol=1e-6)
    assert (preds[["p_cal_live", "p_cal_dead"]].to_numpy().argmax(1) == preds["pred"]).all()
    assert {"test_report/ece_before", "test_report/ece_after"} <= set(pd.read_csv(tmp / "run" / "csv" / "metrics.csv").columns)


def test_eval_fits_missing_blocks_into_a_copy_and_leaves_the_checkpoint_alone(trained, tmp_path, compose_cfg):
    _, metrics = trained
    old = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)
    del old["stainfree"]["calibration"], old["stainfree"]["ood"]
    legacy = tmp_path / "legacy.ckpt"
    torch.save(old, legacy)
    before = _sha(legacy)
    cfg = compose_cfg([f"ckpt_path={legacy}", "tsne_max_points=40"], config_name="eval")
    _, objects = evaluate(cfg)
    assert _sha(legacy) == before
    copy = Path(objects["calibrated_ckpt"])
    assert copy.name == "calibrated.ckpt" and copy.parent == Path(objects["report"]["report_dir"])
    meta = torch.load(copy, map_location="cpu", weights_only=True)["stainfree"]
    assert meta["calibration"]["temperature"] > 0 and "features" in meta["ood"]
    assert objects["report"]["calibration"]["ece_after"] is not None
    assert (copy.parent / "reliability.png").is_file()


def test_scoring_api_on_training_frames(trained):
    tmp, metrics = trained
    model, meta = load_model(read_checkpoint_meta(metrics["best_ckpt"]), torch.device("cpu"))
    tiler = build_tiler(meta["preprocess"])
    frame = sorted((tmp / "data" / "synthetic_jimt_demo" / "bf").glob("*.tif"))[0]
    raw = read_image(frame)
    tiles = tiler(raw)
    verdict = score_image(meta, model, raw, tiles)
    assert not verdict.ood_flag, verdict.ood_reason
    assert len(verdict.patch_score) == len(tiles.empty)
    small = cv2.resize(raw, (raw.shape[1] // 4, raw.shape[0] // 4), interpolation=cv2.INTER_AREA)
    verdict = score_image(meta, model, small, tiler(small))
    assert verdict.ood_flag and "4.0x smaller than the training frames" in verdict.ood_reason
    # the features can come from predict's own pass (one backbone pass for logits and features)
    with torch.no_grad():
        _, features = model.logits_and_features(torch.from_numpy(tiles.patches[~tiles.empty]).unsqueeze(1))
    again = score_image(meta, model, raw, tiles, features=features.numpy())
    np.testing.assert_allclose(again.patch_score, score_image(meta, model, raw, tiles).patch_score, rtol=1e-4)


def test_celldeath_profile_on_real_fields(shared_dir, tmp_path, compose_cfg):
    """Grid-tiled fields: source images from the split table's ``path``; the scale check follows the tile side."""
    real = shared_dir / "data" / "celldeath-u2os" / "full"
    overrides = ["experiment=celldeath_cpt_vs_dmso", f"data.root={real}", "trainer=cpu", "logger=csv",
                 "model=resnet18", "model.input_size=32", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                 "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null", "data.num_workers=0",
                 "callbacks.eval_report.tsne_max_points=40"]
    metrics, objects = train(compose_cfg(overrides))
    model, meta = load_model(read_checkpoint_meta(metrics["best_ckpt"]), torch.device("cpu"))
    ref = meta["ood"]["input"]
    assert ref["nominal_bits"] == [8] and not ref["window_layout"]
    assert ref["side"][0] == pytest.approx((640 * 480) ** 0.5)
    tiler = build_tiler(meta["preprocess"])
    raw = read_image(objects["datamodule"].split_table("train")["path"].iloc[0])  # a field the model trained on
    assert not score_image(meta, model, raw, tiler(raw)).ood_flag
    # a 2x larger field at the same pixel size: each tile covers twice the source pixels
    big = cv2.resize(raw, (raw.shape[1] * 2, raw.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    verdict = score_image(meta, model, big, tiler(big))
    assert verdict.ood_flag and "scale 2.0x smaller than training tiles" in verdict.ood_reason


def test_predict_reports_calibrated_p_ood_columns_summary_overlay_and_excludes_flagged_wells(trained, tmp_path):
    from stainfree.tasks.predict import predict
    from stainfree.trust.calibration import softmax

    tmp, metrics = trained
    frames = sorted((tmp / "data" / "synthetic_jimt_demo" / "bf").glob("*.tif"))[:2]
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for i, frame in enumerate(frames):
        raw = read_image(frame)
        cv2.imwrite(str(raw_dir / f"ok{i}.tif"), raw)
        small = cv2.resize(raw, (raw.shape[1] // 4, raw.shape[0] // 4), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(raw_dir / f"small{i}.tif"), small)
    plate = tmp_path / "plate.csv"
    plate.write_text("image,well,compound\nok0.tif,A1,dmso\nsmall0.tif,A1,dmso\nok1.tif,A2,dmso\n"
                     "small1.tif,B1,dmso\n")
    out = tmp_path / "out"
    summary = predict(metrics["best_ckpt"], raw_dir, out, device="cpu", progress=False, plate_map=plate, n_boot=200)
    images = pd.read_csv(out / "images.csv", keep_default_na=False).set_index("image")
    assert images["ood_flag"].to_dict() == {"ok0.tif": False, "ok1.tif": False, "small0.tif": True,
                                            "small1.tif": True}
    assert images.loc["small0.tif", "ood_check"] == "size"
    assert "4.0x smaller than the training frames" in images.loc["small0.tif", "ood_reason"]
    assert images.loc["ok0.tif", "ood_reason"] == "" and float(images.loc["ok0.tif", "ood_score"]) < 1
    assert summary.ood_line.startswith("2 of 4 images look unlike the training data (image ")
    assert summary.ood_line in summary.report()
    # p columns are calibrated (softmax(logits / T)); the raw logits stay in the table
    meta = read_checkpoint_meta(metrics["best_ckpt"]).extra
    temperature = meta["calibration"]["temperature"]
    patches = pd.read_csv(out / "patches.csv")
    used = patches[~patches["empty"]]
    logits = used[["logit(live)", "logit(dead)"]].to_numpy(float)
    np.testing.assert_allclose(used[["p(live)", "p(dead)"]].to_numpy(float), softmax(logits, temperature), atol=1e-5)
    assert {"ood_score", "ood_flag"} <= set(patches) and used["ood_score"].notna().all()
    assert json.loads((out / "summary.json").read_text())["temperature"] == pytest.approx(temperature)
    # flagged overlays get a red border; the others keep the frame's own grey at the corner
    flagged = cv2.imread(str(out / "overlays" / "small0_heatmap.png"))
    plain = cv2.imread(str(out / "overlays" / "ok0_heatmap.png"))
    assert tuple(flagged[0, 0]) == (0, 0, 255) and tuple(plain[0, 0]) != (0, 0, 255)
    # wells leave the flagged images out by default and say how many; B1 had only a flagged one
    wells = pd.read_csv(out / "wells.csv").set_index("well")
    assert wells["n_excluded_ood"].to_dict() == {"A1": 1, "A2": 0, "B1": 1}
    assert wells.loc["A1", "n_images"] == 1 and wells.loc["B1", "n_images"] == 0
    assert np.isnan(wells.loc["B1", "dead_fraction"])
    kept = predict(metrics["best_ckpt"], raw_dir, tmp_path / "kept", device="cpu", progress=False, plate_map=plate,
                   n_boot=200, ood_exclude=False, overlays=False)
    wells = pd.read_csv(tmp_path / "kept" / "wells.csv").set_index("well")
    assert wells["n_ood"].to_dict() == {"A1": 1, "A2": 0, "B1": 1} and wells.loc["A1", "n_images"] == 2
    assert kept.n_ok == 4


def test_mark_ood_any_size():
    from stainfree.inference.overlay import mark_ood

    for shape in [(1, 1, 3), (2, 7, 3), (15, 12, 3), (300, 400, 3)]:
        marked = mark_ood(np.full(shape, 128, np.uint8))
        assert marked.shape == shape and tuple(marked[0, 0]) == (0, 0, 255)
    big = mark_ood(np.full((300, 400, 3), 128, np.uint8))
    assert (big[10:30, 10:60] == 255).any()  # the "OOD" label's white box fits on a large image
