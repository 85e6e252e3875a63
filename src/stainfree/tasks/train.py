"""The training task: data + model + trainer from the Hydra config, fit, then test the best checkpoint.

Ends with the few lines a user reads: headline metrics and where everything is. ``main`` is
what ``train.py`` runs.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from stainfree.callbacks.eval_report import EvalReport
from stainfree.tasks.preflight import (
    check_accelerator,
    check_config_values,
    check_input_size,
    check_writable_folders,
    prepare_datamodule,
)
from stainfree.tasks.resume import prepare_resume
from stainfree.utils import runtime
from stainfree.utils.cli import task_main
from stainfree.utils.instantiate import instantiate_callbacks, instantiate_loggers
from stainfree.utils.pylogger import get_logger
from stainfree.utils.task_wrapper import task_wrapper
from stainfree.utils.wandb_identity import apply_sweep_identity

log = get_logger(__name__)


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
    if cfg.get("seed") is not None:  # logged with the run's other progress lines: stderr is for errors
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        log.info("seed %d", cfg.seed)
    check_config_values(cfg)
    check_accelerator(cfg)
    # resume: THE run named (its folder, W&B run, same experiment/data/model), refused before any work starts
    resume = prepare_resume(cfg, resolved_config(cfg))
    check_writable_folders(cfg)  # Lightning would train every epoch and silently save no checkpoint
    apply_sweep_identity(cfg)  # W&B: a sweep's jobs share a group, named by what differs

    # threads and loader workers together, before anything starts a thread pool
    chosen = runtime.configure(cfg.get("runtime"), *runtime.trainer_placement(cfg.trainer),
                               data_workers=cfg.data.get("num_workers"))
    log.info("data <%s>", cfg.data._target_)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data, **runtime.loader_kwargs(cfg.data, chosen))
    log.info("model <%s> backbone=%s", cfg.model._target_, cfg.model.backbone.name)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    if cfg.model.get("input_size"):
        check_input_size(model, int(cfg.model.input_size))  # a traceback at the first batch otherwise
    prepare_datamodule(datamodule, "fit" if cfg.get("train", True) else "test")  # data errors before any logger
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if resume is not None:
        resume.restore_csv_history(trainer)  # before anything is logged

    resolved = resolved_config(cfg)
    model.run_metadata = dict(config=resolved, wandb_id=_wandb_id(trainer), runtime=chosen.as_dict())
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=resume.ckpt if resume else None)
        adopt_csv_columns(trainer)
        metrics.update(_float_metrics(trainer.callback_metrics))
        if "val/bal_acc_best" not in metrics and resume is not None:  # resumed a run whose epochs were all done
            metrics["val/bal_acc_best"] = float(model.val_bal_acc_best.compute())
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(_float_metrics(trainer.callback_metrics))
        metrics["best_ckpt"] = best  # type: ignore[assignment]
    return metrics, dict(cfg=cfg, datamodule=datamodule, model=model, trainer=trainer, report=_eval_report(trainer))


def _eval_report(trainer: pl.Trainer) -> dict[str, Any] | None:
    """The metrics the EvalReport callback computed on the last test pass (interval, n), if it ran."""
    for callback in trainer.callbacks:
        if isinstance(callback, EvalReport) and callback.last_metrics:
            return callback.last_metrics
    return None


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


# ---------------------------------------------------------------- end-of-run summary
HEADLINE = ("test/bal_acc", "test/auroc", "test/acc", "val/bal_acc_best")


def format_run_summary(cfg: DictConfig, metrics: dict[str, Any], report: dict[str, Any] | None = None) -> str:
    """Headline metrics (balanced accuracy with its interval and test size) and where the files are."""
    out = Path(str(cfg.paths.output_dir))
    lines = ["", f"== stainfree run: {cfg.get('task_name', 'train')} ({_shown(out)}) =="]
    if metrics.get("failed"):
        lines.append(f"FAILED: see {_shown(out / 'FAILED.txt')}")
    for key in HEADLINE:
        value = metrics.get(key)
        if isinstance(value, float) and not math.isnan(value):
            interval = f"        {_interval(report)}" if key == "test/bal_acc" and report else ""
            lines.append(f"  {key:<18} {value:.4f}{interval}")
    if metrics.get("best_ckpt"):
        lines.append(f"  best checkpoint    {_shown(Path(metrics['best_ckpt']))}")
    eval_dir = Path(report["report_dir"]) if report and report.get("report_dir") else out / "eval"
    if eval_dir.is_dir():
        lines.append(f"  plots and tables   {_shown(eval_dir)}")
    return "\n".join(lines)


def _interval(report: dict[str, Any]) -> str:
    ci = report["bal_acc_ci"]
    return (f"({round(100 * ci['level'])}% interval {ci['lower']:.3f}-{ci['upper']:.3f}, Brodersen et al. 2010; "
            f"{report['n']} test patches)")


def _shown(path: Path) -> str:
    """A path as the user typed it: relative when it lies under the current folder."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def print_run_summary(cfg: DictConfig, metrics: dict[str, Any], report: dict[str, Any] | None = None) -> None:
    print(format_run_summary(cfg, metrics, report), flush=True)


@task_main("train")
def main(cfg: DictConfig) -> float | None:
    """``python train.py [experiment=...] [overrides]``: fit, test, print the summary; returns the sweep target."""
    metrics, objects = train(cfg)
    print_run_summary(cfg, metrics, objects.get("report"))
    return optimized_value(cfg, metrics)
