"""celldeath file-name parser: all 45 real names, the tool's control/celldeath convention, errors."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from stainfree.data.celldeath.catalog import UnlabelledImagesError, scan_folder
from stainfree.data.celldeath.naming import NameParseError, NameScheme

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "data" / "celldeath-u2os" / "full"


def test_all_45_real_names_parse() -> None:
    if not REAL.is_dir():
        pytest.skip("../shared/data/celldeath-u2os is not present")
    names = sorted(p.name for p in REAL.glob("*.png"))
    assert len(names) == 45
    parsed = {n: NameScheme().parse(n) for n in names}
    assert all(p.cell_line == "U2OS" and p.time == 1 for p in parsed.values())
    # README: 22 CPT fields (19 of them N3), 23 DMSO fields (all N1 but the one DMSO2 N3)
    counts = Counter((p.label, p.replicate) for p in parsed.values())
    assert counts == {("celldeath", "N3"): 19, ("celldeath", "N1"): 2, ("celldeath", "N2"): 1,
                      ("control", "N1"): 22, ("control", "N3"): 1}
    assert parsed["U2_DMSO2_1H_RGB_0052_N3.png"].treatment_token == "DMSO2"
    assert parsed["U2_CPT2_1h_RGB_0001_N2.png"].label == "celldeath"


@pytest.mark.parametrize("name, label, line, time, rep", [
    ("U2_CPT2_1H_RGB_0046_N3.png", "celldeath", "U2OS", 1, "N3"),
    ("U2_DMSO_1h_RGB_0025_N1.png", "control", "U2OS", 1, "N1"),
    # the authors' tiles keep the original suffix inside the name
    ("U2_DMSO2_1H_RGB_0052_N3.png_01_02.png", "control", "U2OS", 1, "N3"),
    ("H9_CPT1_1H_N4_RGB_0041.png_01_01.png", "celldeath", "H9", 1, "N4"),
    ("MCF7_DMSO2_1HS_RGB_0021.png", "control", "MCF7", 1, None),
    # the original tool's own label words, anywhere in the name
    ("PC3_control_3h_0001_N2.tif", "control", "PC3", 3, "N2"),
    ("celldeath_0007.jpg", "celldeath", None, None, None),
    ("T47Dcelldeath12.png", "celldeath", None, None, None),
    ("ips1 CONTROL 0h n4.png", "control", "iPS1", 0, "N4"),
])
def test_token_scheme(name: str, label: str, line: str | None, time: int | None, rep: str | None) -> None:
    p = NameScheme().parse(name)
    assert (p.label, p.cell_line, p.time, p.replicate) == (label, line, time, rep)


def test_unknown_and_ambiguous_names() -> None:
    scheme = NameScheme()
    assert scheme.parse("U2_RGB_0001_N1.png").label is None
    with pytest.raises(NameParseError, match="several labels"):
        scheme.parse("PC3_CPT_DMSO_1h.png")
    with pytest.raises(NameParseError, match="several cell lines"):
        scheme.parse("PC3_MCF7_CPT_1h.png")


def test_scheme_from_config_custom_tokens() -> None:
    scheme = NameScheme.from_config({"labels": {"control": ["untreated"], "celldeath": ["stauro\\d*"]},
                                     "cell_lines": {"HeLa": ["hela"]}, "separators": "[-_]+",
                                     "default_cell_line": "unknown"})
    assert scheme.parse("HeLa-stauro2-2h-N1.png").label == "celldeath"
    assert scheme.parse("untreated-5.png").cell_line == "unknown"
    assert scheme.parse("U2_DMSO_1h.png").label is None  # the default tables were replaced
    with pytest.raises(ValueError, match="unknown keys"):
        NameScheme.from_config({"label": {}})
    with pytest.raises(ValueError, match="not a valid regex"):
        NameScheme.from_config({"labels": {"control": ["(unclosed"]}})


def _touch_images(folder: Path, names: list[str]) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        cv2.imwrite(str(folder / n), np.zeros((8, 8), np.uint8))


def test_unlabelled_files_are_reported_not_silently_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = ["PC3_CPT_1h_0001_N1.png", "PC3_DMSO_1h_0001_N1.png"] + [f"PC3_blank_{i}_N1.png" for i in range(7)]
    _touch_images(tmp_path, names)
    with pytest.raises(UnlabelledImagesError, match=r"7 file\(s\).*PC3_blank_0_N1.png.*\(\+2 more\).*on_unlabelled=warn"):
        scan_folder(tmp_path, NameScheme(), "error")
    with caplog.at_level(logging.WARNING):
        table = scan_folder(tmp_path, NameScheme(), "warn")
    assert sorted(table["label"]) == ["celldeath", "control"]
    assert table.attrs["n_unlabelled"] == 7
    assert "7 file(s)" in caplog.text and "PC3_blank_0_N1.png" in caplog.text
    with pytest.raises(ValueError, match="on_unlabelled"):
        scan_folder(tmp_path, NameScheme(), "ignore")
