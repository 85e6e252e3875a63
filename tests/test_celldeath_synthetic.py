"""Synthetic TLM generator: deterministic, parseable names, visible per-line/treatment differences, safe writes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from stainfree.data.celldeath import synthetic
from stainfree.data.celldeath.naming import NameScheme
from stainfree.data.imageio import read_image


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_deterministic_and_named_for_the_default_parser(tmp_path: Path) -> None:
    kw = dict(lines=["PC3", "U2OS"], images_per_group=1, replicates=2, time_points=[1], seed=3, size=(320, 240))
    a = synthetic.generate(tmp_path / "a", **kw)
    b = synthetic.generate(tmp_path / "b", **kw)
    assert _digest(a) == _digest(b)
    pngs = sorted(a.glob("*.png"))
    assert len(pngs) == 2 * 2 * 2
    parsed = [NameScheme().parse(p.name) for p in pngs]
    assert {(p.cell_line, p.label, p.replicate, p.time) for p in parsed} == {
        (ln, lb, r, 1) for ln in ("PC3", "U2OS") for lb in ("control", "celldeath") for r in ("N1", "N2")}
    img = read_image(pngs[0])
    assert img.dtype == np.uint8 and img.shape == (240, 320)
    c = synthetic.generate(tmp_path / "c", **dict(kw, seed=4))
    assert _digest(c) != _digest(a)


def test_full_size_field_and_structure() -> None:
    dmso = synthetic.make_image("PC3", "DMSO", 1, 1, 1, seed=0)
    assert dmso.shape == (960, 1280) and dmso.dtype == np.uint8
    assert 4 < dmso.std() < 60 and 0 < dmso.min() and dmso.max() < 255  # low-contrast like TLM, not clipped
    # replicate optics shift the whole field; the treatment changes cells, not the background level
    rep2 = synthetic.make_image("PC3", "DMSO", 1, 2, 1, seed=0)
    assert abs(float(np.median(rep2)) - float(np.median(dmso))) > 1
    assert synthetic.time_effect("DMSO", 3, 1.0) == 0 and synthetic.time_effect("CPT", 1, 1.0) == 1.0
    assert synthetic.line_style("PC3") != synthetic.line_style("MCF7")
    assert synthetic.line_style("LineX") == synthetic.line_style("LineX")  # unknown names: stable style


def test_cpt_brightens_the_cell_halo() -> None:
    def bright(treatment: str) -> float:
        return float(np.mean([np.percentile(synthetic.make_image(line, treatment, 1, 1, i, size=(640, 480)), 99.5)
                              for line in ("PC3", "MCF7", "U2OS") for i in (1, 2, 3)]))

    assert bright("CPT") > bright("DMSO") + 1


def test_reuses_same_set_refuses_other_folders(tmp_path: Path) -> None:
    kw = dict(lines=["A", "B"], images_per_group=1, replicates=1, size=(64, 48))
    out = synthetic.generate(tmp_path / "s", **kw)
    before = _digest(out)
    synthetic.generate(tmp_path / "s", **kw)  # same arguments: reused untouched
    assert _digest(out) == before
    with pytest.raises(FileExistsError, match="choose another folder"):
        synthetic.generate(tmp_path / "s", **dict(kw, seed=1))
    (tmp_path / "mine").mkdir()
    with pytest.raises(FileExistsError):
        synthetic.generate(tmp_path / "mine", **kw)
    with pytest.raises(ValueError, match="no '_'"):
        synthetic.generate(tmp_path / "bad", lines=["PC_3"], size=(64, 48))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    synthetic.main(["--out", str(tmp_path / "cli"), "--lines", "PC3,MCF7", "--images-per-group", "1",
                    "--replicates", "1", "--size", "64x48", "--seed", "0"])
    assert "wrote 4 images" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").glob("*.png"))) == 4
