"""Issue 8 case 3: a shared checkpoint can name code in its stored config; loading it must never run it.

The rule lives in ``stainfree.models.checkpoint.check_targets``; these tests plant hostile entries
in real checkpoints and check that predict and the module refuse them with one line before
anything runs, and that every shipped config still passes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from helpers.planted import MARKER_ENV
from stainfree.models.checkpoint import UnsafeCheckpointError, check_targets, read_checkpoint_meta
from stainfree.models.classifier import LiveDeadClassifier
from stainfree.tasks.predict import predict
from test_predict import GRID_PREPROCESS, make_checkpoint, make_frames

ROOT = Path(__file__).resolve().parents[1]


def plant(source: Path, target: Path, edit) -> Path:
    """A copy of ``source`` with ``edit(checkpoint)`` applied (what an attacker would share)."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


@pytest.fixture(scope="module")
def clean_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("clean") / "model.ckpt", GRID_PREPROCESS)


def _refused(err: pytest.ExceptionInfo, ckpt: Path, key_path: str) -> None:
    message = str(err.value)
    assert "\n" not in message and str(ckpt) in message and key_path in message
    assert "re-train with stainfree" in message


@pytest.mark.parametrize("target,problem", [
    ("numpy.save", "outside the allowed packages"),
    ("builtins.exec", "outside the allowed packages"),
    ("os.system", "outside the allowed packages"),
    ("torchvision.utils.save_image", "not a class"),  # an allowed package, but a function that writes files
    ("stainfree.utils.atomic.atomic_write", "not a class"),
    ("torch.optim.Optimizer.zero_grad", "not a class"),
    ("stainfree.__main__", "not a plain dotted class name"),
    ("numpy.save; rm -rf /", "not a plain dotted class name"),
    ("save", "not a plain dotted class name"),
    (["numpy", "save"], "not a plain dotted class name"),
    ("stainfree.utils.errors.UserError", "not a model, optimizer, scheduler or DataModule"),
])
def test_check_targets_refuses_everything_but_allowed_classes(target: Any, problem: str) -> None:
    """Case 3: only classes in stainfree/timm/torch.optim/torchvision of a loadable kind; one line naming the key."""
    config = {"model": {"optimizer": {"_target_": target, "_partial_": True}}}
    with pytest.raises(UnsafeCheckpointError, match=problem) as err:
        check_targets(config, "stainfree.config", "x.ckpt")
    assert "x.ckpt" in str(err.value) and "stainfree.config.model.optimizer._target_" in str(err.value)


