"""The one reader of a checkpoint's ``stainfree`` block: what it returns and what it refuses."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stainfree.models.checkpoint import CheckpointError, CheckpointMeta, read_checkpoint_meta, write_checkpoint_meta
from stainfree.utils.errors import UserError


def _save(path: Path, checkpoint: dict) -> Path:
    torch.save(checkpoint, path)
    return path


def test_reads_every_field_and_keeps_unknown_keys(tmp_path: Path) -> None:
    checkpoint = {"hyper_parameters": {"backbone": {"name": "resnet18"}, "class_names": ["a", "b"]}}
    run = {"config": {"model": {"input_size": 64}}, "preprocess": {"window": 224}, "wandb_id": "abc123",
           "calibration": {"temperature": 1.5}}
    write_checkpoint_meta(checkpoint, run, ["live", "dead"])
    meta = read_checkpoint_meta(_save(tmp_path / "a.ckpt", checkpoint))
    assert isinstance(meta, CheckpointMeta) and meta.path == str(tmp_path / "a.ckpt")
    assert meta.config == run["config"] and meta.preprocess == {"window": 224} and meta.wandb_id == "abc123"
    assert meta.class_names == ["live", "dead"] and meta.hyper_parameters["backbone"]["name"] == "resnet18"
    assert meta.extra == {"calibration": {"temperature": 1.5}}
    assert meta.block() == dict(run, class_names=["live", "dead"])  # what the module writes back on save


def test_old_checkpoint_without_preprocess_or_wandb(tmp_path: Path) -> None:
    checkpoint = {"hyper_parameters": {"class_names": ["control", "celldeath"]}, "stainfree": {"config": {}}}
    meta = read_checkpoint_meta(_save(tmp_path / "old.ckpt", checkpoint))
    assert meta.preprocess is None and meta.wandb_id is None and meta.class_names == ["control", "celldeath"]
    assert "preprocess" not in meta.block() and "wandb_id" not in meta.block()


@pytest.mark.parametrize("case,match", [
    ("unset", "ckpt_path is required"),
    ("missing", "no such file"),
    ("text", "not a readable PyTorch checkpoint"),
    ("foreign", "not a stainfree checkpoint"),
    ("pickled_object", "not a readable PyTorch checkpoint"),
])
def test_refuses_with_one_line(case: str, match: str, tmp_path: Path) -> None:
    path: Path | None = tmp_path / f"{case}.ckpt"
    if case == "unset":
        path = None
    elif case == "text":
        path.write_text("these are not the weights you are looking for\n")
    elif case == "foreign":
        _save(path, {"state_dict": {}, "hyper_parameters": {}})
    elif case == "pickled_object":  # weights_only=True refuses arbitrary objects
        _save(path, {"stainfree": {"config": Path("x")}, "hyper_parameters": {}})
    with pytest.raises(CheckpointError, match=match) as err:
        read_checkpoint_meta(path)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
