"""stainfree.trust on synthetic logits, features and images: calibration, Mahalanobis, input contract."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from stainfree.inference.tiling import build_tiler
from stainfree.trust import calibration
from stainfree.trust.image_stats import (
    focus,
    image_statistics,
    intensity_percentiles,
    model_input_side,
)
from stainfree.trust.input_contract import check_input, fit_input_reference
from stainfree.trust.mahalanobis import fit_mahalanobis, mahalanobis_distance
from stainfree.trust.scoring import OODScorer


# ----------------------------------------------------------------------------- calibration
def _calibrated_logits(n: int, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax IS the probability the labels are drawn with (perfectly calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, size=(n, classes))
    probs = calibration.softmax(logits)
    target = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return logits, target


def test_ece_by_hand():
    # confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.55 (wrong) -> bins (0.867,0.933] and (0.533,0.6]
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    target = np.array([0, 1, 1, 1])
    # bin with 0.9s: acc 0.5, conf 0.9 -> |gap| 0.4, weight 2/4; bin with 0.55 and 0.6: acc 0.5, conf 0.575 -> 0.075
    assert calibration.expected_calibration_error(probs, target) == pytest.approx(0.5 * 0.4 + 0.5 * 0.075)
    bins = calibration.reliability_bins(probs, target)
    assert bins["count"].sum() == 4 and bins["count"][13] == 2 and bins["count"][8] == 2
    assert math.isnan(calibration.expected_calibration_error(np.zeros((0, 2)), np.zeros(0)))


def test_temperature_recovers_planted_overconfidence():
    logits, target = _calibrated_logits(4000)
    fitted = calibration.fit_temperature(5.0 * logits, target)
    assert fitted == pytest.approx(5.0, rel=0.1)
    m = calibration.calibration_metrics(5.0 * logits, target, fitted)
    assert m["ece_before"] > 0.1 and m["ece_after"] < 0.03 and m["ece_after"] < m["ece_before"] / 4
    assert m["nll_after"] < m["nll_before"]
    # a well-calibrated model keeps T close to 1
    assert calibration.fit_temperature(logits, target) == pytest.approx(1.0, abs=0.1)


def test_temperature_is_sane_on_tiny_or_degenerate_splits():
    assert calibration.fit_temperature(np.zeros((0, 2)), np.zeros(0)) == 1.0
    # 5 samples, all correct with big margins: plain NLL would drive T to 0
    logits = np.array([[4.0, -4.0], [3.0, -3.0], [-5.0, 5.0], [2.0, -2.0], [-3.0, 3.0]])
    t = calibration.fit_temperature(logits, np.array([0, 0, 1, 0, 1]))
    assert calibration.T_MIN < t < 1.0 and t > 0.2
    # all wrong: T grows but stays within the clamp
    assert calibration.fit_temperature(logits, np.array([1, 1, 0, 1, 0])) <= calibration.T_MAX


def test_calibration_block_is_plain():
    logits, target = _calibrated_logits(300)
    block = calibration.fit_calibration(3 * logits, target)
    assert set(block) >= {"temperature", "ece_val_before", "ece_val_after", "n_val"}
    assert all(isinstance(v, (int, float)) for v in block.values())
    assert block["ece_val_after"] < block["ece_val_before"]


# ----------------------------------------------------------------------------- Mahalanobis
def _gaussian_features(n: int, rng: np.random.Generator, means: np.ndarray, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = rng.integers(0, len(means), n)
    return means[classes] + rng.normal(size=(n, means.shape[1])) @ mix, classes


def test_mahalanobis_flags_far_features_and_about_one_percent_of_in_distribution():
    rng = np.random.default_rng(0)
    d = 32
    means = rng.normal(0, 3, size=(2, d))
    mix = rng.normal(size=(d, d)) / math.sqrt(d)  # correlated features
    train, cls = _gaussian_features(4000, rng, means, mix)
    ref = fit_mahalanobis(train, cls, max_samples=3000, seed=0)
    assert ref["n_fit"] == 3000 and ref["means"].shape == (2, d) and isinstance(ref["precision"], torch.Tensor)
    val, _ = _gaussian_features(3000, rng, means, mix)
    threshold = np.quantile(mahalanobis_distance(val, ref), 0.99)
    held_out, _ = _gaussian_features(20000, rng, means, mix)
    fpr = float(np.mean(mahalanobis_distance(held_out, ref) > threshold))
    assert 0.004 < fpr < 0.02
    far, _ = _gaussian_features(500, rng, means + rng.normal(0, 1, d) * 3, mix)
    assert np.mean(mahalanobis_distance(far, ref) > threshold) > 0.99
    with pytest.raises(ValueError, match="another model"):
        mahalanobis_distance(np.zeros((3, d + 1)), ref)


# ----------------------------------------------------------------------------- input contract
PREPROCESS = {"study": "jimt", "window": 64, "stride": 64, "input_size": 32,
              "bf_to8bit": {"method": "percentile", "low": 0.5, "high": 99.5}, "empty_filter": {"method": "none"}}


def _bright_field(seed: int, size: int = 256) -> np.ndarray:
    """A bright-field-like 16-bit frame: bright uneven background, darker cells with bright rims."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frame = 30000 + 3000 * np.sin(xx / size * 3 + seed) + rng.normal(0, 300, (size, size))
    for _ in range(rng.integers(25, 40)):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.uniform(5, 9)
        dist = np.hypot(yy - cy, xx - cx)
        frame -= 9000 * np.exp(-(dist / r) ** 2)
        frame += 4000 * np.exp(-((dist - r * 1.3) / 1.5) ** 2)
    return np.clip(frame, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def reference() -> dict:
    tiler = build_tiler(PREPROCESS)
    stats = [image_statistics(raw, tiler(raw).frame8, PREPROCESS) for raw in map(_bright_field, range(20))]
    return fit_input_reference(stats, window_layout=True)


def _flagged(raw: np.ndarray, reference: dict) -> dict[str, str]:
    frame8 = build_tiler(PREPROCESS)(raw).frame8
    return {f.check: f.reason for f in check_input(image_statistics(raw, frame8, PREPROCESS), reference) if f.flagged}


def test_input_contract_passes_held_out_frames(reference):
    assert reference["intensity_region"]["n"] == 20
    for seed in range(100, 110):
        assert _flagged(_bright_field(seed), reference) == {}, seed


def test_input_contract_flags_bit_depth_scale_blur_and_inversion(reference):
    raw = _bright_field(200)
    eight = (raw // 257).astype(np.uint8)
    assert "16-bit expected, got 8-bit" in _flagged(eight, reference)["bit_depth"]
    down = cv2.resize(raw, (64, 64), interpolation=cv2.INTER_AREA)
    assert "4.0x smaller than the training frames" in _flagged(down, reference)["size"]
    blurred = cv2.GaussianBlur(raw, (0, 0), 3)
    assert _flagged(blurred, reference)["focus"].startswith("blurred: focus")
    inverted = (65535 - raw).astype(np.uint16)
    assert _flagged(inverted, reference)["intensity"].startswith("intensity unlike training")
    dim = (raw // 64).astype(np.uint16)  # a 16-bit file holding 10-bit data
    assert "bits used" in _flagged(dim, reference)["bit_depth"]


def test_statistics_helpers():
    frame = np.arange(256, dtype=np.uint8).repeat(4).reshape(32, 32)
    assert intensity_percentiles(frame, (1, 50, 99)) == [2.0, 127.0, 253.0]
    assert focus(np.full((40, 40), 7, np.uint8)) == 0.0
    noisy = np.random.default_rng(0).integers(0, 255, (3000, 50), dtype=np.uint8)  # > one strip of rows
    lap = cv2.Laplacian(noisy, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)
    assert focus(noisy) == pytest.approx(lap.var(), rel=1e-6)
    # celldeath grid: the source pixels one model input covers grow with the field
    grid = {"study": "celldeath", "n_tiles": 4, "input_size": 64, "resize": "squish"}
    assert model_input_side(960, 1280, grid) == pytest.approx(math.sqrt(480 * 640))
    assert model_input_side(960, 1280, PREPROCESS) == 64.0


def test_scale_flag_for_a_crop_model_given_whole_fields():
    preprocess = {"study": "celldeath", "n_tiles": 1, "input_size": 32, "resize": "squish"}
    crops = [dict(image_statistics(_bright_field(s, 160), (_bright_field(s, 160) // 257).astype(np.uint8), preprocess))
             for s in range(5)]
    ref = fit_input_reference(crops, window_layout=False)
    field = _bright_field(9, 1040)
    stats = image_statistics(field, (field // 257).astype(np.uint8), preprocess)
    reasons = {f.check: f.reason for f in check_input(stats, ref) if f.flagged}
    assert reasons["scale"].startswith("scale 6.5x smaller than training tiles")
    assert "size" not in reasons  # grid layouts: the scale check says it already
    # 5 reference images are too few for the joint intensity region: per-percentile fences instead
    assert ref["intensity_region"] is None
    crop = _bright_field(20, 160)
    inverted8 = (255 - crop // 257).astype(np.uint8)
    stats = image_statistics(crop, inverted8, preprocess)
    assert any(f.check == "intensity" and f.flagged for f in check_input(stats, ref))


# ----------------------------------------------------------------------------- scorer
def test_scorer_combines_checks_and_normalises_scores(reference):
    rng = np.random.default_rng(1)
    means = rng.normal(0, 3, size=(2, 8))
    train, cls = _gaussian_features(2000, rng, means, np.eye(8))
    feats = fit_mahalanobis(train, cls)
    val, _ = _gaussian_features(500, rng, means, np.eye(8))
    thr = float(np.quantile(mahalanobis_distance(val, feats), 0.99))
    meta = {"preprocess": PREPROCESS, "ood": {"input": reference, "features": dict(
        feats, patch_threshold=thr, image_threshold=thr)}}
    scorer = OODScorer.from_meta(meta)
    assert OODScorer.from_meta({"preprocess": PREPROCESS}) is None
    raw = _bright_field(300)
    frame8 = build_tiler(PREPROCESS)(raw).frame8
    empty = np.array([False, True, False, False])
    ok, _ = _gaussian_features(3, rng, means, np.eye(8))
    verdict = scorer.score(raw, frame8, ok, empty)
    assert not verdict.ood_flag and verdict.ood_reason == "" and verdict.ood_score < 1
    assert np.isnan(verdict.patch_score[1]) and not verdict.patch_flag[1]
    far = ok + 50.0
    verdict = scorer.score(raw, frame8, far, empty)
    assert verdict.ood_flag and verdict.ood_reason.startswith("features unlike training")
    assert verdict.patch_flag[~empty].all() and verdict.ood_score > 1
    assert set(verdict.image_columns()) == {"ood_score", "ood_flag", "ood_reason"}
    eight = (raw // 257).astype(np.uint8)
    verdict = scorer.score(eight, frame8, np.zeros((0, 8)), np.ones(4, bool))  # no non-empty patch
    assert verdict.ood_flag and "16-bit expected, got 8-bit" in verdict.ood_reason
    with pytest.raises(ValueError, match="non-empty patches"):
        scorer.score(raw, frame8, ok[:2], empty)
