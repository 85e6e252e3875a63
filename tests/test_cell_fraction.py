"""Whole fields with a cell-trained model: cells are found at the training scale and counted."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from stainfree.data.spec import Layout, PreprocessSpec, Region
from stainfree.inference.cell_fraction import cell_side, dihedral_turns, find_cells, trained_on_cells
from stainfree.tasks.predict import predict
from test_predict import make_checkpoint  # noqa: E402 - tests/ is on sys.path (conftest)

SPEC = PreprocessSpec(input_size=32, region=Region(margin=0.25, shape="square"),
                      layout=Layout(kind="windows", window=36, stride=18), source_scale=36.0,
                      empty_filter={"method": "variance", "statistic": "bf8_std", "threshold": 8.0})
CENTRES = [(30, 40), (100, 45), (60, 120), (140, 130)]  # (x, y)


def _field() -> np.ndarray:
    """A flat 8-bit field with four textured discs of about the training cell side (24 px)."""
    rng = np.random.default_rng(0)
    frame = np.full((180, 200), 128.0) + rng.normal(0, 1.0, (180, 200))
    yy, xx = np.mgrid[:180, :200]
    for x, y in CENTRES:
        disc = np.hypot(xx - x, yy - y) < 10
        frame[disc] = 60 + 60 * ((xx[disc] + yy[disc]) % 4 < 2)
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_find_cells_one_box_per_cell_at_the_training_side():
    boxes = find_cells(_field(), SPEC)
    assert cell_side(SPEC) == pytest.approx(24.0)
    assert len(boxes) == len(CENTRES)
    centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
    for x, y in CENTRES:
        assert np.hypot(centres[:, 0] - x, centres[:, 1] - y).min() < 3
    assert np.allclose(boxes[:, 2] - boxes[:, 0], 24.0)
    assert len(find_cells(np.full((180, 200), 128, np.uint8), SPEC)) == 0  # blank field: no cell
    assert len(find_cells(np.zeros((5, 5), np.uint8), SPEC)) == 0  # smaller than a cell


def test_dihedral_turns_are_the_eight_distinct_orientations():
    patch = np.arange(9, dtype=np.uint8).reshape(1, 3, 3)
    turns = {t.tobytes() for t in dihedral_turns(patch)}
    assert len(turns) == 8


def test_predict_counts_cells_for_a_cell_trained_checkpoint(tmp_path):
    ckpt = make_checkpoint(tmp_path / "cells.ckpt", SPEC.to_dict())
    assert not trained_on_cells({"data": {"source": "jimt"}}, SPEC)
    assert trained_on_cells({"data": {"source": "voc"}}, SPEC)
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    state["stainfree"]["config"]["data"] = {"source": "voc"}
    torch.save(state, ckpt)
    raw = tmp_path / "raw"
    raw.mkdir()
    tifffile.imwrite(raw / "field.tif", _field())
    predict(ckpt, raw, tmp_path / "out", device="cpu", progress=False, overlays=False)
    row = pd.read_csv(tmp_path / "out" / "images.csv").iloc[0]
    assert row["n_cells"] == len(CENTRES)
    assert row["dead_fraction"] == pytest.approx(row["n_dead_cells"] / row["n_cells"])
    assert "window_dead_fraction" in row and row["n_patches"] > row["n_cells"]
    predict(ckpt, raw, tmp_path / "windows", device="cpu", progress=False, overlays=False, cell_fraction="false")
    assert "n_cells" not in pd.read_csv(tmp_path / "windows" / "images.csv")
