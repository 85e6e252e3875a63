"""End-to-end training through the Hydra configs: experiments, sweeps, failures, logged metrics."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from sklearn.metrics import balanced_accuracy_score

from helpers.wandb_records import (
    read_config,
    read_history,
    read_metric_definitions,
    read_summary,
    wait_until_closed,
)
from stainfree.data.jimt.synthetic import generate_dataset
from stainfree.models.checkpoint import read_checkpoint_meta
from stainfree.tasks.train import format_run_summary, optimized_value, train

ROOT = Path(__file__).resolve().parents[1]

# A few small frames and a tiny input keep every run to seconds on 2 CPU cores.
TINY = [
    "trainer=cpu",
    "data.stride=224",
    "data.num_workers=0",
    "data.batch_size=8",
    "model.input_size=32",
    "model.backbone.pretrained=false",
]


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic JIMT-1 set (both datasets) shared by the tests of this module."""
    out = tmp_path_factory.mktemp("jimt") / "synthetic"
    return generate_dataset(out, frames_notreat=6, frames_doxo=6, seed=3, examples_per_class=4, verbose=False)


def _data_overrides(manifest: Path) -> list[str]:
    return [f"data.manifest={manifest}", f"data.cache_dir={manifest.parent.parent / 'cache'}", "data.synthetic=null"]


def test_experiments_are_opt_in(compose_cfg) -> None:
    """No experiment: the model's and data's own settings (the demo's 48 px / lr 2e-3 only on request)."""
    cfg = compose_cfg(["model=resnet50", "trainer=cpu"])
    assert cfg.get("experiment_name") is None
    assert cfg.model.input_size == 224 and cfg.model.optimizer.lr == pytest.approx(1e-5)
    assert cfg.model.scheduler is None and cfg.trainer.max_epochs == 30
    demo = compose_cfg(["experiment=demo"])
    assert demo.experiment_name == "demo" and demo.model.input_size == 48 and demo.trainer.max_epochs == 8


def test_run_summary_shows_the_interval_and_test_size(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    """The summary the README shows: balanced accuracy with the report's 95% interval and n; paths as typed."""
    cfg = compose_cfg([])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / "eval").mkdir(parents=True)
    report = {"bal_acc_ci": {"level": 0.95, "lower": 0.78412, "upper": 0.90831}, "n": 188,
              "report_dir": str(tmp_path / "run" / "eval")}
    metrics = {"test/bal_acc": 0.857142, "test/auroc": 0.97551, "val/bal_acc_best": float("nan"),
               "best_ckpt": str(tmp_path / "run" / "checkpoints" / "best.ckpt")}
    lines = format_run_summary(cfg, metrics, report).splitlines()
    assert lines[1] == "== stainfree run: train (run) =="
    assert lines[2] == "  test/bal_acc       0.8571        (95% interval 0.784-0.908, Brodersen et al. 2010; 188 test patches)"
    assert lines[3] == "  test/auroc         0.9755"
    assert lines[4:] == ["  best checkpoint    run/checkpoints/best.ckpt", "  plots and tables   run/eval"]


