"""JIMT-1 preprocessing: thresholds, empty filters, splits, cache reuse, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from stainfree.data.jimt import bitdepth, labels, splits
from stainfree.data.jimt.manifest import ManifestError
from stainfree.data.jimt.preprocess import FrameError, normalise_config, prepare
from stainfree.data.jimt.synthetic import generate_dataset, generate_frame
from stainfree.data.jimt.tiling import window_means, window_origins


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """8 notreat frames (one forced empty) + 2 doxo frames, with empty/nonempty example patches."""
    out = tmp_path_factory.mktemp("jimt") / "syn"
    return generate_dataset(out, frames_notreat=8, frames_doxo=2, seed=1, examples_per_class=8, verbose=False)


def test_gmm_recovers_planted_mixture() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(225.0, 35.0, 3000), rng.normal(550.0, 150.0, 3000)])
    t = labels.gmm_thresholds(values, seed=0)
    assert t.live_mean == pytest.approx(225.0, abs=8) and t.live_sd == pytest.approx(35.0, abs=6)
    assert t.dead_mean == pytest.approx(550.0, abs=20) and t.dead_sd == pytest.approx(150.0, abs=15)
    assert t.live_below == pytest.approx(t.live_mean + t.live_sd)
    assert t.dead_above == pytest.approx(t.dead_mean - t.dead_sd)
    lab = labels.assign_labels(np.array([200.0, 300.0, 800.0]), t)
    assert lab.tolist() == [labels.LIVE, labels.AMBIGUOUS, labels.DEAD]


def test_gmm_refuses_single_mode_and_fixed_validates() -> None:
    with pytest.raises(ValueError, match="overlap|fixed"):
        labels.gmm_thresholds(np.random.default_rng(0).normal(200, 10, 500))
    with pytest.raises(ValueError, match="live_below"):
        labels.fixed_thresholds(500, 300)


def test_bitdepth_methods() -> None:
    frame = np.linspace(1000, 3000, 10000).reshape(100, 100).astype(np.uint16)
    out, (lo, hi) = bitdepth.to_uint8(frame, bitdepth.check_config({"method": "minmax"}))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255 and (lo, hi) == (1000, 3000)
    out, _ = bitdepth.to_uint8(frame, bitdepth.check_config({"method": "fixed", "lo": 2000, "hi": 4000}))
    assert out[0, 0] == 0 and out[-1, -1] == 128
    with pytest.raises(ValueError, match="lo and bf_to8bit.hi"):
        bitdepth.check_config({"method": "fixed"})


def test_split_by_frame_no_leak() -> None:
    ids = [f"f{i:02d}" for i in range(30)]
    cfg = splits.check_config({"train": 0.8, "val": 0.1, "test": 0.1, "seed": 5})
    a = splits.split_frames(ids, ["notreat"] * 30, cfg)
    assert a == splits.split_frames(ids, ["notreat"] * 30, cfg)  # seeded
    counts = pd.Series(a).value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (24, 3, 3)
    leaky = pd.DataFrame({"frame_id": ["f00", "f00"], "split": ["train", "test"]})
    with pytest.raises(splits.SplitLeakError, match="f00"):
        splits.check_no_leak(leaky)


def test_prepare_index_summary_and_cache_reuse(tiny_set: Path, tmp_path: Path) -> None:
    cfg = normalise_config(window=224, stride=224, split={"seed": 0})
    first = prepare(tiny_set, tmp_path / "cache", cfg, verbose=False)
    assert first.built
    index = first.index()
    expected_cols = {"frame_id", "dataset", "frame_idx", "y", "x", "pi_mean", "empty", "empty_score",
                     "label", "target", "split"}
    assert expected_cols <= set(index.columns)
    assert index.groupby("frame_id")["split"].nunique().max() == 1  # no frame in two splits
    thr = json.loads((first.folder / "thresholds.json").read_text())
    assert thr["method"] == "gmm" and thr["live_below"] < thr["dead_above"]
    summary = first.summary()
    assert summary.set_index("dataset").loc["notreat", "raw"] == 8
    row = summary.set_index("dataset").loc["notreat"]
    assert row["live"] + row["dead"] == row["patches"] == ((index["dataset"] == "notreat") & (index["target"] >= 0)).sum()
    assert (first.folder / "pi_histogram.png").stat().st_size > 1000
    assert "train L/D" in (first.folder / "summary.md").read_text()

    stamp = (first.folder / "index.csv").stat().st_mtime_ns
    again = prepare(tiny_set, tmp_path / "cache", cfg, verbose=False)
    assert not again.built and again.folder == first.folder
    assert (first.folder / "index.csv").stat().st_mtime_ns == stamp

    relabel = prepare(tiny_set, tmp_path / "cache", normalise_config(
        window=224, stride=224, split={"seed": 0}, labels_cfg={"method": "fixed", "live_below": 250,
                                                                  "dead_above": 400}), verbose=False)
    assert relabel.built and relabel.folder != first.folder
    assert relabel.frames_dir == first.frames_dir  # decoded frames re-used when only labels change
    restride = prepare(tiny_set, tmp_path / "cache", normalise_config(window=224, stride=112), verbose=False)
    assert restride.frames_dir != first.frames_dir
    assert len(restride.index()) > len(index)


def _blank_region_manifest(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Two synthetic frames whose left 448 columns are replaced by flat, noisy background."""
    rows = []
    rng = np.random.default_rng(0)
    coverage = []
    for i in range(2):
        f = generate_frame("notreat", i, seed=7, n_frames=8)
        bf, pi = f.bf.astype(np.float64), f.pi.copy()
        level = np.median(bf[~f.coverage]) if (~f.coverage).any() else np.median(bf)
        bf[:, :448] = level + rng.normal(0, 120, (bf.shape[0], 448))
        pi[:, :448] = 200
        cov = f.coverage.copy()
        cov[:, :448] = False
        coverage.append(cov)
        tifffile.imwrite(tmp_path / f"bf{i}.tif", np.clip(bf, 0, 65535).astype(np.uint16))
        tifffile.imwrite(tmp_path / f"pi{i}.tif", pi)
        rows.append({"frame_id": f"fr{i}", "dataset": "notreat", "bf_path": f"bf{i}.tif", "pi_path": f"pi{i}.tif"})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest, np.stack(coverage)


