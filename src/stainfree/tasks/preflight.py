"""Checks a task runs before it starts anything expensive or visible (loggers, a W&B run, the Trainer).

A wrong option, data that cannot be labelled or a GPU that is not there becomes a one-line
``UserError`` here, instead of a traceback minutes later inside Lightning after a W&B run was
created. Each check is cheap and names the option and the fix.
"""
from __future__ import annotations

import math
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
)
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
