"""predict regions=: one row per annotated cell, cut by the same pixels as training (data.pixels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from stainfree.data import pixels
from stainfree.data.spec import Layout, PreprocessSpec, Region
from stainfree.inference.regions import RegionsError, default_point_size
from stainfree.models.checkpoint import read_checkpoint_meta
from stainfree.models.classifier import LiveDeadClassifier
from stainfree.tasks.predict import predict
from test_predict import make_checkpoint  # noqa: E402 - tests/ is on sys.path (conftest)

SPEC = PreprocessSpec(input_size=32, region=Region(margin=0.25, shape="square"),
                      layout=Layout(kind="windows", window=30, stride=15), source_scale=30.0)


@pytest.fixture(scope="module")
def crop_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "crop.ckpt", SPEC.to_dict())


def _field(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    path = folder / "field.tif"
    tifffile.imwrite(path, rng.integers(500, 30000, (70, 90), dtype=np.uint16))
    return path


def _model_probs(ckpt: Path, patches: np.ndarray) -> np.ndarray:
    model = LiveDeadClassifier.from_checkpoint(read_checkpoint_meta(ckpt), map_location="cpu").eval()
    with torch.inference_mode():
        return model(torch.from_numpy(patches).unsqueeze(1)).float().softmax(1).numpy()


def test_regions_points_csv_one_row_per_cell_with_training_pixels(tmp_path, crop_ckpt):
    field = _field(tmp_path / "raw")
    csv = tmp_path / "cells.csv"
    # no label column: cells to classify; one point near the border (reflect-padded, as in training)
    csv.write_text("image,x,y\nfield.tif,20,30\nfield.tif,60,35\nfield.tif,2,68\n")
    out = tmp_path / "out"
    summary = predict(crop_ckpt, tmp_path / "raw", out, device="cpu", progress=False, overlays=False,
                      regions=csv)
    cells = pd.read_csv(out / "cells.csv", keep_default_na=False)
    assert summary.files["cells"].endswith("cells.csv") and len(cells) == 3
    assert cells["image"].tolist() == ["field.tif"] * 3 and (cells["truth"] == "").all()
    assert {"p(live)", "p(dead)", "logit(live)", "logit(dead)", "predicted", "ood_score", "ood_flag"} <= set(cells)
    # parity: the boxes are the training rule's (point size = the cell side the checkpoint was trained on),
    # and the probabilities are the model's on pixels.model_inputs of those boxes
    side = default_point_size(SPEC)
    assert side == pytest.approx(20.0)
    assert cells["x1"].sub(cells["x0"]).eq(side).all()
    boxes = cells[["x0", "y0", "x1", "y1"]].to_numpy(float)
    expected = _model_probs(crop_ckpt, pixels.model_inputs(field, boxes, SPEC))
    np.testing.assert_allclose(cells[["p(live)", "p(dead)"]].to_numpy(float), expected, atol=1e-5)


def test_regions_boxes_keep_truth_and_bad_file_is_one_line(tmp_path, crop_ckpt):
    field = _field(tmp_path / "raw")
    csv = tmp_path / "boxes.csv"
    csv.write_text("image,x0,y0,x1,y1,label\nfield.tif,10,10,30,34,dead\nfield.tif,50,20,75,40,live\n")
    out = tmp_path / "out"
    predict(crop_ckpt, tmp_path / "raw", out, device="cpu", progress=False, overlays=False, regions=csv)
    cells = pd.read_csv(out / "cells.csv")
    assert cells["truth"].tolist() == ["dead", "live"]
    expected = _model_probs(crop_ckpt, pixels.model_inputs(field, np.array([[10, 10, 30, 34], [50, 20, 75, 40.]]),
                                                           SPEC))
    np.testing.assert_allclose(cells[["p(live)", "p(dead)"]].to_numpy(float), expected, atol=1e-5)
    odd = tmp_path / "a.yaml"
    odd.write_text("x")
    with pytest.raises(RegionsError, match="regions=.*unknown annotation type"):
        predict(crop_ckpt, tmp_path / "raw", tmp_path / "o2", device="cpu", progress=False, regions=odd)
    missing = tmp_path / "other.csv"
    missing.write_text("image,x,y\nnot_there.tif,3,4\n")
    with pytest.raises(RegionsError, match="not_there.tif"):
        predict(crop_ckpt, tmp_path / "raw", tmp_path / "o3", device="cpu", progress=False, regions=missing)
