"""Decorator around a task (train/eval) that makes a multirun survive one failing job.

A crash is logged with its run folder, W&B is closed so the next job starts clean, and the
error is re-raised (single run) or swallowed (multirun: the sweep goes on; the job reports
failed=True and a NaN metric, and train.py returns None to the sweeper).
"""
from __future__ import annotations

import functools
import math
import traceback
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    try:
        mode = HydraConfig.get().mode
    except ValueError:  # Hydra not initialised (called from Python)
        return False
    return mode is not None and getattr(mode, "name", str(mode)) == "MULTIRUN"


def _close_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def task_wrapper(task: Callable[[DictConfig], tuple[dict[str, Any], dict[str, Any]]]):
    """Wrap ``task(cfg) -> (metrics, objects)``."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            return task(cfg)
        except Exception as exc:
            output_dir = cfg.get("paths", {}).get("output_dir", "?")
            if not _in_multirun():
                raise
            log.error(
                "job failed (%s: %s); run folder %s; the sweep goes on\n%s",
                type(exc).__name__, exc, output_dir, traceback.format_exc(),
            )
            Path(str(output_dir)).mkdir(parents=True, exist_ok=True)
            (Path(str(output_dir)) / "FAILED.txt").write_text(traceback.format_exc())
            return {"failed": True, cfg.get("optimized_metric", "metric"): math.nan}, {}
        finally:
            _close_wandb()

    return wrapped