def test_variance_filter_removes_planted_blank_region(tmp_path: Path) -> None:
    manifest, coverage = _blank_region_manifest(tmp_path)
    cfg = normalise_config(stride=112, empty_filter_cfg={"method": "variance"},
                           labels_cfg={"method": "fixed", "live_below": 260, "dead_above": 400})
    index = prepare(manifest, tmp_path / "cache", cfg, verbose=False).index()
    blank = index["x"] + 224 <= 448 - 64  # away from the pasted seam (a real intensity step)
    assert blank.sum() == 2 * 8 * 2 and index.loc[blank, "empty"].all()
    origins = index[["y", "x"]].to_numpy()
    cov = np.concatenate([window_means(coverage[k].astype(np.float32), origins[index["frame_idx"] == k], 224)
                          for k in range(2)])
    occupied = cov > 0.15
    assert occupied.sum() > 10 and (~index.loc[occupied, "empty"]).mean() > 0.95


def test_bf8_std_statistic_option(tmp_path: Path) -> None:
    manifest, _ = _blank_region_manifest(tmp_path)
    cfg = normalise_config(stride=224, empty_filter_cfg={"method": "variance", "statistic": "bf8_std",
                                                         "threshold": 1e6},
                           labels_cfg={"method": "fixed", "live_below": 260, "dead_above": 400})
    index = prepare(manifest, tmp_path / "cache", cfg, verbose=False).index()
    assert index["empty"].all() and (index["label"] == "empty").all()


def test_svm_filter_fits_and_predicts(tiny_set: Path, tmp_path: Path) -> None:
    pytest.importorskip("timm")
    examples = tiny_set.parent / "empty_examples"
    cfg = normalise_config(stride=224, empty_filter_cfg={
        "method": "svm", "examples_dir": str(examples), "backbone": "resnet18", "pretrained": False,
        "feature_size": 32, "batch_size": 32})
    prepared = prepare(tiny_set, tmp_path / "cache", cfg, verbose=False)
    report = prepared.empty_filter_report()
    assert report["method"] == "svm" and 0.0 <= report["cv_f1"] <= 1.0
    assert (prepared.folder / "svm.joblib").is_file()
    index = prepared.index()
    assert index["empty_score"].notna().all() and index["empty"].any() and not index["empty"].all()


def test_svm_examples_folder_errors(tiny_set: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        prepare(tiny_set, tmp_path / "cache", normalise_config(
            empty_filter_cfg={"method": "svm", "examples_dir": str(missing), "pretrained": False}), verbose=False)
    (tmp_path / "ex" / "empty").mkdir(parents=True)
    (tmp_path / "ex" / "nonempty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        prepare(tiny_set, tmp_path / "cache", normalise_config(
            empty_filter_cfg={"method": "svm", "examples_dir": str(tmp_path / "ex"), "pretrained": False}),
            verbose=False)


def test_clear_errors_for_bad_manifests(tmp_path: Path) -> None:
    cfg = normalise_config()
    with pytest.raises(ManifestError, match=r"manifest not found: .*missing\.csv.*stainfree\.data\.jimt\.synthetic"):
        prepare(tmp_path / "missing.csv", tmp_path / "cache", cfg)
    bad_cols = tmp_path / "cols.csv"
    bad_cols.write_text("frame_id,bf_path\na,b.tif\n")
    with pytest.raises(ManifestError, match="dataset"):
        prepare(bad_cols, tmp_path / "cache", cfg)

    good = np.full((300, 300), 1000, np.uint16)
    tifffile.imwrite(tmp_path / "bf.tif", good)
    tifffile.imwrite(tmp_path / "pi.tif", good)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    tifffile.imwrite(tmp_path / "small.tif", good[:200])
    cases = {"broken.tif": "broken.tif", "gone.tif": "gone.tif", "small.tif": "small.tif"}
    for pi_name, must_name in cases.items():
        m = tmp_path / f"m_{pi_name}.csv"
        pd.DataFrame([{"frame_id": "x", "dataset": "notreat", "bf_path": "bf.tif", "pi_path": pi_name}]).to_csv(m, index=False)
        with pytest.raises(FrameError, match=must_name) as err:
            prepare(m, tmp_path / "cache", cfg)
        if pi_name == "small.tif":
            assert "bf.tif" in str(err.value)  # shape mismatch names both files
    assert not list((tmp_path / "cache").glob("jimt-*"))  # nothing half-built left behind


def test_window_origins_cover_frame() -> None:
    o = window_origins(1024, 1344, 224, 112)
    assert len(o) == 8 * 11 and o[:, 0].max() + 224 <= 1024 and o[:, 1].max() + 224 <= 1344
    with pytest.raises(ValueError, match="larger than"):
        window_origins(100, 100, 224, 224)
