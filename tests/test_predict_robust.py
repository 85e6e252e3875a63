"""predict never loses results: bad images go to failed.csv, a killed run resumes to the same CSVs,
huge frames stay within memory, ambiguous plate-map entries are refused."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

import stainfree.tasks.predict as predict_task
from fixtures_images import write_image
from stainfree.inference.platemap import PlateMapError, match_images, read_plate_map
from stainfree.inference.predictor import PredictError
from stainfree.inference.results_log import IMAGES_LOG, PATCHES_LOG, ResumeError
from stainfree.tasks.predict import predict
from test_predict import GRID_PREPROCESS, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WINDOW_PREPROCESS = {"study": "jimt", "window": 64, "stride": 32, "input_size": 32}
FINAL_FILES = ("images.csv", "patches.csv", "failed.csv", "wells.csv")


@pytest.fixture(scope="module")
def grid_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "grid.ckpt", GRID_PREPROCESS)


@pytest.fixture(scope="module")
def window_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "window.ckpt", WINDOW_PREPROCESS)


def bad_folder(folder: Path) -> dict[str, str]:
    """Every kind of image a user's folder holds, good and bad: name -> expected 'ok' or a reason fragment."""
    for kind in ("grey16", "grey8", "rgb", "palette"):
        write_image(folder / f"{kind}.png", kind, (96, 128), seed=1)
    cv2.imwrite(str(folder / "rgba.png"), np.full((96, 128, 4), 120, np.uint8))
    write_image(folder / "tiny15x12.png", "grey8", (12, 15))
    write_image(folder / "tiny1x1.png", "grey8", (1, 1))
    good = (folder / "grey16.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "empty.tif").write_bytes(b"")
    tifffile.imwrite(folder / "twochan.tif", np.zeros((40, 40, 2), np.uint16), photometric="minisblack")
    tifffile.imwrite(folder / "stack.tif", np.zeros((2, 3, 40, 40), np.uint16))
    return {"grey16.png": "ok", "grey8.png": "ok", "rgb.png": "ok", "palette.png": "ok", "rgba.png": "ok",
            "tiny15x12.png": "ok", "tiny1x1.png": "too small", "truncated.png": "truncated",
            "empty.tif": "empty", "twochan.tif": "not one grey or RGB plane",
            "stack.tif": "not one grey or RGB plane"}


def test_predict_bad_images_go_to_failed_csv_and_the_run_goes_on(tmp_path, grid_ckpt, window_ckpt):
    expected = bad_folder(tmp_path / "raw")
    out = tmp_path / "out"
    summary = predict(grid_ckpt, tmp_path / "raw", out, device="cpu", progress=False, n_boot=200)
    ok = sorted(k for k, v in expected.items() if v == "ok")
    images = pd.read_csv(out / "images.csv")
    assert images["image"].tolist() == ok and summary.n_ok == len(ok)
    assert sorted(pd.read_csv(out / "patches.csv")["image"].unique()) == ok
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed.columns) == ["image", "reason"]
    assert failed["image"].tolist() == sorted(k for k, v in expected.items() if v != "ok")
    for image, reason in zip(failed["image"], failed["reason"]):
        assert image in reason and expected[image] in reason, (image, reason)
    # a 15x12 frame used to crash the overlay key (and the whole run): now it has its overlay
    assert cv2.imread(str(out / "overlays" / "tiny15x12_heatmap.png")) is not None
    assert not list(out.glob("*.partial.csv.*")) and not list(out.glob(".*"))  # no temp files left behind
    # a window model on a frame smaller than its window: the hint names a real (training) option
    with pytest.raises(PredictError, match=r"none of the 1 image") as info:
        predict(window_ckpt, tmp_path / "raw" / "tiny15x12.png", tmp_path / "o2", device="cpu", progress=False)
    reason = pd.read_csv(tmp_path / "o2" / "failed.csv")["reason"].iloc[0]
    assert "smaller than the model's 64 px window" in reason and "data.window" in reason
    assert "`window`" not in reason and "`window`" not in str(info.value)


def _run_until_interrupted(monkeypatch, after: int, **kwargs) -> None:
    """predict() that dies (like a kill) after ``after`` images were handled."""
    real = predict_task._predict_item
    calls = []

    def dying(*args, **kw):
        if len(calls) == after:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(predict_task, "_predict_item", dying)
    with pytest.raises(KeyboardInterrupt):
        predict(**kwargs)
    monkeypatch.setattr(predict_task, "_predict_item", real)


def _plate(path: Path, names: list[str]) -> Path:
    rows = [f"{n},W{i},cpt,{0.1 * (i + 1)}," for i, n in enumerate(names)]
    path.write_text("image,well,compound,dose,control\n" + "\n".join(rows) + "\n")
    return path


