"""eval.py's task: a checkpoint alone reproduces the training-time test metrics; clear errors otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from stainfree.models.checkpoint import CheckpointError
from stainfree.tasks.evaluate import CheckpointMismatchError, evaluate
from stainfree.tasks.train import train

TINY = [
    "experiment=demo",
    "logger=csv",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "model.input_size=32",
    "data.num_workers=0",
    "data.synthetic.frames_notreat=12",
    "callbacks.eval_report.tsne_max_points=60",
]


def compose_config(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` with data, logs and the run folder under ``tmp_path``, as in a real run."""
    GlobalHydra.instance().clear()
    run_dir = tmp_path / "run"
    base = [f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={run_dir}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=base + overrides)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.hydra.mode = "RUN"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as @hydra.main hands it to the task: ${hydra:...} resolves via HydraConfig
        cfg.paths.output_dir = str(run_dir)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny demo training (synthetic data, 32 px ResNet-18, 1 epoch) shared by the tests."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = compose_config(tmp, TINY)
    metrics, _ = train(cfg)
    assert Path(metrics["best_ckpt"]).is_file()
    return tmp, metrics


def _eval_cfg(tmp: Path, overrides: list[str]):
    return compose_config(tmp, overrides + ["tsne_max_points=60"], config_name="eval")


def test_eval_reproduces_training_test_metrics(trained, tmp_path):
    train_dir, logged = trained
    training_report = json.loads((train_dir / "run" / "eval" / "metrics.json").read_text())
    cfg = _eval_cfg(tmp_path, [f"ckpt_path={logged['best_ckpt']}"])  # no experiment: the checkpoint's config
    metrics, objects = evaluate(cfg)
    report = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    # Same numbers as the training run's trainer.test(ckpt_path="best") logged ...
    assert report["bal_acc"] == pytest.approx(logged["test/bal_acc"], abs=1e-6)
    assert report["acc"] == pytest.approx(logged["test/acc"], abs=1e-6)
    assert report["auroc"] == pytest.approx(logged["test/auroc"], abs=1e-6)
    assert metrics["test/bal_acc"] == pytest.approx(logged["test/bal_acc"], abs=1e-7)
    # ... and the very same report the training-time callback wrote.
    assert report["confusion_matrix"] == training_report["confusion_matrix"]
    for key in ("n", "bal_acc_ci", "recall", "pearson_r"):
        assert report[key] == pytest.approx(training_report[key]), key
    for name in ("roc", "confusion_matrix", "pi_vs_score", "pi_histogram", "tsne", "tsne_thumbnails",
                 "gradcam_confident"):
        assert (tmp_path / "run" / "eval" / f"{name}.png").is_file(), name
    assert (tmp_path / "run" / "eval" / "predictions.csv").is_file()


@pytest.mark.slow
def test_eval_with_matching_experiment(trained, tmp_path):
    train_dir, logged = trained
    cfg = _eval_cfg(tmp_path, [f"ckpt_path={logged['best_ckpt']}", *[o for o in TINY if o.split("=")[0] in
                    ("experiment", "model.input_size", "data.num_workers", "data.synthetic.frames_notreat")],
                    f"paths.data_dir={train_dir / 'data'}"])
    _, objects = evaluate(cfg)
    assert objects["report"]["bal_acc"] == pytest.approx(logged["test/bal_acc"], abs=1e-6)


def test_eval_refuses_checkpoint_of_another_config(trained, tmp_path):
    _, logged = trained
    cfg = _eval_cfg(tmp_path, [f"ckpt_path={logged['best_ckpt']}", "experiment=demo", "model=squeezenet"])
    with pytest.raises(CheckpointMismatchError, match="backbone: checkpoint resnet18, config squeezenet"):
        evaluate(cfg)
    cfg = _eval_cfg(tmp_path, [f"ckpt_path={logged['best_ckpt']}", "experiment=demo"])  # demo is 64 px
    with pytest.raises(CheckpointMismatchError, match="input size: checkpoint 32, config 64"):
        evaluate(cfg)


def test_eval_errors_on_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="ckpt_path is required"):
        evaluate(_eval_cfg(tmp_path, []))
    with pytest.raises(CheckpointError, match="no such file"):
        evaluate(_eval_cfg(tmp_path, [f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a stainfree checkpoint"):
        evaluate(_eval_cfg(tmp_path, [f"ckpt_path={foreign}"]))
