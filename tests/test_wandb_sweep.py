"""A real two-model sweep, then eval.py, logged offline to W&B: read back from the run files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from helpers.wandb_records import (
    read_artifacts,
    read_config,
    read_history,
    read_metric_definitions,
    read_run,
    read_summary,
    read_table,
    wait_until_closed,
)
from stainfree.data.jimt.synthetic import generate_dataset
from test_train import TINY, _data_overrides


def _run(args: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # HF_HUB_OFFLINE=1, W&B offline, WANDB_DATA_DIR: from conftest
    result = subprocess.run([sys.executable, *args, f"paths.log_dir={tmp_path / 'logs'}"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


def _run_file(job_dir: Path) -> Path:
    (run_file,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    wait_until_closed(run_file)
    return run_file


@pytest.mark.slow
def test_sweep_runs_share_a_group_and_carry_panels_table_and_summary(tmp_path: Path) -> None:
    manifest = generate_dataset(tmp_path / "jimt" / "synthetic", frames_notreat=6, frames_doxo=6, seed=3,
                                examples_per_class=4, verbose=False)
    _run([str(ROOT / "train.py"), "experiment=demo", "-m", "model=resnet18,squeezenet", *TINY,
          *_data_overrides(manifest), "trainer.max_epochs=2", "logger=wandb", "logger.wandb.log_model=true"], tmp_path)
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    group = f"train/multiruns/{sweep.name}"
    names = {}
    for job in ("0", "1"):
        run_file = _run_file(sweep / job)
        run = read_run(run_file)
        assert run["group"] == group and run["job_type"] == "train"
        assert {"experiment=demo", "trainer.max_epochs=2", "demo"} <= set(run["tags"])  # the sweep's fixed config
        assert not any(t.startswith("model=") for t in run["tags"])
        names[job] = run["name"]

        charts = read_config(run_file)["_wandb"]["visualize"]
        assert {charts[k]["panel_config"]["panelDefId"] for k in ("test/roc_curve", "test/pr_curve")} == {
            "wandb/area-under-curve/v0"}
        assert charts["test/confusion_chart"]["panel_config"]["panelDefId"] == "wandb/confusion_matrix/v1"

        table = read_table(run_file, "test/predictions")
        n_test = len((sweep / job / "eval" / "predictions.csv").read_text().splitlines()) - 1
        assert len(table["data"]) == min(n_test, 500) > 0
        images = [row[table["columns"].index("image")] for row in table["data"]]
        assert all(img["_type"] == "image-file" and Path(table["files"][img["path"]]).is_file() for img in images)

        assert read_metric_definitions(run_file)["val/bal_acc_best"]["summary"] == ["max"]
        best = [row["val/bal_acc_best"] for row in read_history(run_file) if "val/bal_acc_best" in row]
        summary = read_summary(run_file)
        assert len(best) == 2 and summary["val/bal_acc_best"] == {"max": pytest.approx(max(best))}
        assert summary["train/images_per_s"] > 0 and "test/bal_acc" in summary

        # log_model: best.ckpt alone, aliased best (last.ckpt is for resuming, not published)
        (model,) = [a for a in read_artifacts(run_file) if a["type"] == "model"]
        assert {"best", "latest"} <= set(model["aliases"])
        staged = Path(model["files"]["model.ckpt"])
        assert staged.stat().st_size == (sweep / job / "checkpoints" / "best.ckpt").stat().st_size
    assert names == {"0": "model=resnet18", "1": "model=squeezenet"}  # named by the swept override

    # eval.py joins the evaluated run's group as an eval job
    _run([str(ROOT / "eval.py"), f"ckpt_path={sweep / '0' / 'checkpoints' / 'best.ckpt'}", "logger=wandb",
          "trainer=cpu"], tmp_path)
    (eval_dir,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    run = read_run(_run_file(eval_dir))
    assert run["group"] == group and run["job_type"] == "eval" and run["name"] == "model=resnet18 (eval)"
    assert "test/roc_curve" in read_config(_run_file(eval_dir))["_wandb"]["visualize"]
