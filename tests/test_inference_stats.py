"""Plate statistics on synthetic numbers with known answers (IC50, Z', bootstrap coverage)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from stainfree.inference.dose_response import (DoseResponseError, fit_dose_response, logistic4,
                                               plot_dose_response)
from stainfree.inference.platemap import PlateMapError, match_images, read_plate_map
from stainfree.inference.wells import well_dead_fractions
from stainfree.inference.zprime import ZPrimeError, z_prime, z_prime_from_wells


def test_4pl_recovers_known_ic50_with_ci():
    rng = np.random.default_rng(1)
    doses = np.repeat([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30], 3)
    truth = logistic4(np.log10(doses), 0.05, 0.9, 1.5, math.log10(0.7))
    fit = fit_dose_response(doses, truth + rng.normal(0, 0.02, truth.shape), "cpt")
    assert fit.ic50 == pytest.approx(0.7, rel=0.15)
    assert fit.ic50_ci_low < 0.7 < fit.ic50_ci_high
    assert fit.hill == pytest.approx(1.5, rel=0.3)
    assert fit.r2 > 0.95 and not fit.extrapolated


def test_4pl_decreasing_response_and_zero_dose_ignored():
    doses = np.array([0, 0, 0.1, 1, 10, 100, 1000])
    resp = logistic4(np.log10(np.where(doses > 0, doses, 1.0)), 0.9, 0.1, 1.0, 1.0)
    resp[:2] = 0.9
    fit = fit_dose_response(doses, resp)
    assert fit.ic50 == pytest.approx(10, rel=0.05)
    assert fit.top < fit.bottom
    assert fit.n_points == 5


def test_4pl_plateaus_stay_inside_limits_for_fractions():
    """A shallow, noisy dead-fraction series must not level off below 0 % dead."""
    doses = np.repeat([0.01, 0.1, 1, 10, 100], 2)
    resp = np.array([0.13, 0.27, 0.37, 0.43, 0.58, 0.30, 0.65, 0.59, 0.61, 0.62])
    free = fit_dose_response(doses, resp)
    bounded = fit_dose_response(doses, resp, limits=(0.0, 1.0))
    assert free.bottom < 0  # the unconstrained fit wanders below zero on these points
    assert 0.0 <= bounded.bottom <= 1.0 and 0.0 <= bounded.top <= 1.0


def test_4pl_clear_errors():
    with pytest.raises(DoseResponseError, match="needs >= 4"):
        fit_dose_response([0.1, 1, 10], [0.1, 0.5, 0.9], "x")
    with pytest.raises(DoseResponseError, match="same at every dose"):
        fit_dose_response([0.1, 1, 10, 100], [0.3] * 4, "x")


def test_4pl_without_replicates_reports_missing_ci():
    doses = np.array([0.1, 1, 10, 100])
    fit = fit_dose_response(doses, logistic4(np.log10(doses), 0, 1, 1, 0.5))
    assert math.isnan(fit.ic50_ci_low) and "no IC50 CI" in fit.note


def test_plot_dose_response_writes_png(tmp_path):
    doses = np.array([0, 0.1, 0.3, 1, 3, 10, 30])
    resp = np.array([0.05, 0.06, 0.1, 0.3, 0.7, 0.85, 0.9])
    fit = fit_dose_response(doses, resp, "d")
    out = plot_dose_response(tmp_path / "dr.png", doses, resp, fit, resp - 0.05, resp + 0.05)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a lower CI bound that underflowed to 0 (seen with a steep, poorly determined fit) must not crash
    underflow = dataclasses.replace(fit, ic50_ci_low=0.0)
    assert plot_dose_response(tmp_path / "dr0.png", doses, resp, underflow).is_file()


def test_z_prime_known_value():
    pos = [0.8, 0.9, 1.0]  # mean 0.9, sd 0.1
    neg = [0.1, 0.2, 0.0]  # mean 0.1, sd 0.1
    assert z_prime(pos, neg) == pytest.approx(1 - 3 * 0.2 / 0.8)
    with pytest.raises(ZPrimeError, match=">= 2 wells"):
        z_prime([0.9], neg)
    wells = pd.DataFrame({"control": ["pos"] * 3 + ["neg"] * 3 + [""], "dead_fraction": pos + neg + [0.5]})
    report = z_prime_from_wells(wells)
    assert report["z_prime"] == pytest.approx(0.25) and report["interpretation"] == "marginal"


def test_read_plate_map_validates(tmp_path):
    good = tmp_path / "plate.csv"
    good.write_text("Image,Well,Compound,Dose,Control\na.tif,A1,DMSO,,neg\nb.tif,A1,DMSO,,neg\nc.tif,B1,cpt,1.5,\n")
    table = read_plate_map(good)
    assert table["dose"].isna().tolist() == [True, True, False] and table["control"].tolist()[0] == "neg"
    missing = tmp_path / "bad.csv"
    missing.write_text("image,compound\na.tif,x\n")
    with pytest.raises(PlateMapError, match=r"bad\.csv: missing column\(s\) well"):
        read_plate_map(missing)
    bad_dose = tmp_path / "dose.csv"
    bad_dose.write_text("image,well,compound,dose\na.tif,A1,x,lots\n")
    with pytest.raises(PlateMapError, match="not a number"):
        read_plate_map(bad_dose)
    bad_ctrl = tmp_path / "ctrl.csv"
    bad_ctrl.write_text("image,well,compound,control\na.tif,A1,x,positive\n")
    with pytest.raises(PlateMapError, match="'neg', 'pos'"):
        read_plate_map(bad_ctrl)
    with pytest.raises(PlateMapError, match="not found"):
        read_plate_map(tmp_path / "nope.csv")


def test_match_images_by_name_stem_or_path(tmp_path):
    plate = pd.DataFrame({"image": ["sub/a.tif", "b", "zzz.png"], "well": ["A1", "A2", "A3"],
                          "compound": ["x"] * 3, "dose": [1.0] * 3, "control": [""] * 3})
    out = match_images(plate, ["sub/a.tif", "other/b.png"])
    assert out["image_key"].tolist() == ["sub/a.tif", "other/b.png"]
    assert out.attrs["unmatched"] == ["zzz.png"]
    with pytest.raises(PlateMapError, match="none of its"):
        match_images(plate.iloc[2:], ["a.tif"])


def test_well_bootstrap_is_seeded_and_covers_truth():
    rng = np.random.default_rng(0)
    n_img, per = 4, 200
    dead = rng.binomial(per, 0.3, size=n_img)
    images = pd.DataFrame({"image": [f"i{i}" for i in range(n_img)], "n_patches": per + 10, "n_empty": 10,
                           "n_dead": dead, "sum_p_dead": dead * 0.8})
    plate = pd.DataFrame({"image": images["image"], "image_key": images["image"], "well": ["A1", "A1", "B1", "B1"],
                          "compound": "x", "dose": [np.nan, np.nan, 1.0, 1.0], "control": ""})
    w1 = well_dead_fractions(images, plate, seed=3)
    w2 = well_dead_fractions(images, plate, seed=3)
    pd.testing.assert_frame_equal(w1, w2)
    a1 = w1.set_index("well").loc["A1"]
    assert a1["n_patches"] == 2 * per and a1["dead_fraction"] == pytest.approx(dead[:2].sum() / (2 * per))
    assert a1["ci_low"] < a1["dead_fraction"] < a1["ci_high"]
    # binomial sd for 400 patches at p=0.3 is 0.023: the 95% CI should be about +-0.045 wide
    assert 0.06 < a1["ci_high"] - a1["ci_low"] < 0.12
    assert math.isnan(w1.set_index("well").loc["A1", "dose"]) and w1.set_index("well").loc["B1", "dose"] == 1.0
