"""Issue 8 cases 6 and 7: folders and option values a run cannot use stop it in one line before training."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from stainfree.models.classifier import LiveDeadClassifier
from stainfree.tasks.preflight import check_config_values, check_input_size, check_writable_folders
from stainfree.tasks.train import train
from stainfree.utils.errors import UserError

TINY = ["experiment=demo", "logger=csv", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "model.input_size=32",
        "data.num_workers=0", "data.synthetic.frames_notreat=12", "callbacks.eval_report.tsne_max_points=60"]


def _no_epoch_trained(cfg) -> None:
    """Nothing was trained or logged: the CSV logger never wrote a row, no synthetic data was made."""
    out = Path(cfg.paths.output_dir)
    assert not list(out.rglob("metrics.csv")) and not list(out.rglob("*.ckpt"))


def test_checkpoint_folder_under_a_file_stops_before_training(tmp_path: Path, compose_cfg) -> None:
    """Case 6 (works as root too): a checkpoint folder that cannot be created is one line naming the option."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file\n")
    cfg = compose_cfg([*TINY, f"callbacks.model_checkpoint.dirpath={blocker / 'checkpoints'}"])
    with pytest.raises(UserError, match=r"callbacks\.model_checkpoint\.dirpath=.*not-a-folder/checkpoints "
                                        r"is not writable \(Not a directory\)") as err:
        train(cfg)
    assert "\n" not in str(err.value)
    _no_epoch_trained(cfg)


def test_read_only_checkpoint_folder_stops_before_training(tmp_path: Path, compose_cfg) -> None:
    """Case 6 as reported: a read-only checkpoint folder used to train every epoch and save nothing."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root?) can write to a 0o555 folder; the test above covers the check")
        cfg = compose_cfg([*TINY, f"callbacks.model_checkpoint.dirpath={folder}",
                           f"callbacks.last_checkpoint.dirpath={folder}"])
        with pytest.raises(UserError, match=r"dirpath=.*readonly is not writable \(Permission denied\)"):
            train(cfg)
        _no_epoch_trained(cfg)
        assert not list(folder.iterdir())  # the probe file is gone too
    finally:
        folder.chmod(0o755)


def test_run_and_logger_folders_are_checked_and_probe_leaves_nothing(tmp_path: Path, compose_cfg) -> None:
    """Case 6: the run folder and every logger's save_dir are checked too; a writable folder is left as it was."""
    cfg = compose_cfg(["logger=csv"])
    check_writable_folders(cfg)
    assert not [p for p in Path(cfg.paths.output_dir).rglob("*") if p.is_file()]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with open_dict(cfg):
        cfg.logger.csv.save_dir = str(blocker / "csv")
    with pytest.raises(UserError, match=r"logger\.csv\.save_dir=.*is not writable"):
        check_writable_folders(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(blocker)
    with pytest.raises(UserError, match=r"paths\.output_dir=.*is not writable"):
        check_writable_folders(cfg)


OUT_OF_RANGE = [  # only max_epochs is new; the others were refused already and stay so
    ("trainer.max_epochs", 0, "trainer.max_epochs=0 is invalid; use a whole number of epochs >= 1"),
    ("trainer.max_epochs", 1.5, "trainer.max_epochs=1.5 is invalid"),
    ("model.optimizer.lr", float("inf"), "model.optimizer.lr=inf is invalid; use a positive number"),
    ("model.optimizer.lr", float("nan"), "model.optimizer.lr=nan is invalid"),
    ("model.optimizer.lr", 0, "model.optimizer.lr=0 is invalid"),
    ("data.batch_size", 0, "data.batch_size=0 is invalid; use a whole number >= 1"),
    ("model.input_size", -3, "model.input_size=-3 is invalid; use a whole number of pixels"),
]


def test_out_of_range_values_are_one_line(compose_cfg) -> None:
    """Case 7 / pre-flight: values no run can use; max_epochs=0 used to 'train' nothing and test random weights."""
    base = compose_cfg(["experiment=demo"])
    for key, value, line in OUT_OF_RANGE:
        cfg = base.copy()
        OmegaConf.update(cfg, key, value)
        with pytest.raises(UserError) as err:
            check_config_values(cfg)
        assert str(err.value).startswith(line), key
    OmegaConf.update(base, "trainer.max_epochs", -1)  # Lightning: train until trainer.max_steps
    check_config_values(base)


def _classifier(name: str, size: int) -> LiveDeadClassifier:
    return LiveDeadClassifier(backbone=dict(name=name, num_classes=2), input_size=size,
                              optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3})


def test_input_size_too_small_for_the_backbone_names_the_smallest_that_works() -> None:
    """Case 7: a size the backbone cannot take (SqueezeNet < 24 px) is one line with the fix, not a traceback."""
    model = _classifier("squeezenet", 16)
    with pytest.raises(UserError, match=r"^model\.input_size=16 is too small for backbone squeezenet; "
                                        r"use model\.input_size=24 or more$"):
        check_input_size(model, 16)
    assert model.training  # the probe leaves the module as it found it
    check_input_size(model, 24)
    check_input_size(_classifier("resnet18", 8), 8)  # ResNets pool adaptively: 8 px runs


def test_train_refuses_a_too_small_input_size_before_training(compose_cfg) -> None:
    """Case 7 through train(): Inception-v3 at 64 px (it needs 75) used to fail inside the first batch."""
    cfg = compose_cfg([*TINY, "model=inception_v3", "model.input_size=64"])
    with pytest.raises(UserError, match=r"model\.input_size=64 is too small for backbone inception_v3; "
                                        r"use model\.input_size=75 or more"):
        train(cfg)
    _no_epoch_trained(cfg)
