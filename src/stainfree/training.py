"""The training task: data + model + trainer from the Hydra config, fit, then test the best checkpoint."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import CSVLogger

from stainfree.utils import runtime
from stainfree.utils.instantiate import instantiate_callbacks, instantiate_loggers
from stainfree.utils.pylogger import get_logger
from stainfree.utils.task_wrapper import task_wrapper

log = get_logger(__name__)


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path=last``: this run folder's last.ckpt, else the newest last.ckpt of this task.

    A killed run is resumed with the same command plus ``ckpt_path=last``; an explicit path
    must exist.
    """
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        return None
    if ckpt != "last":
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt} does not exist; pass a .ckpt file or ckpt_path=last")
        return str(ckpt)
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        return str(own)
    task_root = Path(cfg.paths.log_dir) / cfg.task_name
    candidates = sorted(task_root.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(
            f"ckpt_path=last: no checkpoints/last.ckpt under {task_root}; pass the checkpoint file explicitly"
        )
    log.info("resuming from %s", candidates[-1])
    return str(candidates[-1])


def _resume_wandb(cfg: DictConfig, ckpt_path: str | None) -> None:
    """Point the W&B logger at the run a resumed checkpoint came from."""
    if not ckpt_path or "wandb" not in (cfg.get("logger") or {}):
        return
    meta = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("stainfree", {})
    if meta.get("wandb_id"):
        with open_dict(cfg):
            cfg.logger.wandb.id = meta["wandb_id"]
            cfg.logger.wandb.resume = "allow"


def _wandb_id(trainer: pl.Trainer) -> str | None:
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            return logger.experiment.id
    return None


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain, resolved containers (Hydra's own section left out)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }


def _float_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def adopt_csv_columns(trainer: pl.Trainer) -> None:
    """Teach each CSVLogger the columns already in its metrics.csv.

    After a ``ddp_spawn`` fit the rows were written by the spawned processes, so the parent's
    writer knows no columns; logging the test metrics would then rewrite the file with only the
    test columns and fail ("dict contains fields not in fieldnames").
    """
    if trainer.global_rank != 0:  # other ranks hold a dummy writer and log nothing
        return
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger):
            continue
        writer = logger.experiment
        path = Path(writer.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as file:
                header = next(csv.reader(file), [])
            writer.metrics_keys = sorted(set(writer.metrics_keys) | set(header))


@task_wrapper
def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit and test; returns (metrics, objects). The sweep target is ``cfg.optimized_metric``."""
    if cfg.get("extras", {}).get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(resolved_config(cfg)))
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_ckpt_path(cfg)
    _resume_wandb(cfg, ckpt_path)

    # threads and loader workers together, before anything starts a thread pool
    chosen = runtime.configure(cfg.get("runtime"), *runtime.trainer_placement(cfg.trainer),
                               data_workers=cfg.data.get("num_workers"))
    log.info("data <%s>", cfg.data._target_)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data, **runtime.loader_kwargs(cfg.data, chosen))
    log.info("model <%s> backbone=%s", cfg.model._target_, cfg.model.backbone.name)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    resolved = resolved_config(cfg)
    model.run_metadata = dict(config=resolved, wandb_id=_wandb_id(trainer), runtime=chosen.as_dict())
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
        adopt_csv_columns(trainer)
        metrics.update(_float_metrics(trainer.callback_metrics))
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(_float_metrics(trainer.callback_metrics))
        metrics["best_ckpt"] = best  # type: ignore[assignment]
    return metrics, dict(cfg=cfg, datamodule=datamodule, model=model, trainer=trainer)


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a sweeper maximises; None when no metric is named, the job failed or diverged.

    None (not NaN) for a failed job: the Optuna sweeper records a trial that returns None as
    failed and goes on (within max_failure_rate), while a NaN return crashes the whole search.
    """
    name = cfg.get("optimized_metric")
    if not name or metrics.get("failed"):
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name} was not logged; logged: {sorted(metrics)}")
    value = float(metrics[name])
    return None if math.isnan(value) else value
