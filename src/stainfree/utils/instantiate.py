"""Build lists of Lightning callbacks and loggers from Hydra config groups."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig
from pytorch_lightning import Callback
from pytorch_lightning.loggers import Logger


def _instantiate_each(cfg: DictConfig | None, kind: str) -> list:
    objects: list = []
    if not cfg:
        return objects
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"the {kind} config must be a mapping of name -> {{_target_: ...}}")
    for name, entry in cfg.items():
        if isinstance(entry, DictConfig) and "_target_" in entry:
            objects.append(hydra.utils.instantiate(entry))
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Every entry with a ``_target_`` under ``cfg.callbacks`` becomes a callback."""
    return _instantiate_each(cfg, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Every entry with a ``_target_`` under ``cfg.logger`` becomes a logger."""
    return _instantiate_each(cfg, "logger")
