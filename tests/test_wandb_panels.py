"""W&B panels from a small fake prediction set, logged into an offline run and read back from its records."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.wandb_records import read_config, read_summary, read_table, wait_until_closed
from stainfree.evaluation.report import prediction_table
from stainfree.evaluation.wandb_panels import browsing_order, calibrated, log_wandb_panels


def _fake_report_table(class_names: list[str], n: int = 40, seed: int = 0) -> pd.DataFrame:
    """What write_report hands the panels: the report's prediction table over a split table."""
    rng = np.random.default_rng(seed)
    target = np.arange(n) % len(class_names)
    logits = rng.normal(size=(n, len(class_names))) + 2.0 * np.eye(len(class_names))[target]
    probs = torch.tensor(logits).softmax(dim=1).float()
    split = pd.DataFrame({"frame_id": [f"f{i // 4}" for i in range(n)], "target": target})
    outputs = {"probs": probs, "target": torch.tensor(target), "index": torch.arange(n)}
    return prediction_table(outputs, split, class_names)


def _images(rows: np.ndarray) -> torch.Tensor:
    """Patches whose first pixel encodes their split row, so the table's thumbnails can be traced."""
    images = torch.zeros(len(rows), 1, 128, 128, dtype=torch.uint8)
    images[:, 0, :8, :8] = torch.as_tensor(rows, dtype=torch.uint8).view(-1, 1, 1)
    return images


def _offline_run(tmp_path: Path, log) -> Path:  # type: ignore[no-untyped-def]
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(project="stainfree-test", save_dir=str(tmp_path), name="panels")
    try:
        log(logger)
    finally:
        logger.experiment.finish()
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    wait_until_closed(run_file)
    return run_file


def test_browsing_order_puts_confident_errors_then_doubtful_hits_first() -> None:
    table = pd.DataFrame({"p_live": [0.9, 0.6, 0.2, 0.45, 0.99], "p_dead": [0.1, 0.4, 0.8, 0.55, 0.01],
                          "correct": [True, True, False, False, True]})
    # errors by confidence (0.8, then 0.55), then hits from the least confident (0.6, 0.9, 0.99)
    assert browsing_order(table, ["live", "dead"]).tolist() == [2, 3, 1, 0, 4]
    probs = np.array([[0.2, 0.8]])
    assert calibrated(probs, 1.0) == pytest.approx(probs)
    assert calibrated(probs, 2.0)[0, 1] == pytest.approx(np.sqrt(0.8) / (np.sqrt(0.8) + np.sqrt(0.2)))


def test_binary_panels_reach_the_offline_run(tmp_path: Path) -> None:
    names = ["live", "dead"]
    table = _fake_report_table(names)
    keys = []
    run_file = _offline_run(tmp_path, lambda lg: keys.extend(log_wandb_panels(
        [lg], "test", table, names, _images, metadata={"calibration": {"temperature": 2.0}}, max_rows=12)))
    assert keys == ["test/roc_curve", "test/pr_curve", "test/confusion_chart", "test/predictions"]

    charts = read_config(run_file)["_wandb"]["visualize"]
    assert charts["test/roc_curve"]["panel_config"]["panelDefId"] == "wandb/area-under-curve/v0"
    fields = charts["test/pr_curve"]["panel_config"]["fieldSettings"]
    assert fields == {"x": "recall", "y": "precision", "class": "class"}
    assert charts["test/confusion_chart"]["panel_config"]["panelDefId"] == "wandb/confusion_matrix/v1"
    summary = read_summary(run_file)
    for key in ("test/roc_curve_table", "test/pr_curve_table", "test/confusion_chart_table", "test/predictions"):
        assert summary[key]["_type"] == "table-file", key

    roc = read_table(run_file, "test/roc_curve_table")
    assert roc["columns"] == ["class", "fpr", "tpr"] and {r[0] for r in roc["data"]} == {"dead vs live"}
    confusion = read_table(run_file, "test/confusion_chart_table")
    counts = {(a, p): n for a, p, n in confusion["data"]}
    assert sum(counts.values()) == len(table)
    assert counts[("dead", "dead")] == ((table["truth"] == "dead") & (table["predicted"] == "dead")).sum()

    pred = read_table(run_file, "test/predictions")
    assert pred["columns"] == ["image", "truth", "predicted", "correct", "p(dead)", "confidence",
                               "p(dead) calibrated", "frame_id", "index"]
    rows = [dict(zip(pred["columns"], r)) for r in pred["data"]]
    expected = table.iloc[browsing_order(table, names)[:12]]
    assert [r["index"] for r in rows] == expected["index"].tolist()  # capped, errors first
    assert not rows[0]["correct"] and [r["correct"] for r in rows] == sorted(r["correct"] for r in rows)
    for row, (_, want) in zip(rows, expected.iterrows()):
        assert row["p(dead)"] == pytest.approx(want["p_dead"], abs=1e-6)
        assert row["frame_id"] == want["frame_id"]
        probs = want[["p_live", "p_dead"]].to_numpy(dtype=float)[None]
        assert row["p(dead) calibrated"] == pytest.approx(calibrated(probs, 2.0)[0, 1], abs=1e-6)
        image = row["image"]
        assert image["_type"] == "image-file" and image["width"] == image["height"] == 96  # thumbnail
        png = np.asarray(Image.open(pred["files"][image["path"]]))  # staged with the table
        assert png[0, 0] == want["index"]  # the thumbnail of this very patch


def test_multiclass_panels_per_class_without_calibration(tmp_path: Path) -> None:
    names = ["PC3", "MCF7", "U2OS"]
    table = _fake_report_table(names, n=30, seed=1).rename(columns={"frame_id": "image_id"})
    run_file = _offline_run(tmp_path, lambda lg: log_wandb_panels([lg], "test", table, names, _images, max_rows=500))
    roc = read_table(run_file, "test/roc_curve_table")
    assert {r[0] for r in roc["data"]} == {f"{n} vs rest" for n in names}  # one curve per class
    pred = read_table(run_file, "test/predictions")
    assert "p(U2OS)" in pred["columns"] and "image_id" in pred["columns"]  # no 'dead': the last class
    assert not any("calibrated" in c for c in pred["columns"]) and len(pred["data"]) == 30