@pytest.mark.parametrize("config,key_path", [
    ({"a": [{"_target_": "numpy.save"}]}, "w.a[0]._target_"),  # inside a list
    ({"a": {"_target_": "torch.optim.Adam", "_args_": [{"_target_": "os.system"}]}}, "w.a._args_[0]._target_"),
    ({"a": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": "${oc.env:HOME}"}}, "w.a.lr"),
    ({"a": ["${oc.env:HOME}"]}, "w.a[0]"),
    ({"${oc.env:HOME}": 1}, "w.${oc.env:HOME}"),
    ({"_instantiator": "helpers.planted.build_and_mark"}, "w._instantiator"),
])
def test_check_targets_walks_lists_args_interpolations_and_lightning_keys(config: dict, key_path: str) -> None:
    """Case 3: nested ``_target_``s, ``_args_``, any ``${`` and Lightning's ``_instantiator`` are refused."""
    with pytest.raises(UnsafeCheckpointError) as err:
        check_targets(config, "w", "x.ckpt")
    assert key_path in str(err.value)


def test_datamodule_slot_accepts_only_project_datamodules() -> None:
    """Case 3: the data config's top ``_target_`` must be a stainfree DataModule, not any allowed class."""
    check_targets({"_target_": "stainfree.data.module.SampleDataModule"}, "d", "x.ckpt", datamodule=True)
    for target in ("torch.optim.Adam", "timm.models.resnet.ResNet", "stainfree.models.classifier.LiveDeadClassifier"):
        with pytest.raises(UnsafeCheckpointError, match="DataModule"):
            check_targets({"_target_": target}, "d", "x.ckpt", datamodule=True)


def _configs() -> list[str]:
    names = [f"experiment={p.stem}" for p in sorted((ROOT / "conf" / "experiment").glob("[!_]*.yaml"))]
    names += [f"data={p.stem}" for p in sorted((ROOT / "conf" / "data").glob("[!_]*.yaml"))]
    return names + [f"model={p.stem}" for p in sorted((ROOT / "conf" / "model").glob("[!_]*.yaml"))]


def _check_stored(compose_cfg, overrides: list[str]) -> None:
    """What train.py would store for each override passes the checks eval and predict apply."""
    for override in overrides:
        cfg = compose_cfg([override])
        stored = {key: OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=False)
                  if OmegaConf.is_config(cfg[key]) else cfg[key]
                  for key in ("data", "model", "experiment_name", "tags") if key in cfg}
        check_targets(stored.pop("data"), "stainfree.config.data", override, datamodule=True)
        check_targets(stored, "stainfree.config", override)


def test_shipped_configs_of_both_studies_pass(compose_cfg) -> None:
    """No false refusal: the demo, a JIMT-1 paper run and the celldeath recipe (the slow test: every option)."""
    _check_stored(compose_cfg, ["experiment=demo", "experiment=notreat_inception", "experiment=celldeath_recipe"])


@pytest.mark.slow
def test_every_shipped_config_passes(compose_cfg) -> None:
    """No false refusal for any experiment, data or model option."""
    _check_stored(compose_cfg, _configs())


def test_predict_refuses_a_planted_optimizer_target(clean_ckpt: Path, tmp_path: Path) -> None:
    """Case 3: ``hyper_parameters.optimizer._target_=numpy.save`` is refused before the model is built."""
    ckpt = plant(clean_ckpt, tmp_path / "evil.ckpt", lambda c: c["hyper_parameters"]["optimizer"].update(
        _target_="numpy.save", _partial_=False, file=str(tmp_path / "pwned.npy"), arr=[1]))
    make_frames(tmp_path / "raw")
    with pytest.raises(UnsafeCheckpointError) as err:
        predict(ckpt, tmp_path / "raw", tmp_path / "out", device="cpu", progress=False)
    _refused(err, ckpt, "hyper_parameters.optimizer._target_")
    assert not (tmp_path / "pwned.npy").exists() and not (tmp_path / "out").exists()
    with pytest.raises(UnsafeCheckpointError):
        LiveDeadClassifier.from_checkpoint(ckpt)


def test_predict_and_the_module_never_call_a_planted_lightning_instantiator(clean_ckpt, tmp_path, monkeypatch):
    """Case 3: ``hyper_parameters._instantiator`` names code Lightning would call while loading (Lightning 2.6
    blocks it too, with a paragraph); refused first, in one line, and never run."""
    marker = tmp_path / "ran.txt"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    ckpt = plant(clean_ckpt, tmp_path / "evil.ckpt",
                 lambda c: c["hyper_parameters"].update(_instantiator="helpers.planted.build_and_mark"))
    make_frames(tmp_path / "raw")
    with pytest.raises(UnsafeCheckpointError) as err:
        predict(ckpt, tmp_path / "raw", tmp_path / "out", device="cpu", progress=False)
    _refused(err, ckpt, "hyper_parameters._instantiator")
    with pytest.raises(UnsafeCheckpointError):
        LiveDeadClassifier.from_checkpoint(ckpt)
    assert not marker.exists()


def test_predict_refuses_a_planted_data_target_when_rebuilding_the_tiling(clean_ckpt: Path, tmp_path: Path) -> None:
    """Case 3: a checkpoint without stored tiling makes predict rebuild it from ``config.data``: never from numpy.save."""
    def edit(checkpoint: dict) -> None:
        checkpoint["stainfree"].pop("preprocess")
        checkpoint["stainfree"]["config"]["data"] = {"_target_": "numpy.save", "file": str(tmp_path / "pwned.npy"),
                                                     "arr": [1]}
    ckpt = plant(clean_ckpt, tmp_path / "evil.ckpt", edit)
    make_frames(tmp_path / "raw")
    with pytest.raises(UnsafeCheckpointError) as err:
        predict(ckpt, tmp_path / "raw", tmp_path / "out", device="cpu", progress=False)
    _refused(err, ckpt, "stainfree.config.data._target_")
    assert not (tmp_path / "pwned.npy").exists()


def test_clean_checkpoint_still_loads_and_its_meta_is_unchanged(clean_ckpt: Path) -> None:
    """The check only reads: a legitimate checkpoint loads and reads back as before."""
    meta = read_checkpoint_meta(clean_ckpt)
    meta.check_loadable(("model",))
    model = LiveDeadClassifier.from_checkpoint(meta)
    assert model.class_names == ["live", "dead"]


@pytest.mark.parametrize("where,key_path", [
    ("logger", "stainfree.config.logger.wandb.group"),  # eval copies it into its own W&B logger config
    ("wandb_id", "stainfree.wandb_id"),
    ("hparams", "hyper_parameters.class_names[1]"),
])
def test_any_interpolation_in_a_checkpoint_is_refused_on_reading(where, key_path, clean_ckpt, tmp_path) -> None:
    """Case 3: ``${oc.env:WANDB_API_KEY}`` in a stored W&B group would be resolved by eval's logger (a secret
    sent as a group name); every reader refuses a ``${`` anywhere in the block or the module's arguments."""
    secret = "${oc.env:WANDB_API_KEY}"

    def edit(checkpoint: dict) -> None:
        if where == "logger":
            checkpoint["stainfree"]["config"]["logger"] = {"wandb": {"group": secret}}
        elif where == "wandb_id":
            checkpoint["stainfree"]["wandb_id"] = secret
        else:
            checkpoint["hyper_parameters"]["class_names"] = ["live", secret]
    ckpt = plant(clean_ckpt, tmp_path / "evil.ckpt", edit)
    with pytest.raises(UnsafeCheckpointError, match="unresolved interpolation") as err:
        read_checkpoint_meta(ckpt)
    _refused(err, ckpt, key_path)