EXPERIMENTS = ["demo", "notreat_resnet18", "notreat_squeezenet", "doxo_inception"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_per_experiment(experiment: str, tiny_manifest: Path, compose_cfg) -> None:
    overrides = [f"experiment={experiment}", "debug=fdr", *TINY, *_data_overrides(tiny_manifest)]
    if experiment == "doxo_inception":
        overrides.remove("model.input_size=32")  # Inception-v3 needs >= 75 px; keep its 299
        overrides.append("data.batch_size=2")
    cfg = compose_cfg(overrides)
    metrics, objects = train(cfg)
    assert "test/bal_acc" in metrics and 0.0 <= metrics["test/bal_acc"] <= 1.0
    assert objects["datamodule"].dataset == cfg.data.dataset


def test_train_logs_metrics_checkpoints_and_wandb_offline(tiny_manifest: Path, compose_cfg) -> None:
    cfg = compose_cfg(["experiment=demo", *TINY, *_data_overrides(tiny_manifest), "trainer.max_epochs=2", "logger=many_loggers"],
    )
    metrics, objects = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert metrics["best_ckpt"] == str(run / "checkpoints" / "best.ckpt")
    # the checkpoint carries what predict.py needs to tile raw frames like the training data
    meta = read_checkpoint_meta(run / "checkpoints" / "best.ckpt")
    assert meta.preprocess == objects["datamodule"].preprocess_config()
    assert meta.class_names == ["live", "dead"] and meta.config["model"]["input_size"] == cfg.model.input_size
    assert meta.wandb_id and meta.wandb_id in {p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}
    for key in ("train/loss", "train/bal_acc", "val/bal_acc", "val/auroc", "val/bal_acc_best", "test/bal_acc"):
        assert key in metrics, key

    # the logged test balanced accuracy is scikit-learn's on the same predictions
    outputs = objects["model"].test_outputs
    target, predicted = outputs["target"].numpy(), outputs["probs"].argmax(dim=1).numpy()
    assert len(target) == len(objects["datamodule"].split_table("test"))
    assert np.isclose(metrics["test/bal_acc"], balanced_accuracy_score(target, predicted), atol=1e-6)

    # W&B ran offline and its run file holds the stage/metric keys
    run_files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    wait_until_closed(run_files[0])
    logged = set().union(*read_history(run_files[0]))
    assert {"train/loss", "val/bal_acc", "val/auroc", "test/bal_acc", "test/auroc"} <= logged
    # the eval figures went to W&B as images too
    assert {"test/roc/_type", "test/confusion_matrix/_type", "test/gradcam_confident/_type"} <= logged
    # ... and what the dashboard compares runs by: best validation score as max, test metrics
    # as final values, time and speed, the interactive panels
    assert read_metric_definitions(run_files[0])["val/bal_acc_best"]["summary"] == ["max"]
    summary = read_summary(run_files[0])
    assert summary["val/bal_acc_best"] == {"max": pytest.approx(metrics["val/bal_acc_best"])}
    assert summary["test/bal_acc"] == pytest.approx(metrics["test/bal_acc"])
    assert summary["train/time_s"] > 0 and summary["train/images_per_s"] > 0
    charts = read_config(run_files[0])["_wandb"]["visualize"]
    assert {"test/roc_curve", "test/pr_curve", "test/confusion_chart"} <= set(charts)
    assert summary["test/predictions"]["nrows"] == len(target)  # fewer test patches than the cap
    assert "train/images_per_s" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_failing_job_in_multirun_does_not_raise(tiny_manifest: Path, compose_cfg) -> None:
    cfg = compose_cfg(["experiment=demo", *TINY, *_data_overrides(tiny_manifest), "model.backbone.name=not_a_backbone"]
    )
    with pytest.raises(Exception, match="unknown backbone 'not_a_backbone'"):
        train(cfg)  # a single run fails loudly
    hydra_node = HydraConfig.get()  # what task_wrapper asks to tell a sweep from a single run
    OmegaConf.set_readonly(hydra_node, False)
    hydra_node.mode = RunMode.MULTIRUN
    metrics, _ = train(cfg)  # inside a sweep: logged, recorded, the sweep goes on
    assert metrics["failed"] is True
    assert "not_a_backbone" in (Path(cfg.paths.output_dir) / "FAILED.txt").read_text()
    # a sweeper gets None (Optuna records a failed trial) rather than NaN (which crashes its search)
    assert optimized_value(cfg, metrics) is None
    assert optimized_value(cfg, {cfg.optimized_metric: float("nan")}) is None
    assert optimized_value(cfg, {cfg.optimized_metric: 0.75}) == 0.75


@pytest.mark.slow
@pytest.mark.timeout(900)  # the sweep alone may take 600 s
def test_multirun_over_two_models_writes_two_runs(tiny_manifest: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [
        # the README's form: -m between overrides (Hydra's own parser would reject it)
        sys.executable, str(ROOT / "train.py"), "experiment=demo", "-m", "model=resnet18,squeezenet",
        *TINY, *_data_overrides(tiny_manifest), "trainer.max_epochs=1", "logger=csv",
        f"paths.log_dir={tmp_path / 'logs'}", "callbacks.eval_report=null",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert (job / "csv" / "metrics.csv").read_text().count("test/bal_acc") == 1
    assert result.stdout.count("== stainfree run") == 2
