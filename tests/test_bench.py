"""The benchmark script runs end to end on the CPU (its numbers are never asserted: speed is measured, not tested)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)  # the subprocess alone may take 600 s
def test_bench_script_runs_and_writes_its_table(tmp_path: Path) -> None:
    env = dict(os.environ, WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--device", "cpu", "--models", "resnet18",
           "--steps", "1", "--frames", "1", "--batch-size", "8", "--out", str(tmp_path / "results"),
           f"paths.data_dir={tmp_path / 'data'}", "data.synthetic.frames_notreat=6", "data.stride=224"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = (tmp_path / "results").glob("bench_*.json")
    payload = json.loads(result.read_text())
    (row,) = payload["rows"]
    assert row["backbone"] == "resnet18" and row["bare_img_s"] > 0 and row["train_img_s"] > 0
    assert payload["predict_frames_s"] > 0 and payload["preprocess_frames_s"] > 0
    assert "| resnet18 |" in next((tmp_path / "results").glob("bench_*.md")).read_text()
