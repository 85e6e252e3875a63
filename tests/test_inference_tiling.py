"""predict lays out raw frames from the checkpoint's spec: same pixels, same empty flags as training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from stainfree.data.jimt.preprocess import normalise_config, prepare
from stainfree.data.jimt.synthetic import generate_frame
from stainfree.data.spec import SpecError
from stainfree.inference.tiling import Tiler, build_tiler


@pytest.mark.parametrize("statistic", ["contrast", "bf8_std"])
def test_window_tiler_matches_training_cache(tmp_path, statistic):
    rows = []
    for i in range(3):
        frame = generate_frame("notreat", i, seed=5, n_frames=3)
        for kind, arr in (("bf", frame.bf), ("pi", frame.pi)):
            tifffile.imwrite(tmp_path / f"{kind}{i}.tif", arr)
        rows.append(dict(frame_id=f"f{i}", dataset="notreat", bf_path=f"bf{i}.tif", pi_path=f"pi{i}.tif"))
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = normalise_config(window=224, stride=160, empty_filter_cfg={"method": "variance", "statistic": statistic},
                           labels_cfg={"method": "fixed", "live_below": 259.0, "dead_above": 397.0})
    prepared = prepare(tmp_path / "manifest.csv", tmp_path / "cache", cfg, workers=1, verbose=False)
    index = prepared.index()
    bf8 = np.load(prepared.bf8_path)
    # a legacy (schema 1) checkpoint entry, as JimtDataModule wrote it before the data contract
    preprocess = {"study": "jimt", "window": 224, "stride": 160, "bf_to8bit": cfg["bf_to8bit"],
                  "empty_filter": cfg["empty_filter"], "input_size": 112, "in_chans": 3}
    tiler = build_tiler(preprocess)
    assert isinstance(tiler, Tiler) and tiler.spec.to_8bit.stretch_8bit
    n_empty = 0
    for i in range(3):
        tiles = tiler(tmp_path / f"bf{i}.tif")
        rows = index[index["frame_id"] == f"f{i}"]
        np.testing.assert_array_equal(tiles.frame8, bf8[i])
        np.testing.assert_array_equal(tiles.boxes[:, :2], rows[["y", "x"]].to_numpy())
        np.testing.assert_array_equal(tiles.empty, rows["empty"].to_numpy(bool))
        assert tiles.patches.shape == (len(rows), 112, 112) and tiles.patches.dtype == np.uint8
        assert (tiles.boxes[:, 2:] == 224).all()
        n_empty += int(tiles.empty.sum())
    assert 0 < n_empty < len(index)  # the synthetic set has empty areas: the filter really ran


def test_grid_tiler_16bit_and_unknown_layout():
    tiler = build_tiler({"study": "celldeath", "window": None, "n_tiles": 4, "input_size": 48})
    frame = np.random.default_rng(0).integers(0, 60000, (96, 130), dtype=np.uint16)
    tiles = tiler(frame)
    assert tiles.frame8.dtype == np.uint8 and tiles.patches.shape == (4, 48, 48)
    assert tiles.boxes.tolist() == [[0, 0, 48, 65], [0, 65, 48, 65], [48, 0, 48, 65], [48, 65, 48, 65]]
    with pytest.raises(SpecError, match="incompatible version"):
        build_tiler({"input_size": 64})


def test_legacy_celldeath_entry_keeps_its_stretch_8bit():
    """Issue 9: predict used to drop the checkpoint's stretch_8bit (tiles up to 122 grey levels off)."""
    legacy = {"study": "celldeath", "n_tiles": 4, "grid": [2, 2], "input_size": 32, "resize": "squish",
              "to_8bit": {"stretch_uint8": True, "low_pct": 0.5, "high_pct": 99.5}}
    dim = (np.random.default_rng(1).integers(0, 256, (64, 80)) // 4 + 10).astype(np.uint8)
    stretched = build_tiler(legacy)(dim)
    plain = build_tiler({**legacy, "to_8bit": {"stretch_uint8": False}})(dim)
    assert stretched.frame8.max() == 255 and plain.frame8.max() < 80
