"""End to end: train.py on the real U2OS fields (in-process) and a -m leave-one-cell-line-out sweep."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stainfree.tasks.train import train

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "celldeath-u2os" / "full"
TINY = ["trainer=cpu", "logger=csv", "model=resnet18", "model.input_size=32", "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null", "data.num_workers=0",
        "callbacks.eval_report.tsne_max_points=40"]


def test_train_cpt_vs_dmso_on_real_u2os(tmp_path: Path, compose_cfg, capsys: pytest.CaptureFixture) -> None:
    if not REAL.is_dir():
        pytest.skip("../shared/data/celldeath-u2os is not present")
    cfg = compose_cfg(["experiment=celldeath_cpt_vs_dmso", f"data.root={REAL}",
                                    "+trainer.limit_train_batches=2"] + TINY)
    metrics, objects = train(cfg)
    assert Path(metrics["best_ckpt"]).is_file()
    assert 0.0 <= metrics["test/bal_acc"] <= 1.0
    dm = objects["datamodule"]
    assert len(dm.split_table("test")) == 20 * 4  # replicate N3: 19 CPT + 1 DMSO fields, 4 tiles each
    assert "held-out replicate (test = N3)" in capsys.readouterr().out
    report = pd.read_csv(tmp_path / "run" / "celldeath_split_report.csv")
    assert report.loc[report["split"] == "test", "tiles"].sum() == 80
    assert (tmp_path / "data" / "cache" / "celldeath").is_dir()  # tile cache under paths.data_dir


@pytest.mark.slow
def test_loco_sweep_on_synthetic_lines(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "experiment=celldeath_loco",
           "data.holdout_cell_line=PC3,MCF7", "data.synthetic.lines=[PC3,MCF7]", "data.synthetic.images_per_group=2",
           "data.synthetic.replicates=1", "data.synthetic.size=[320,240]", "+trainer.limit_train_batches=2",
           f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "callbacks.eval_report=null"] + TINY[:-1] + ["model=squeezenet"]
    env = dict(os.environ, PROJECT_ROOT=str(ROOT), WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1")
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    for job, line in ((0, "PC3"), (1, "MCF7")):
        assert f"leave-one-cell-line-out (test = {line})" in out
        table = pd.read_csv(tmp_path / "sweep" / str(job) / "celldeath_split_table.csv")
        assert set(table.loc[table["split"] == "test", "cell_line"]) == {line}
        assert line not in set(table.loc[table["split"] != "test", "cell_line"])
        assert list((tmp_path / "sweep" / str(job) / "checkpoints").glob("best*.ckpt"))
