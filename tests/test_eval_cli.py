"""eval.py's task: a checkpoint alone reproduces the training-time test metrics; clear errors otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compose_cfg_in) -> tuple[Path, dict]:
    """One tiny demo training (synthetic data, 32 px ResNet-18, 1 epoch) shared by the tests."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = compose_cfg_in(tmp, TINY)
    metrics, _ = train(cfg)
    assert Path(metrics["best_ckpt"]).is_file()
    return tmp, metrics


def _eval_cfg(compose_cfg, overrides: list[str]):
    return compose_cfg(overrides + ["tsne_max_points=60"], config_name="eval")


def test_eval_reproduces_training_test_metrics(trained, tmp_path, compose_cfg):
    train_dir, logged = trained
    training_report = json.loads((train_dir / "run" / "eval" / "metrics.json").read_text())
    cfg = _eval_cfg(compose_cfg, [f"ckpt_path={logged['best_ckpt']}"])  # no experiment: the checkpoint's config
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
def test_eval_with_matching_experiment(trained, compose_cfg):
    train_dir, logged = trained
    cfg = _eval_cfg(compose_cfg, [f"ckpt_path={logged['best_ckpt']}", *[o for o in TINY if o.split("=")[0] in
                    ("experiment", "model.input_size", "data.num_workers", "data.synthetic.frames_notreat")],
                    f"paths.data_dir={train_dir / 'data'}"])
    _, objects = evaluate(cfg)
    assert objects["report"]["bal_acc"] == pytest.approx(logged["test/bal_acc"], abs=1e-6)


def test_eval_refuses_checkpoint_of_another_config(trained, compose_cfg):
    _, logged = trained
    cfg = _eval_cfg(compose_cfg, [f"ckpt_path={logged['best_ckpt']}", "experiment=demo", "model=squeezenet"])
    with pytest.raises(CheckpointMismatchError, match="backbone: checkpoint resnet18, config squeezenet"):
        evaluate(cfg)
    cfg = _eval_cfg(compose_cfg, [f"ckpt_path={logged['best_ckpt']}", "experiment=demo"])  # demo is 64 px
    with pytest.raises(CheckpointMismatchError, match="input size: checkpoint 32, config 64"):
        evaluate(cfg)


def test_eval_errors_on_missing_or_foreign_checkpoint(tmp_path, compose_cfg):
    with pytest.raises(CheckpointError, match="ckpt_path is required"):
        evaluate(_eval_cfg(compose_cfg, []))
    with pytest.raises(CheckpointError, match="no such file"):
        evaluate(_eval_cfg(compose_cfg, [f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a stainfree checkpoint"):
        evaluate(_eval_cfg(compose_cfg, [f"ckpt_path={foreign}"]))
