"""Checks a task runs before it starts anything expensive or visible (loggers, a W&B run, the Trainer).

A wrong option, data that cannot be labelled or a GPU that is not there becomes a one-line
``UserError`` here, instead of a traceback minutes later inside Lightning after a W&B run was
created. Each check is cheap and names the option and the fix.
"""
from __future__ import annotations

import errno
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from stainfree.utils.errors import UserError

# (option, test on its value, what a valid value looks like)
VALUE_RULES: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("model.input_size", lambda v: v >= 1 and v == int(v), "a whole number of pixels >= 1, e.g. 224"),
    ("data.batch_size", lambda v: v >= 1 and v == int(v), "a whole number >= 1, e.g. 32"),
    ("data.num_workers", lambda v: v >= 0 and v == int(v), "0 (load in the main process) or more processes"),
    ("model.optimizer.lr", lambda v: v > 0, "a positive number, e.g. 1e-4"),
    ("model.optimizer.weight_decay", lambda v: v >= 0, "0 or a positive number"),
    ("trainer.max_epochs", lambda v: (v >= 1 or v == -1) and v == int(v),
     "a whole number of epochs >= 1 (or -1 with trainer.max_steps)"),
)
# sizes tried, smallest first, to tell the user the least input size a backbone accepts
PROBE_SIZES = (8, 16, 24, 32, 48, 64, 75, 96, 128, 160, 224, 299, 384)
GPU_ACCELERATORS = ("gpu", "cuda")


def check_config_values(cfg: DictConfig) -> None:
    """Refuse option values no run can use (size 0, negative learning rate or batch size...)."""
    for key, valid, hint in VALUE_RULES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}={value} is not a number; use {hint}") from None
        if isinstance(value, bool) or not math.isfinite(number) or not valid(number):
            raise UserError(f"{key}={value} is invalid; use {hint}")


def check_writable_folders(cfg: DictConfig) -> None:
    """The run, checkpoint and logger folders accept files, checked before any epoch is trained.

    Lightning swallows a checkpoint's PermissionError: without this check every epoch trains,
    no checkpoint is written and the run only fails at test time (issue 8 case 6).
    """
    for key, folder in _output_folders(cfg):
        reason = _unwritable(Path(str(folder)).expanduser())
        if reason:
            raise UserError(f"{key}={folder} is not writable ({reason}); fix its permissions or point "
                            "paths.log_dir (or that option) at a folder you can write to")


def _output_folders(cfg: DictConfig) -> list[tuple[str, Any]]:
    """(option, folder) for the run folder, each callback's ``dirpath`` and each logger's ``save_dir``."""
    found = [("paths.output_dir", OmegaConf.select(cfg, "paths.output_dir", default=None))]
    for group, option in (("callbacks", "dirpath"), ("logger", "save_dir")):
        for name, entry in (cfg.get(group) or {}).items():
            if isinstance(entry, DictConfig) and entry.get(option):
                found.append((f"{group}.{name}.{option}", entry[option]))
    return [(key, folder) for key, folder in found if folder]


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (made if missing), or None when one can."""
    probe = folder / f".stainfree-write-test-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or os.strerror(exc.errno or errno.EACCES)
    return None


def check_input_size(model: Any, size: int, key: str = "model.input_size") -> None:
    """The backbone runs on ``size`` x ``size`` patches (Inception-v3 needs 75, SqueezeNet 24...).

    One forward pass of a single blank patch, so a size the network cannot take stops the run
    with one line and the smallest size that works, not a traceback from the first batch.
    """
    if not hasattr(model, "features") or _runs_at(model, size):
        return
    smallest = next((s for s in PROBE_SIZES if s > size and _runs_at(model, s)), None)
    name = (getattr(model, "hparams", {}).get("backbone") or {}).get("name", type(model).__name__)
    fix = f"use {key}={smallest} or more" if smallest else "use a larger size"
    raise UserError(f"{key}={size} is too small for backbone {name}; {fix}")


def _runs_at(model: Any, size: int) -> bool:
    """Whether the model's feature extractor accepts one blank ``size`` x ``size`` patch."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.features(torch.zeros(1, 1, size, size, dtype=torch.uint8))
        return True
    except (RuntimeError, ValueError, AssertionError):  # torch: kernel larger than input; timm: size asserts
        return False
    finally:
        model.train(was_training)


def check_accelerator(cfg: DictConfig) -> None:
    """``trainer=gpu``/``ddp`` on a machine without (enough) CUDA GPUs: say so before anything starts."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto") or "auto").lower()
    if accelerator not in GPU_ACCELERATORS:
        return
    import torch

    available = torch.cuda.device_count()
    if available == 0:
        raise UserError(f"trainer.accelerator={accelerator}: no CUDA GPU is visible on this machine; "
                        "use trainer=cpu (or trainer=default, which picks the device itself)")
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    wanted = _device_count(devices)
    if wanted > available:
        raise UserError(f"trainer.devices={devices}: only {available} CUDA GPU(s) visible here; "
                        f"set trainer.devices={available} or run on a machine with more GPUs")


def _device_count(devices: Any) -> int:
    """How many GPUs ``trainer.devices`` asks for (-1/'auto' = whatever is there, i.e. 0 extra)."""
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    try:
        return max(int(text), 0)
    except ValueError:  # "auto"
        return 0


def prepare_datamodule(datamodule: Any, stage: str) -> None:
    """Run ``prepare_data()`` + ``setup(stage)`` now, so a data error stops the run before any logger starts.

    Only the launching process does it: DDP ranks started later (or Slurm tasks other than rank
    zero) leave it to Lightning, which prepares on rank zero while the others wait. Lightning
    calls both again inside ``fit``/``test``; the DataModules cache their work, so that is cheap.
    """
    if rank_zero_only.rank != 0:
        return
    datamodule.prepare_data()
    datamodule.setup(stage)
