"""Predict sees exactly the training pixels: for every source, the patches predict's tiler cuts from
a raw image (from the checkpoint's stored spec dict) equal the training datasets' unaugmented samples
of the same regions, bit for bit (stretch_8bit included)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from stainfree.data import pixels
from stainfree.data.celldeath import synthetic as tlm
from stainfree.data.celldeath.datamodule import CellDeathDataModule
from stainfree.data.jimt.datamodule import JimtDataModule
from stainfree.data.jimt.synthetic import generate_frame
from stainfree.data.module import SampleDataModule
from stainfree.data.spec import PreprocessSpec
from stainfree.inference.tiling import build_tiler


def training_images(dm: SampleDataModule) -> dict[str, np.ndarray]:
    """sample_id -> the unaugmented model input the training loaders serve (every split)."""
    out = {}
    for stage, loader in (("fit", dm.train_dataloader), ("validate", dm.val_dataloader), ("test", dm.test_dataloader)):
        ds, table = loader().dataset, dm.split_table(stage)
        for i, sid in enumerate(table["sample_id"]):
            out[sid] = ds.image(i) if stage == "fit" else ds[i]["image"][0].numpy()
    return out


def predict_tiles(dm: SampleDataModule, path: str | Path):
    """What predict.py computes for ``path`` from the spec dict a checkpoint stores."""
    return build_tiler(dict(dm.preprocess_config()))(path)


def at(tiles, y: int, x: int) -> int:
    hit = np.flatnonzero((tiles.boxes[:, 0] == y) & (tiles.boxes[:, 1] == x))
    assert len(hit) == 1, (y, x)
    return int(hit[0])


def test_jimt_windows(tmp_path: Path) -> None:
    dm = JimtDataModule(manifest=tmp_path / "syn" / "manifest.csv", cache_dir=tmp_path / "cache", stride=160,
                        synthetic={"frames_notreat": 5, "frames_doxo": 0, "seed": 8, "examples_per_class": 4},
                        labels={"method": "fixed", "live_below": 259.0, "dead_above": 397.0}, input_size=48,
                        empty_filter={"method": "variance", "statistic": "contrast"})
    dm.setup("fit")
    images, index, n = training_images(dm), dm.window_index(), 0
    for path, rows in dm.sample_table().groupby("path"):
        tiles = predict_tiles(dm, path)
        windows = index[index["frame_id"] == rows["frame_id"].iloc[0]]
        np.testing.assert_array_equal(tiles.empty, windows["empty"].to_numpy(bool))  # same empty filter
        for row in rows.itertuples():
            assert np.array_equal(tiles.patches[at(tiles, row.y, row.x)], images[row.sample_id])
            n += 1
    assert n == len(dm.sample_table()) > 20


@pytest.mark.parametrize("stretch", [False, True])
@pytest.mark.parametrize("resize", ["squish", "crop"])
def test_celldeath_grid(tmp_path: Path, stretch: bool, resize: str) -> None:
    root = tlm.generate(tmp_path / "tlm", ["PC3"], images_per_group=3, replicates=2, size=(200, 150))
    rng = np.random.default_rng(0)
    for png in sorted(root.glob("*.png"))[::3]:  # a third of the fields as 16-bit TIFFs
        img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(np.uint16) * 180 + rng.integers(0, 90, (150, 200))
        tifffile.imwrite(png.with_suffix(".tif"), img.astype(np.uint16))
        png.unlink()
    dm = CellDeathDataModule(root, input_size=40, num_workers=0, batch_size=4, cache_dir=tmp_path / "cache",
                             stretch_8bit=stretch, resize=resize, test_replicate="N2", val_fraction=0.34,
                             naming={"cell_lines": {"PC3": ["PC3"]}})
    dm.setup("fit")
    assert dm.preprocess_config()["to_8bit"]["stretch_8bit"] is stretch
    images, table = training_images(dm), dm.sample_table()
    assert table["path"].str.endswith(".tif").any()
    for path, rows in table.groupby("path"):
        tiles = predict_tiles(dm, path)
        for row in rows.itertuples():
            assert np.array_equal(tiles.patches[row.tile], images[row.sample_id]), (path, row.tile)


@pytest.mark.parametrize("layout", ["two_files", "one_stack"])
def test_pairs_windows(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "plate"
    folder.mkdir()
    for i in range(6):
        f = generate_frame("notreat", i, seed=12, n_frames=6)
        if layout == "two_files":
            tifffile.imwrite(folder / f"well{i}_ch1_BF.tif", f.bf)
            tifffile.imwrite(folder / f"well{i}_ch2_PI.tif", f.pi)
        else:
            tifffile.imwrite(folder / f"well{i}.ome.tif", np.stack([f.pi, f.bf]))
    files = ({"bf_pattern": r"(well\d+)_ch1_BF\.tif", "fl_pattern": r"(well\d+)_ch2_PI\.tif"}
             if layout == "two_files" else {"pattern": "*.ome.tif", "bf_channel": 1, "fl_channel": 0})
    dm = SampleDataModule(source="pairs", images=folder, input_size=32, cache_dir=tmp_path / "cache", window=224,
                          stride=200, labels={"method": "fixed", "live_below": 259.0, "dead_above": 397.0},
                          classes=["live", "dead"], stretch_8bit=True, **files)
    dm.setup("fit")
    images, n = training_images(dm), 0
    for path, rows in dm.sample_table().groupby("path"):
        tiles = predict_tiles(dm, path)
        for row in rows.itertuples():
            k = at(tiles, row.y, row.x)
            assert np.array_equal(tiles.patches[k], images[row.sample_id]) and not tiles.empty[k]
            n += 1
    assert n == len(dm.sample_table()) > 20


def test_boxes_with_margin_square_and_zero_border(tmp_path: Path) -> None:
    """Regions given at predict time (model_inputs from the stored spec) match the training crops."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(9):
        h, w = 90 + 7 * i, 120
        img = rng.integers(0, 60000, (h, w), dtype=np.uint16) if i % 2 else rng.integers(0, 255, (h, w, 3), np.uint8)
        name = f"f{i}.tif" if i % 2 else f"f{i}.png"
        (tifffile.imwrite(tmp_path / name, img) if i % 2 else cv2.imwrite(str(tmp_path / name), img))
        for k in range(3):
            x, y = rng.uniform(-5, 100), rng.uniform(-5, h - 10)  # some boxes cross the border
            rows.append({"path": name, "label": ["live", "dead"][(i + k) % 2], "x0": x, "y0": y,
                         "x1": x + rng.uniform(8, 30), "y1": y + rng.uniform(8, 30)})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    dm = SampleDataModule(source="table", table=tmp_path / "t.csv", input_size=24, cache_dir=tmp_path / "cache",
                          region={"margin": 0.25, "shape": "square", "border": "constant"}, stretch_8bit=True,
                          split={"train": 0.34, "val": 0.33, "test": 0.33})
    dm.setup("fit")
    spec = PreprocessSpec.from_dict(dm.preprocess_config())
    images = training_images(dm)
    for path, part in dm.sample_table().groupby("path"):
        got = pixels.model_inputs(path, part[["x0", "y0", "x1", "y1"]].to_numpy(), spec)
        for patch, sid in zip(got, part["sample_id"]):
            assert np.array_equal(patch, images[sid])
