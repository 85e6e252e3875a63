"""The one reader (and writer) of the ``stainfree`` block that train.py puts into every checkpoint.

eval.py, predict.py, a resumed run, the benchmark and the LightningModule itself learn a run's
config, class names, tiling settings and W&B run id from here, so the block's layout lives in
one place. The block holds plain Python types only: checkpoints load with ``weights_only=True``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from stainfree.utils.errors import UserError

STAINFREE_KEY = "stainfree"
_CORE_KEYS = ("config", "class_names", "preprocess", "wandb_id")


class CheckpointError(UserError):
    """A checkpoint path is missing, unreadable, or not a checkpoint written by train.py."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's stored config names code outside the allow-list: loading it could run anything."""


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

    def checked_config(self, section: str, *, fix: str = "") -> Any:
        """``config[section]`` once :func:`check_targets` accepts it (``data`` must name a project DataModule)."""
        value = self.config.get(section)
        check_targets(value, f"stainfree.config.{section}", self.path, datamodule=section == "data",
                      fix=fix or REFUSAL_FIX)
        return value

    def checked_hyper_parameters(self) -> dict[str, Any]:
        """The module's stored arguments (optimizer, scheduler...) once :func:`check_targets` accepts them."""
        check_targets(self.hyper_parameters, "hyper_parameters", self.path, fix=RETRAIN_FIX)
        return self.hyper_parameters

    def check_loadable(self, sections: Sequence[str] = ()) -> None:
        """Refuse (one line) a checkpoint whose module arguments or config ``sections`` name disallowed code."""
        self.checked_hyper_parameters()
        for section in sections:
            self.checked_config(section, fix=RETRAIN_FIX)

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
    check_resolved(block, STAINFREE_KEY, path)  # e.g. a W&B group eval copies into its own config
    check_resolved(hyper_parameters, "hyper_parameters", path)
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


# ---------------------------------------------------------------- what a stored config may name
# Shared checkpoints come from other labs: ``weights_only=True`` stops pickled code, and this stops
# code named in the stored config (Hydra ``_target_``s, OmegaConf interpolations and resolvers).
SAFE_TARGET_PACKAGES = ("stainfree", "timm", "torch.optim", "torchvision")
REFUSAL_FIX = "re-train with stainfree, or pass experiment=/data= yourself"
RETRAIN_FIX = "re-train with stainfree"
_LIGHTNING_INIT_KEY = "_instantiator"  # Lightning's load_from_checkpoint imports and calls what it names


def check_targets(node: Any, where: str, checkpoint: str | os.PathLike, *, datamodule: bool = False,
                  fix: str = REFUSAL_FIX) -> None:
    """Refuse a stored config that could run code other than the project's own classes.

    Every ``_target_`` at any depth (``_args_`` and lists included) must be a plain dotted name of a
    class (never a function) in one of :data:`SAFE_TARGET_PACKAGES` that is a model, optimizer,
    scheduler or DataModule; with ``datamodule`` the top level must be a stainfree DataModule. Any
    ``${`` is refused: stored configs are resolved, so an interpolation or resolver was planted.
    """
    check_resolved(node, where, checkpoint, fix)
    for key_path, value in _walk(node, where):
        if key_path.endswith("." + _LIGHTNING_INIT_KEY):
            problem = "names a function Lightning would call while loading"
        elif key_path.endswith("._target_"):
            problem = _target_problem(value, top_datamodule=datamodule and key_path == f"{where}._target_")
        else:
            problem = None
        if problem:
                raise UnsafeCheckpointError(f"{checkpoint}: refused to load: {key_path}={value!r} {problem}; {fix}")


def check_resolved(node: Any, where: str, checkpoint: str | os.PathLike, fix: str = RETRAIN_FIX) -> None:
    """Refuse any ``${`` below ``node``: train.py stores resolved configs, so an interpolation (or a
    resolver such as ``${oc.env:...}``, which a later OmegaConf config would evaluate) was planted."""
    for key_path, value in _walk(node, where):
        if isinstance(value, str) and "${" in value:
            raise UnsafeCheckpointError(f"{checkpoint}: refused to load: {key_path}={value!r} is an unresolved "
                                        f"interpolation (stored configs are resolved; a resolver could run code); {fix}")


def _walk(node: Any, key_path: str) -> Iterator[tuple[str, Any]]:
    """(dotted key path, value) for every key and value below ``node``; keys holding ``${`` count too."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{key_path}.{key}"
            if isinstance(key, str) and "${" in key:
                yield child, key
            yield child, value
            yield from _walk(value, child)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield f"{key_path}[{index}]", value
            yield from _walk(value, f"{key_path}[{index}]")


def _target_problem(target: Any, top_datamodule: bool) -> str | None:
    """Why ``target`` may not be instantiated from a checkpoint, or None when it may."""
    parts = target.split(".") if isinstance(target, str) else []
    if len(parts) < 2 or not all(p.isidentifier() and not p.startswith("_") for p in parts):
        return "is not a plain dotted class name"
    not_datamodule = "is not a stainfree DataModule class"
    packages = ("stainfree",) if top_datamodule else SAFE_TARGET_PACKAGES
    if not any(target.startswith(package + ".") for package in packages):
        return not_datamodule if top_datamodule else f"is outside the allowed packages ({', '.join(packages)})"
    from hydra.utils import get_class  # imports only modules of the allowed packages (checked above)

    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - a missing module, attribute or a non-class all mean 'refuse'
        return "is not a class of the allowed packages"
    if not issubclass(cls, _loadable_bases(top_datamodule)):
        return not_datamodule if top_datamodule else "is not a model, optimizer, scheduler or DataModule class"
    return None


def _loadable_bases(top_datamodule: bool) -> tuple[type, ...]:
    """The kinds of class a checkpoint's config may build."""
    import pytorch_lightning as pl

    if top_datamodule:
        return (pl.LightningDataModule,)
    from torch import nn, optim

    return nn.Module, optim.Optimizer, optim.lr_scheduler.LRScheduler, pl.LightningDataModule
