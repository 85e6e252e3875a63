"""The one reader (and writer) of the ``stainfree`` block that train.py puts into every checkpoint.

eval.py, predict.py, a resumed run, the benchmark and the LightningModule itself learn a run's
config, class names, tiling settings and W&B run id from here, so the block's layout lives in
one place. The block holds plain Python types only: checkpoints load with ``weights_only=True``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from stainfree.utils.errors import UserError

STAINFREE_KEY = "stainfree"
_CORE_KEYS = ("config", "class_names", "preprocess", "wandb_id")


class CheckpointError(UserError):
    """A checkpoint path is missing, unreadable, or not a checkpoint written by train.py."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a stainfree checkpoint says about its run; ``extra`` keeps any other key of the block."""

    path: str
    config: dict[str, Any]
    class_names: list[str]
    preprocess: dict[str, Any] | None
    wandb_id: str | None
    hyper_parameters: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def block(self) -> dict[str, Any]:
        """The ``stainfree`` block as stored (keys that were absent stay absent)."""
        core = dict(config=self.config or None, class_names=self.class_names or None,
                    preprocess=self.preprocess, wandb_id=self.wandb_id)
        return {**self.extra, **{k: v for k, v in core.items() if v is not None}}


def write_checkpoint_meta(checkpoint: dict[str, Any], run_metadata: Mapping[str, Any],
                          class_names: Sequence[str]) -> None:
    """Store the run's metadata and class names in a checkpoint dict being saved."""
    checkpoint[STAINFREE_KEY] = dict(run_metadata, class_names=list(class_names))


def checkpoint_meta(checkpoint: Any, path: str | os.PathLike = "<checkpoint>") -> CheckpointMeta:
    """The metadata of an already loaded checkpoint; a checkpoint train.py did not write is refused."""
    block = checkpoint.get(STAINFREE_KEY) if isinstance(checkpoint, Mapping) else None
    if not isinstance(block, Mapping) or not block or not isinstance(checkpoint.get("hyper_parameters"), Mapping):
        raise CheckpointError(f"{path}: not a stainfree checkpoint (no '{STAINFREE_KEY}' block); "
                              "pass a .ckpt written by train.py (<run>/checkpoints/best.ckpt)")
    hyper_parameters = dict(checkpoint["hyper_parameters"])
    return CheckpointMeta(
        path=str(path),
        config=dict(block.get("config") or {}),
        class_names=[str(c) for c in (block.get("class_names") or hyper_parameters.get("class_names") or [])],
        preprocess=dict(block["preprocess"]) if block.get("preprocess") else None,
        wandb_id=block.get("wandb_id") or None,
        hyper_parameters=hyper_parameters,
        extra={k: v for k, v in block.items() if k not in _CORE_KEYS},
    )


def read_checkpoint_meta(path: str | os.PathLike | None) -> CheckpointMeta:
    """Read a checkpoint file's metadata, with a one-line error for a missing or foreign file."""
    if not path:
        raise CheckpointError("ckpt_path is required: pass ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt")
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file; pass a .ckpt written by train.py "
                              "(<run>/checkpoints/best.ckpt)")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure means the same to the user
        raise CheckpointError(f"ckpt_path={file}: not a readable PyTorch checkpoint ({_load_failure(exc)}); "
                              "pass a .ckpt written by train.py") from exc
    return checkpoint_meta(checkpoint, file)


def _load_failure(exc: Exception) -> str:
    """torch.load's reason in a few words (its weights_only refusal is a paragraph)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return "weights_only=True refused it: " + " ".join(detail.split())
    return " ".join(text.split())[:200] or type(exc).__name__
