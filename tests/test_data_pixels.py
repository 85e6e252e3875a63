"""PreprocessSpec (round trip, legacy conversion, refusals) and the one pixel rule (pixels.py)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from stainfree.data import pixels
from stainfree.data.spec import EightBit, Layout, PreprocessSpec, Region, SpecError


def test_spec_round_trip_is_plain_and_checkpoint_safe(tmp_path: Path) -> None:
    spec = PreprocessSpec(input_size=64, channel=1, to_8bit=EightBit(method="fixed", lo=100, hi=4000),
                          region=Region(margin=0.2, shape="square", border="constant"),
                          layout=Layout(kind="windows", window=48, stride=24), source_scale=47.5,
                          empty_filter={"method": "variance", "statistic": "bf8_std", "threshold": 3.0})
    stored = spec.to_dict()
    assert stored["schema"] == 2
    torch.save({"preprocess": stored}, tmp_path / "x.pt")
    loaded = torch.load(tmp_path / "x.pt", weights_only=True)["preprocess"]
    assert PreprocessSpec.from_dict(loaded) == spec


def test_spec_refuses_bad_and_newer_dicts() -> None:
    good = PreprocessSpec(input_size=32).to_dict()
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['tta'\].*newer or incompatible"):
        PreprocessSpec.from_dict({**good, "tta": True})
    with pytest.raises(SpecError, match=r"preprocess.region has unknown key\(s\) \['blur'\]"):
        PreprocessSpec.from_dict({**good, "region": {"blur": 1}})
    with pytest.raises(SpecError, match="written by a newer stainfree"):
        PreprocessSpec.from_dict({**good, "schema": 3})
    with pytest.raises(SpecError, match="input_size=0 must be a positive integer"):
        PreprocessSpec(input_size=0)  # issue 8: used to be a 210-line cv2 traceback
    with pytest.raises(SpecError, match=r"to_8bit.method=fixed needs to_8bit.lo"):
        EightBit(method="fixed")
    with pytest.raises(SpecError, match="n_tiles=5"):
        Layout(kind="grid", n_tiles=5)


def test_legacy_dicts_are_converted() -> None:
    jimt = PreprocessSpec.from_dict({"study": "jimt", "window": 224, "stride": 112, "input_size": 64,
                                     "bf_to8bit": {"method": "percentile", "low": 1.0, "high": 99.0},
                                     "empty_filter": {"method": "svm", "backbone": "resnet18"},
                                     "svm_path": "/c/svm.joblib", "labels": {}, "cache": "/c"})
    assert jimt.layout == Layout("windows", 224, 112) and jimt.source_scale == 224
    assert jimt.to_8bit == EightBit(low=1.0, high=99.0, stretch_8bit=True)
    assert jimt.empty_filter["svm_path"] == "/c/svm.joblib"
    cd = PreprocessSpec.from_dict({"study": "celldeath", "n_tiles": 6, "input_size": 32, "resize": "crop",
                                   "to_8bit": {"stretch_uint8": True, "low_pct": 0.5, "high_pct": 99.5}})
    assert cd.layout == Layout("grid", n_tiles=6) and cd.region.shape == "crop" and cd.to_8bit.stretch_8bit


def test_eight_bit_rule() -> None:
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert pixels.to_8bit(u8, EightBit()) is u8
    u16 = np.array([[1000, 2000], [3000, 3001]], np.uint16)
    assert pixels.to_8bit(u16, EightBit(method="minmax")).tolist() == [[0, 127], [255, 255]]
    assert pixels.to_8bit(u16, EightBit(method="fixed", lo=1000, hi=3000)).tolist() == [[0, 128], [255, 255]]
    # one rounding rule: np.round after clipping (half to even): 127.5 -> 128, 0.5 -> 0
    half = np.array([[0, 1, 255, 510]], np.uint16)
    assert pixels.to_8bit(half, EightBit(method="fixed", lo=0, hi=510)).tolist() == [[0, 0, 128, 255]]


def test_geometry_margin_crop_square() -> None:
    boxes = np.array([[10, 20, 30, 60], [np.nan] * 4, [4.4, 5.5, 9.5, 6.0]])
    got = pixels.region_boxes(boxes, 100, 200, Region())
    assert got.tolist() == [[10, 20, 30, 60], [0, 0, 200, 100], [4, 6, 10, 7]]  # rounded half up, >= 1 px
    assert pixels.region_boxes(boxes[:1], 100, 200, Region(margin=0.25)).tolist() == [[5, 10, 35, 70]]
    assert pixels.region_boxes(boxes[:1], 100, 200, Region(shape="crop")).tolist() == [[10, 30, 30, 50]]
    assert pixels.region_boxes(boxes[:1], 100, 200, Region(shape="square")).tolist() == [[0, 20, 40, 60]]


@pytest.mark.parametrize("border, cv_border", [("reflect", cv2.BORDER_REFLECT_101), ("constant", cv2.BORDER_CONSTANT)])
def test_padding_matches_opencv(border: str, cv_border: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)
    padded = cv2.copyMakeBorder(image, 12, 12, 12, 12, cv_border, value=0)
    spec = PreprocessSpec(input_size=20, region=Region(border=border))
    box = np.array([[-10.0, -8.0, 10.0, 12.0]])  # 20 x 20 crossing the top-left corner
    np.testing.assert_array_equal(pixels.cut_regions(image, box, spec)[0], padded[4:24, 2:22])


def test_resize_rule() -> None:
    image = np.random.default_rng(1).integers(0, 256, (64, 96), dtype=np.uint8)
    spec = PreprocessSpec(input_size=32)
    same = pixels.cut_regions(image, np.array([[10, 10, 42, 42.0]]), spec)[0]
    assert np.array_equal(same, image[10:42, 10:42])  # already S x S: untouched
    down = pixels.cut_regions(image, np.array([[0, 0, 96, 64.0]]), spec)[0]
    assert np.array_equal(down, cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA))
    up = pixels.cut_regions(image, np.array([[0, 0, 40, 20.0]]), spec)[0]  # one side < S: linear
    assert np.array_equal(up, cv2.resize(image[:20, :40], (32, 32), interpolation=cv2.INTER_LINEAR))


def test_grey_planes_rgb_palette_and_pages(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # cv2 writes BGR: the file holds `rgb`
    assert np.array_equal(pixels.read_grey(tmp_path / "c.png", 0), rgb[..., 0])
    assert np.array_equal(pixels.read_grey(tmp_path / "c.png"), rgb.mean(axis=2).round().astype(np.uint8))
    pal = Image.fromarray(np.arange(80, dtype=np.uint8).reshape(8, 10)).convert("P")
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    pal.save(tmp_path / "p.png")
    expanded = np.asarray(pal.convert("RGB")).astype(np.float64)
    assert np.abs(pixels.read_grey(tmp_path / "p.png").astype(int) - expanded.mean(axis=2).round()).max() <= 1
    stack = np.stack([np.full((6, 7), v, np.uint16) for v in (100, 2000, 30000)])
    tifffile.imwrite(tmp_path / "s.tif", stack)
    assert (pixels.read_grey(tmp_path / "s.tif", 2) == 30000).all()
    with pytest.raises(ValueError, match=r"has 3 page\(s\), so channel 5 does not exist"):
        pixels.read_grey(tmp_path / "s.tif", 5)


def test_layout_boxes() -> None:
    windows = PreprocessSpec(input_size=16, layout=Layout("windows", window=50, stride=25))
    assert len(pixels.layout_boxes(100, 125, windows)) == 3 * 4
    with pytest.raises(SpecError, match=r"a 40x30 image is smaller than the model's 50 px window"):
        pixels.layout_boxes(30, 40, windows)
    margin = PreprocessSpec(input_size=16, region=Region(margin=0.25), layout=Layout("windows", window=60, stride=60))
    box = pixels.layout_boxes(60, 60, margin)
    assert box.tolist() == [[10.0, 10.0, 50.0, 50.0]]  # inner 40 px + 25 % margin per side = the 60 px window
    assert pixels.region_boxes(box, 60, 60, margin.region).tolist() == [[0, 0, 60, 60]]
    grid = PreprocessSpec(input_size=16, layout=Layout("grid", n_tiles=4))
    assert pixels.layout_boxes(96, 130, grid).tolist() == [[0, 0, 65, 48], [65, 0, 130, 48], [0, 48, 65, 96],
                                                           [65, 48, 130, 96]]
