"""The bench: its statistics on planted numbers, and smoke runs (speed is measured, never asserted)."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.stats import Arm, Repetition, paired_ratio, run_for, run_interleaved, summarise  # noqa: E402

TINY_DATA = ["data.synthetic.frames_notreat=6", "data.stride=224"]


def _arm(name: str, rates: list[float], **settings) -> Arm:
    arm = Arm(name, "img/s", lambda: (0, 1.0), dict(settings))
    arm.reps = [Repetition(int(r * 10), 10.0, 1.0 + i, 1.5 + i, dict(settings)) for i, r in enumerate(rates)]
    return arm


def test_summary_is_median_with_min_max_and_load_range() -> None:
    summary = _arm("x", [100.0, 80.0, 104.0, 96.0, 300.0]).summary
    assert (summary.median, summary.low, summary.high, summary.n) == (100.0, 80.0, 300.0, 5)
    assert (summary.load_low, summary.load_high) == (1.0, 5.5)
    assert summary.spread == pytest.approx(2.2)
    assert summarise([math.nan, 2.0, 4.0]).median == 3.0 and summarise([]).n == 0


@pytest.mark.parametrize(("rates", "warned"), [([100.0, 105.0, 95.0], False),   # 10 %: the limit itself
                                               ([100.0, 106.0, 95.0], True),
                                               ([13.7, 78.1, 77.5], True)])   # issue 13's busy-machine figure
def test_spread_warning_above_ten_percent(rates: list[float], warned: bool) -> None:
    line = _arm("resnet18 (b) train path", rates).summary.warning("resnet18 (b) train path")
    assert (line is not None) == warned
    if warned:
        assert line.startswith("warning: resnet18 (b) train path: spread") and "load 1.00-3.50" in line


def test_paired_ratio_pairs_repetitions_taken_back_to_back() -> None:
    bare, real = _arm("a", [100.0, 50.0, 80.0]), _arm("b", [90.0, 45.0, 80.0])
    ratio = paired_ratio(real, bare)
    assert (ratio.median, ratio.low, ratio.high) == (pytest.approx(0.9), pytest.approx(0.9), pytest.approx(1.0))


def test_arms_take_turns_and_the_load_is_recorded() -> None:
    order: list[str] = []

    def arm(name: str) -> Arm:
        return Arm(name, "img/s", lambda: (order.append(name) or 10, 2.0))

    a, b = arm("a"), arm("b")
    run_interleaved([a, b], repeats=3, say=lambda _: None)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert [r.rate for r in a.reps] == [5.0, 5.0, 5.0]
    assert all(r.load_before >= 0 and r.load_after >= 0 for r in a.reps + b.reps)  # os.getloadavg on Linux


def test_run_for_is_time_based_and_skips_the_warm_up() -> None:
    calls = []

    def step() -> int:
        calls.append(1)
        return 4

    count, seconds = run_for(step, seconds=0.05, warmup=3)
    assert seconds >= 0.05 and count == 4 * (len(calls) - 3)


def test_workers_needed_from_the_one_worker_rate() -> None:
    loaders = [_arm("l0", [1000.0] * 3, input_size=224, batch_size=256, workers=0),
               _arm("l1", [900.0] * 3, input_size=224, batch_size=256, workers=1),
               _arm("l2", [1700.0] * 3, input_size=224, batch_size=256, workers=2),
               _arm("l1@299", [500.0] * 3, input_size=299, batch_size=256, workers=1)]
    lines = report.workers_needed(loaders, [report.StepRate("gpu", 4000.0, 224), report.StepRate("big", 2201, 299),
                                            report.StepRate("none measured", 10.0, 64)], cores=16)
    assert len(lines) == 2
    assert lines[0].startswith("a GPU stepping at 4,000 img/s (gpu) needs >= 5 workers of this CPU at 224 px")
    assert "best here: 1,700 with 2 workers" in lines[0] and "cores" not in lines[0]
    assert "needs >= 5 workers" in lines[1]
    assert "this machine has 2 cores" in report.workers_needed(loaders[:2], [report.StepRate("g", 4000, 224)], 2)[0]


def test_grid_table_compares_every_setting_with_the_rule() -> None:
    arms = [_arm(f"{t}/{w}", [r] * 3, threads=t, workers=w) for t, w, r in [(2, 0, 100.0), (1, 0, 50.0), (1, 1, 60.0)]]
    arms[0].reps[1].settings = dict(threads=1, workers=0)  # the rule chose again on a busy machine
    rows = report.grid_table(arms).splitlines()[2:]
    assert rows[0].startswith("| **runtime rule (default)** | 1-2 | 0 | 100.0 (100.0-100.0) | 1.00 |")
    assert rows[1].startswith("| fixed | 1 | 0 |") and "| 0.50 |" in rows[1] and "| 0.60 |" in rows[2]


@pytest.fixture
def restore_threads():
    import cv2
    import torch

    saved = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


def test_quick_loader_bench_writes_its_table(tmp_path: Path, restore_threads: None) -> None:
    from benchmarks.bench import main

    out = tmp_path / "results"
    assert main(["--quick", "--device", "cpu", "--arms", "loader", "--seconds", "0.2", "--loader-batch-size", "8",
                 "--out", str(out), f"paths.data_dir={tmp_path / 'data'}", *TINY_DATA]) == 0
    payload = json.loads(next(out.glob("bench_*.json")).read_text())
    loaders = payload["arms"]["loader"]
    assert [a["settings"]["workers"] for a in loaders] == [0, 1]
    assert all(len(a["repetitions"]) == 2 and a["summary"]["median"] > 0 for a in loaders)
    assert all(r["load_before"] is not None for a in loaders for r in a["repetitions"])
    assert payload["workers_needed"][0].startswith("a GPU stepping at 11,702 img/s")
    assert "| 224 | 8 | 1 |" in next(out.glob("bench_*.md")).read_text()


@pytest.mark.slow
@pytest.mark.timeout(900)  # the subprocess alone may take 600 s
def test_bench_script_runs_every_block(tmp_path: Path) -> None:
    env = dict(os.environ, WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--device", "cpu", "--grid",
           "--grid-threads", "1", "--grid-workers", "0", "1", "--out", str(tmp_path / "results"),
           f"paths.data_dir={tmp_path / 'data'}", *TINY_DATA]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(next((tmp_path / "results").glob("bench_*.json")).read_text())
    (ratio,) = payload["ratios"]
    assert ratio["backbone"] == "resnet18" and ratio["median"] > 0
    names = [a["name"] for a in payload["arms"]["step"]]
    assert names == ["resnet18 (a) bare step", "resnet18 (b) train path"]
    assert all(len(a["repetitions"]) == 2 for key in payload["arms"] for a in payload["arms"][key])
    grid = payload["arms"]["grid"]
    assert grid[0]["name"] == "resnet18 (b) runtime rule" and [a["settings"]["workers"] for a in grid[1:]] == [0, 1]
    assert all(a["summary"]["median"] > 0 for a in payload["arms"]["predict"])
    text = next((tmp_path / "results").glob("bench_*.md")).read_text()
    assert re.search(r"\| resnet18 \| 64 \| 8 \| [12](-2)? / 0 \|", text) and "raw frames/s" in text
