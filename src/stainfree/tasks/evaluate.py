"""The eval task: a checkpoint + its data -> test metrics and the full evaluation report.

Without ``experiment=`` (or ``data=``) the data config is the one the checkpoint was trained
with (train.py embeds the resolved run config in every checkpoint), so ``python eval.py
ckpt_path=...`` is all it takes. With one, the data come from the given config and anything
that would make the numbers meaningless (other classes, backbone, input size) is an error.
``main`` is what ``eval.py`` runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from stainfree.callbacks.eval_report import EvalReport
from stainfree.inference.trust_fit import ProfileLimits, fit_missing_blocks
from stainfree.models.checkpoint import CheckpointMeta, read_checkpoint_meta
from stainfree.tasks.preflight import (
    check_accelerator,
    check_config_values,
    check_writable_folders,
    prepare_datamodule,
)
from stainfree.trust.checkpoint import write_trust_blocks
from stainfree.utils import runtime
from stainfree.utils.atomic import unique_path
from stainfree.utils.cli import task_main
from stainfree.utils.errors import UserError
from stainfree.utils.instantiate import instantiate_callbacks, instantiate_loggers
from stainfree.utils.pylogger import get_logger
from stainfree.utils.task_wrapper import task_wrapper
from stainfree.utils.wandb_identity import join_evaluated_run

log = get_logger(__name__)


class CheckpointMismatchError(UserError):
    """The checkpoint does not fit the data/model config it is evaluated with."""


def _given(node: Any) -> bool:
    return isinstance(node, DictConfig) and "_target_" in node


def merge_run_config(cfg: DictConfig, meta: CheckpointMeta) -> bool:
    """Fill ``cfg.data``/``cfg.model`` from the checkpoint's run config unless the user chose them.

    Returns True when the data config came from the user (experiment=/data=), i.e. must be checked.
    Every section taken from the checkpoint passes ``CheckpointMeta.checked_config`` first: it may
    only name the project's classes, so a shared checkpoint cannot make eval run code.
    """
    run_cfg = meta.config
    user_data = _given(cfg.get("data"))
    with open_dict(cfg):
        if not user_data:
            if not run_cfg.get("data"):
                raise CheckpointMismatchError(
                    f"{meta.path} carries no data config; pass the experiment it was trained with: "
                    "python eval.py ckpt_path=... experiment=<name>"
                )
            cfg.data = OmegaConf.create(meta.checked_config("data"))
        if not _given(cfg.get("model")) and run_cfg.get("model"):
            cfg.model = OmegaConf.create(meta.checked_config("model"))
        for key in ("experiment_name", "tags"):
            if cfg.get(key) is None and key in run_cfg:
                cfg[key] = meta.checked_config(key)
    return user_data


def check_compatible(cfg: DictConfig, meta: CheckpointMeta, datamodule: Any) -> None:
    """Refuse a checkpoint whose classes, backbone or input size differ from the chosen config."""
    hp = meta.hyper_parameters
    ckpt_backbone = (hp.get("backbone") or {}).get("name")
    problems = []
    want_backbone = OmegaConf.select(cfg, "model.backbone.name")
    if want_backbone and ckpt_backbone and want_backbone != ckpt_backbone:
        problems.append(f"backbone: checkpoint {ckpt_backbone}, config {want_backbone} (add model={ckpt_backbone})")
    want_size = OmegaConf.select(cfg, "model.input_size")
    if want_size and hp.get("input_size") and int(want_size) != int(hp["input_size"]):
        problems.append(f"input size: checkpoint {hp['input_size']}, config {want_size} "
                        f"(add model.input_size={hp['input_size']})")
    ckpt_names = list(meta.class_names)
    names = _class_names(datamodule)
    if ckpt_names and names and ckpt_names != names:
        problems.append(f"classes: checkpoint {ckpt_names}, data {names}")
    n_ckpt = (hp.get("backbone") or {}).get("num_classes")
    if n_ckpt and names and int(n_ckpt) != len(names):
        problems.append(f"number of classes: checkpoint {n_ckpt}, data {len(names)}")
    if problems:
        raise CheckpointMismatchError(
            f"{meta.path} was trained with another config ({'; '.join(problems)}); drop experiment=/data= "
            "to use the checkpoint's own config, or pick the matching experiment"
        )


def _class_names(datamodule: Any) -> list[str]:
    """DataModule class names; some DataModules only know them after prepare_data/setup."""
    try:
        names = list(getattr(datamodule, "class_names", None) or [])
    except Exception:  # noqa: BLE001 - a property that needs setup first
        names = []
    if not names:
        datamodule.prepare_data()
        datamodule.setup("test")
        names = list(getattr(datamodule, "class_names", None) or [])
    return names


@task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test a checkpoint and write the report to ``${paths.output_dir}/eval``; returns (metrics, objects)."""
    from stainfree.models.classifier import LiveDeadClassifier

    meta = read_checkpoint_meta(cfg.get("ckpt_path"))
    user_data = merge_run_config(cfg, meta)
    join_evaluated_run(cfg, meta)  # W&B: same group as the evaluated run, job_type eval
    if cfg.get("extras", {}).get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    check_config_values(cfg)
    check_accelerator(cfg)
    check_writable_folders(cfg)
    log.info("data <%s> (%s)", cfg.data._target_, "from config" if user_data else "from the checkpoint's run config")
    chosen = runtime.configure(cfg.get("runtime"), *runtime.trainer_placement(cfg.trainer),
                               data_workers=cfg.data.get("num_workers"))
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data, **runtime.loader_kwargs(cfg.data, chosen))
    prepare_datamodule(datamodule, "test")  # data errors before any logger
    if user_data:
        check_compatible(cfg, meta, datamodule)
    model = LiveDeadClassifier.from_checkpoint(meta)

    artifacts = EvalReport(out_subdir=cfg.get("report_subdir", "eval"), output_dir=cfg.paths.output_dir,
                           tsne_max_points=int(cfg.get("tsne_max_points", 2000)),
                           wandb_table_rows=int(cfg.get("wandb_table_rows", 500)))
    callbacks = [artifacts] + instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in trainer.loggers:
        lg.log_hyperparams(dict(OmegaConf.to_container(cfg, resolve=True), ckpt_path=meta.path))
    added = _fit_trust_blocks(cfg, model, datamodule, trainer)
    logged = trainer.test(model=model, datamodule=datamodule, verbose=True)
    metrics = {k: float(v) for k, v in (logged[0] if logged else {}).items()}
    report = artifacts.last_metrics or {}
    calibrated = _save_calibrated_copy(meta.path, added, report.get("report_dir") or cfg.paths.output_dir)
    if report:
        ci = report["bal_acc_ci"]
        log.info(
            "balanced accuracy %.4f (%d%% CI %.4f-%.4f), AUROC %.4f, accuracy %.4f; report in %s",
            report["bal_acc"], round(100 * ci["level"]), ci["lower"], ci["upper"], report["auroc"],
            report["acc"], report["report_dir"],
        )
    return metrics, dict(cfg=cfg, datamodule=datamodule, model=model, trainer=trainer, report=report,
                         calibrated_ckpt=calibrated)


