"""eval.py's task: a checkpoint alone reproduces the training-time test metrics; clear errors otherwise."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from stainfree.models.checkpoint import CheckpointError, UnsafeCheckpointError
from stainfree.tasks.evaluate import CheckpointMismatchError, evaluate
from stainfree.tasks.train import train

ROOT = Path(__file__).resolve().parents[1]

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
    with pytest.raises(CheckpointMismatchError,
                       match=r"backbone: checkpoint resnet10t, config squeezenet \(add model=resnet10t\)"):
        evaluate(cfg)
    cfg = _eval_cfg(compose_cfg, [f"ckpt_path={logged['best_ckpt']}", "experiment=demo"])  # the demo is 48 px
    with pytest.raises(CheckpointMismatchError, match=r"input size: checkpoint 32, config \d+ \(add model.input_size=32\)"):
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


def _plant(trained_ckpt: str, target: Path, edit) -> Path:
    """A copy of a real training checkpoint with ``edit`` applied, as a hostile lab would share it."""
    checkpoint = torch.load(trained_ckpt, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


def _planted_edits(pwned: Path) -> dict[str, tuple[str, Any]]:
    """Where a checkpoint can name code eval would build: key path shown in the refusal, edit."""
    evil = {"_target_": "numpy.save", "file": str(pwned), "arr": [1]}
    return {
        "data": ("stainfree.config.data._target_", lambda c: c["stainfree"]["config"].update(data=evil)),
        "model": ("stainfree.config.model.optimizer._target_",
                  lambda c: c["stainfree"]["config"]["model"].update(optimizer=dict(evil, _partial_=True))),
        "optimizer": ("hyper_parameters.optimizer._target_",
                      lambda c: c["hyper_parameters"].update(optimizer=dict(evil, _partial_=True))),
        "interpolation": ("stainfree.config.data.batch_size",
                          lambda c: c["stainfree"]["config"]["data"].update(batch_size="${oc.env:HOME}")),
    }


@pytest.mark.parametrize("where", ["data", "model", "optimizer", "interpolation"])
def test_eval_refuses_code_planted_in_a_checkpoint(where, trained, tmp_path, compose_cfg):
    """Issue 8 case 3: a checkpoint naming numpy.save (data, stored model config or the module's optimizer)
    or an interpolation is refused with one line naming it; nothing is written."""
    _, logged = trained
    pwned = tmp_path / "pwned.npy"
    key_path, edit = _planted_edits(pwned)[where]
    ckpt = _plant(logged["best_ckpt"], tmp_path / "evil.ckpt", edit)
    with pytest.raises(UnsafeCheckpointError) as err:
        evaluate(_eval_cfg(compose_cfg, [f"ckpt_path={ckpt}"]))
    message = str(err.value)
    assert "\n" not in message and str(ckpt) in message and key_path in message and "re-train with stainfree" in message
    assert not pwned.exists()


def test_eval_cli_refuses_a_planted_data_target_in_one_line(trained, tmp_path, cli):
    """Issue 8 case 3 through eval.py: exit 2, one stderr line, the file numpy.save would write is absent."""
    _, logged = trained
    pwned = tmp_path / "pwned.npy"
    ckpt = _plant(logged["best_ckpt"], tmp_path / "evil.ckpt", _planted_edits(pwned)["data"][1])
    status, _, err = cli("stainfree.tasks.evaluate", "eval.py", f"ckpt_path={ckpt}",
                         f"paths.log_dir={tmp_path / 'logs'}")
    assert status == 2 and not pwned.exists()
    assert err.count("\n") == 1 and err.startswith("eval.py: error: ") and "numpy.save" in err


@pytest.mark.slow
def test_eval_script_refuses_a_planted_data_target(trained, tmp_path):
    """Issue 8 case 3 as a user runs it: ``python eval.py ckpt_path=<shared.ckpt>`` in a fresh process."""
    _, logged = trained
    pwned = tmp_path / "pwned.npy"
    ckpt = _plant(logged["best_ckpt"], tmp_path / "evil.ckpt", _planted_edits(pwned)["data"][1])
    done = subprocess.run([sys.executable, str(ROOT / "eval.py"), f"ckpt_path={ckpt}",
                           f"paths.log_dir={tmp_path / 'logs'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and not pwned.exists(), done.stderr[-2000:]
    assert done.stderr.strip().count("\n") == 0 and "stainfree.config.data._target_" in done.stderr