def test_predict_resume_after_interruption_gives_the_uninterrupted_csvs(tmp_path, grid_ckpt, monkeypatch):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(3)
    raw.mkdir()
    for i in range(7):
        tifffile.imwrite(raw / f"im{i}.tif", rng.integers(0, 60000, (64, 80), dtype=np.uint16))
    (raw / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    plate = _plate(tmp_path / "plate.csv", [f"im{i}.tif" for i in range(7)])
    common = dict(ckpt_path=grid_ckpt, input=raw, plate_map=plate, device="cpu", progress=False, n_boot=200)
    predict(output_dir=tmp_path / "full", **common)
    part = tmp_path / "part"
    _run_until_interrupted(monkeypatch, 5, output_dir=part, **common)  # broken.tif + 4 images
    done = pd.read_csv(part / IMAGES_LOG)["image"].tolist()
    assert len(done) == 4 and not (part / "images.csv").exists()  # on disk before the run ended
    # what a kill -9 can leave: patch rows of an image whose image row never came, a half-written line
    with open(part / PATCHES_LOG, "a") as f:
        f.write("im6.tif,0,0,False,0.5,0.5,dead\nim6.tif,0,32,Fa")
    with open(part / IMAGES_LOG, "a") as f:
        f.write("im5.tif,64,80,4,0")
    with pytest.raises(ResumeError, match="already holds a predict run"):
        predict(output_dir=part, **common)
    other = make_checkpoint(tmp_path / "other.ckpt", GRID_PREPROCESS, class_names=("alive", "dead"))
    with pytest.raises(ResumeError, match=r"resume=true: .* other settings \(checkpoint_sha256.*class_names"):
        predict(output_dir=part, resume=True, **dict(common, ckpt_path=other))
    summary = predict(output_dir=part, resume=True, **common)
    assert summary.n_resumed == 4 and summary.n_ok == 7 and [f["image"] for f in summary.failures] == ["broken.tif"]
    for name in FINAL_FILES:
        assert (part / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    overlays = sorted(p.name for p in (part / "overlays").iterdir())
    assert overlays == sorted(p.name for p in (tmp_path / "full" / "overlays").iterdir())


def test_predict_resume_option_needs_output_dir(cli, tmp_path, grid_ckpt):
    status, _, err = cli("stainfree.tasks.predict", "predict.py", f"ckpt_path={grid_ckpt}", f"input={tmp_path}",
                         f"paths.log_dir={tmp_path / 'logs'}", "resume=true", "device=cpu")
    assert status == 2 and err.strip().splitlines()[-1].startswith("predict.py: error: resume=true needs output_dir=")


def test_plate_map_name_in_two_subfolders_is_refused_not_matched_to_the_first(tmp_path, grid_ckpt):
    plate = read_plate_map(_plate(tmp_path / "plate.csv", ["a.png", "b"]))
    with pytest.raises(PlateMapError, match=r"entry 'a.png' matches 2 images \(s1/a.png, s2/a.png\).*relative"):
        match_images(plate, ["s1/a.png", "s2/a.png", "b.png"], tmp_path / "plate.csv")
    exact = read_plate_map(_plate(tmp_path / "exact.csv", ["s2/a.png", "s1/a.png", "a.png"]))
    matched = match_images(exact, ["s1/a.png", "s2/a.png", "a.png"])
    assert matched["image_key"].tolist() == ["s2/a.png", "s1/a.png", "a.png"]  # a relative path is exact
    for sub in ("s1", "s2"):
        write_image(tmp_path / "raw" / sub / "a.png", "grey8", (64, 64))
    with pytest.raises(PlateMapError, match="matches 2 images"):  # before any inference
        predict(grid_ckpt, tmp_path / "raw", tmp_path / "out", plate_map=tmp_path / "plate.csv", device="cpu",
                progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_predict_kill9_mid_run_then_resume_gives_the_same_csvs(tmp_path, window_ckpt):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(5)
    for i in range(16):
        tifffile.imwrite(raw / f"f{i:02d}.tif", rng.integers(0, 60000, (512, 512), dtype=np.uint16))
    (raw / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    plate = _plate(tmp_path / "plate.csv", [f"f{i:02d}.tif" for i in range(16)])
    predict(window_ckpt, raw, tmp_path / "full", plate_map=plate, device="cpu", progress=False, n_boot=200)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "predict.py"), f"ckpt_path={window_ckpt}", f"input={raw}", f"output_dir={out}",
           f"plate_map={plate}", f"paths.log_dir={tmp_path / 'logs'}", "device=cpu", "n_boot=200", "progress=false",
           "num_workers=0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        log = out / IMAGES_LOG
        if log.is_file() and log.read_text().count("\n") >= 4:  # header + 3 images
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = log.read_text().count("\n") - 1
    assert 3 <= n_done < 16 and not (out / "images.csv").exists()
    done = subprocess.run(cmd + ["resume=true"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "predicted 16/17 image(s) (" in done.stdout and "done by the earlier run" in done.stdout
    for name in FINAL_FILES:
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


@pytest.mark.slow
def test_predict_huge_16bit_frame_stays_within_memory(tmp_path, window_ckpt):
    raw = tmp_path / "raw"
    raw.mkdir()
    tifffile.imwrite(raw / "huge.tif", np.random.default_rng(0).integers(1000, 40000, (8000, 8000), dtype=np.uint16))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "predict.py"), f"ckpt_path={window_ckpt}", f"input={raw}",
           f"output_dir={tmp_path / 'out'}", f"paths.log_dir={tmp_path / 'logs'}", "device=cpu", "progress=false"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert done.returncode == 0, done.stderr[-2000:]
    images = pd.read_csv(tmp_path / "out" / "images.csv")
    assert images[["height", "width"]].values.tolist() == [[8000, 8000]] and images["n_patches"].iloc[0] == 249 ** 2
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / "huge_heatmap.png"))
    assert overlay.shape[1] == 2048  # drawn at most 2048 px wide
    if before < peak_mb * 1024:  # the largest child so far is this run: its peak is measured
        assert peak_mb < 2500, f"peak RSS {peak_mb:.0f} MB on an 8000x8000 uint16 frame"