def _fit_trust_blocks(cfg: DictConfig, model: Any, datamodule: Any, trainer: pl.Trainer) -> dict[str, Any]:
    """stainfree.trust: fit the calibration / OOD blocks an older checkpoint lacks (in memory only)."""
    trust = cfg.get("trust") or {}
    if not trust.get("fit_missing", True):
        return {}
    try:
        device = trainer.strategy.root_device
    except Exception:  # noqa: BLE001 - a strategy that knows its device only later: fit on the CPU
        device = torch.device("cpu")
    limits = ProfileLimits(max_images=int(trust.get("max_images", 200)), max_patches=int(trust.get("max_patches", 20000)),
                           seed=int(cfg.get("seed") or 0))
    return fit_missing_blocks(model, datamodule, device, limits)


def _save_calibrated_copy(ckpt_path: str, blocks: dict[str, Any], folder: str | Path) -> str | None:
    """The user's checkpoint is never modified: the fitted blocks go into a copy next to the report."""
    if not blocks:
        return None
    copy = write_trust_blocks(ckpt_path, blocks, unique_path(Path(folder) / "calibrated.ckpt"))
    log.info("%s had no %s: fitted here and written with the weights to %s (the original is unchanged); "
             "use that file with predict.py", ckpt_path, " / ".join(blocks), copy)
    return str(copy)


@task_main("eval")
def main(cfg: DictConfig) -> float | None:
    """``python eval.py ckpt_path=... [experiment=...]``; returns the test balanced accuracy (sweeps)."""
    metrics, objects = evaluate(cfg)
    report = objects.get("report") or {}
    return report.get("bal_acc", metrics.get("test/bal_acc"))
