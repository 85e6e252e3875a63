"""Tiler: grid shapes, pixel-exact match with the authors' 2x2 tiles, 16-bit handling, memmap cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stainfree.data.celldeath.tiling import grid_shape, tile_image
from stainfree.data.imageio import read_image
from stainfree.data.pixels import cut_regions, to_8bit
from stainfree.data.spec import EightBit, PreprocessSpec, Region, SpecError

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
    assert to_8bit(u8, EightBit()) is u8
    u16 = (u8.astype(np.uint16) * 40 + 1000)
    out = to_8bit(u16, EightBit(low=0, high=100))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.array_equal(np.argsort(out.ravel(), kind="stable"), np.argsort(u8.ravel(), kind="stable"))
    assert not to_8bit(np.full((4, 4), 7, np.uint16), EightBit()).any()
    dim = (u8 // 4 + 10).astype(np.uint8)  # a darker, low-contrast exposure of the same field
    assert np.abs(to_8bit(dim, EightBit(low=0, high=100, stretch_8bit=True)).astype(int) - u8).max() <= 3


def test_resize_modes() -> None:
    tile = np.zeros((480, 640), np.uint8)
    tile[:, :80] = 255  # a band only the squish mode keeps
    whole = np.array([[0, 0, 640, 480]], float)
    squish = cut_regions(tile, whole, PreprocessSpec(64, region=Region(shape="squish")))[0]
    assert squish.shape == (64, 64) and squish[:, 0].min() == 255
    assert cut_regions(tile, whole, PreprocessSpec(64, region=Region(shape="crop")))[0][:, 0].max() == 0
    with pytest.raises(SpecError, match="shape"):
        Region(shape="stretch")
