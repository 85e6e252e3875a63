"""Tiler: grid shapes, pixel-exact match with the authors' 2x2 tiles, 16-bit handling, memmap cache."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stainfree.data.celldeath.tiling import TileSpec, build_tiles, grid_shape, resize_tile, tile_image, to_uint8
from stainfree.data.imageio import read_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data" / "celldeath-u2os"


@pytest.mark.parametrize("n, grid, shape", [(2, (1, 2), (960, 640)), (4, (2, 2), (480, 640)),
                                            (6, (2, 3), (480, 426)), (8, (2, 4), (480, 320))])
def test_grids_on_a_1280x960_field(n: int, grid: tuple[int, int], shape: tuple[int, int]) -> None:
    image = np.arange(960 * 1280, dtype=np.uint32).reshape(960, 1280)
    tiles = tile_image(image, n)
    assert grid_shape(n) == grid and len(tiles) == n
    assert all(t.shape == shape for t in tiles)
    assert tiles[0][0, 0] == 0 and tiles[1][0, 0] == shape[1]  # row-major: tile 1 is right of tile 0
    assert len({int(t[0, 0]) for t in tiles}) == n  # no two tiles start at the same pixel
    with pytest.raises(ValueError, match="n_tiles=5"):
        tile_image(image, 5)


def test_2x2_equals_the_authors_tiles() -> None:
    if not DATA.is_dir():
        pytest.skip("../shared/data/celldeath-u2os is not present")
    name = "U2_DMSO2_1H_RGB_0052_N3.png"
    tiles = tile_image(read_image(DATA / "full" / name), 4)
    for k, (r, c) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)]):
        theirs = read_image(DATA / "tiles" / f"{name}_{r:02d}_{c:02d}.png")
        assert np.array_equal(tiles[k], theirs), f"tile {r},{c} differs"


def test_16bit_is_stretched_and_8bit_kept() -> None:
    u8 = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    assert to_uint8(u8) is u8
    u16 = (u8.astype(np.uint16) * 40 + 1000)
    out = to_uint8(u16, 0, 100)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.array_equal(np.argsort(out.ravel(), kind="stable"), np.argsort(u8.ravel(), kind="stable"))
    assert not to_uint8(np.full((4, 4), 7, np.uint16)).any()
    dim = (u8 // 4 + 10).astype(np.uint8)  # a darker, low-contrast exposure of the same field
    assert np.abs(to_uint8(dim, 0, 100, stretch_uint8=True).astype(int) - u8).max() <= 3


def test_resize_modes() -> None:
    tile = np.zeros((480, 640), np.uint8)
    tile[:, :80] = 255  # a band only the squish mode keeps
    assert resize_tile(tile, 64, "squish").shape == (64, 64) and resize_tile(tile, 64, "squish")[:, 0].min() == 255
    assert resize_tile(tile, 64, "crop")[:, 0].max() == 0
    with pytest.raises(ValueError, match="resize"):
        resize_tile(tile, 64, "stretch")


def test_cache_built_once_atomically_and_reused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        p = tmp_path / "img" / f"PC3_CPT_1h_{i}_N1.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), rng.integers(0, 256, (96, 128), dtype=np.uint8))
        paths.append(p)
    spec = TileSpec(n_tiles=4, input_size=16)
    tiles = build_tiles(paths, spec, tmp_path / "cache")
    assert isinstance(tiles, np.memmap) and tiles.shape == (12, 16, 16) and tiles.dtype == np.uint8
    in_memory = build_tiles(paths, spec, None)
    assert np.array_equal(np.asarray(tiles), in_memory)
    assert np.array_equal(in_memory[5], resize_tile(tile_image(read_image(paths[1]), 4)[1], 16))
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".")  # no half-built temp folder left
    mtime = (folders[0] / "tiles.npy").stat().st_mtime_ns
    build_tiles(paths, spec, tmp_path / "cache")
    assert (folders[0] / "tiles.npy").stat().st_mtime_ns == mtime  # reused, not rebuilt
    build_tiles(paths, TileSpec(n_tiles=2, input_size=16), tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # another tiling -> another cache
