"""Synthetic JIMT-1 generator: determinism, formats, folder contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stainfree.data.imageio import read_image
from stainfree.data.jimt.synthetic import FRAME_SHAPE, generate_dataset, generate_frame, main


def test_same_seed_same_arrays_other_seed_differs() -> None:
    a = generate_frame("notreat", 1, seed=3, n_frames=4)
    b = generate_frame("notreat", 1, seed=3, n_frames=4)
    c = generate_frame("notreat", 1, seed=4, n_frames=4)
    assert a.bf.dtype == np.uint16 and a.pi.dtype == np.uint16
    assert a.bf.shape == FRAME_SHAPE and a.pi.shape == FRAME_SHAPE
    np.testing.assert_array_equal(a.bf, b.bf)
    np.testing.assert_array_equal(a.pi, b.pi)
    assert not np.array_equal(a.bf, c.bf)


def test_pi_scale_live_background_dead_bright() -> None:
    f = generate_frame("doxo", 0, seed=0, n_frames=4)
    cells = f.cells
    assert cells["dead"].any()
    bg = np.median(f.pi[~f.coverage])
    assert 140 <= bg <= 260  # raw 16-bit background of the PI channel
    dead = cells[cells["dead"]].iloc[0]
    assert f.pi[int(dead.y), int(dead.x)] > 2000  # a dead nucleus is far above background
    # deadness distributions overlap: some PI-positive cells look healthier than some live ones
    assert cells.loc[cells["dead"], "deadness"].min() < cells.loc[~cells["dead"], "deadness"].max()


def test_generate_dataset_folder(tmp_path) -> None:
    out = tmp_path / "syn"
    manifest = generate_dataset(out, frames_notreat=2, frames_doxo=1, seed=0, examples_per_class=3,
                                verbose=False)
    m = pd.read_csv(manifest)
    assert list(m.columns) == ["frame_id", "dataset", "bf_path", "pi_path"]
    assert sorted(m["dataset"].unique()) == ["doxo", "notreat"] and len(m) == 3
    bf = read_image(out / m.loc[0, "bf_path"])
    assert bf.dtype == np.uint16 and bf.shape == FRAME_SHAPE
    assert read_image(out / m.loc[0, "pi_path"]).dtype == np.uint16
    ex = sorted((out / "empty_examples" / "nonempty").glob("*.png"))
    assert ex and read_image(ex[0]).shape == (224, 224)
    # never overwrite a folder a user made
    with pytest.raises(FileExistsError, match="not empty"):
        generate_dataset(out, frames_notreat=1, frames_doxo=0, verbose=False)


def test_cli_reports_clear_error(tmp_path, capsys) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("user data")
    assert main(["--out", str(tmp_path / "taken"), "--frames-notreat", "1", "--frames-doxo", "0"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "mine.txt").read_text() == "user data"
