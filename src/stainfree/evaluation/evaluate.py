"""The eval task: a checkpoint + its data -> test metrics and the full evaluation report.

Without ``experiment=`` (or ``data=``) the data config is the one the checkpoint was trained
with (train.py embeds the resolved run config in every checkpoint), so ``python eval.py
ckpt_path=...`` is all it takes. With one, the data come from the given config and anything
that would make the numbers meaningless (other classes, backbone, input size) is an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from stainfree.callbacks.test_artifacts import TestArtifacts
from stainfree.utils import runtime
from stainfree.utils.instantiate import instantiate_callbacks, instantiate_loggers
from stainfree.utils.pylogger import get_logger
from stainfree.utils.task_wrapper import task_wrapper

log = get_logger(__name__)


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the data/model config it is evaluated with."""


def load_checkpoint_meta(ckpt_path: str | None) -> dict[str, Any]:
    """The checkpoint's hyper-parameters and ``stainfree`` block, with clear errors for bad paths."""
    if not ckpt_path:
        raise FileNotFoundError(
            "ckpt_path is required: python eval.py ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt"
        )
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such file; pass a .ckpt written by train.py")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure means the same to the user
        raise CheckpointMismatchError(f"{path}: not a readable PyTorch checkpoint ({exc}); pass a .ckpt written by train.py") from exc
    meta = checkpoint.get("stainfree") if isinstance(checkpoint, dict) else None
    if not meta or "hyper_parameters" not in checkpoint:
        raise CheckpointMismatchError(
            f"{path}: not a stainfree checkpoint (no 'stainfree' block); evaluate a checkpoint written by train.py"
        )
    return dict(meta, hyper_parameters=checkpoint["hyper_parameters"], path=str(path))


def _given(node: Any) -> bool:
    return isinstance(node, DictConfig) and "_target_" in node


def merge_run_config(cfg: DictConfig, meta: dict[str, Any]) -> bool:
    """Fill ``cfg.data``/``cfg.model`` from the checkpoint's run config unless the user chose them.

    Returns True when the data config came from the user (experiment=/data=), i.e. must be checked.
    """
    run_cfg = meta.get("config") or {}
    user_data = _given(cfg.get("data"))
    with open_dict(cfg):
        if not user_data:
            if not run_cfg.get("data"):
                raise CheckpointMismatchError(
                    f"{meta['path']} carries no data config; pass the experiment it was trained with: "
                    "python eval.py ckpt_path=... experiment=<name>"
                )
            cfg.data = OmegaConf.create(run_cfg["data"])
        if not _given(cfg.get("model")) and run_cfg.get("model"):
            cfg.model = OmegaConf.create(run_cfg["model"])
        for key in ("experiment_name", "tags"):
            if cfg.get(key) is None and key in run_cfg:
                cfg[key] = run_cfg[key]
    return user_data


def check_compatible(cfg: DictConfig, meta: dict[str, Any], datamodule: Any) -> None:
    """Refuse a checkpoint whose classes, backbone or input size differ from the chosen config."""
    hp = meta["hyper_parameters"]
    ckpt_backbone = (hp.get("backbone") or {}).get("name")
    problems = []
    want_backbone = OmegaConf.select(cfg, "model.backbone.name")
    if want_backbone and ckpt_backbone and want_backbone != ckpt_backbone:
        problems.append(f"backbone: checkpoint {ckpt_backbone}, config {want_backbone} (add model={ckpt_backbone})")
    want_size = OmegaConf.select(cfg, "model.input_size")
    if want_size and hp.get("input_size") and int(want_size) != int(hp["input_size"]):
        problems.append(f"input size: checkpoint {hp['input_size']}, config {want_size} (add model.input_size={hp['input_size']})")
    ckpt_names = list(meta.get("class_names") or hp.get("class_names") or [])
    names = _class_names(datamodule)
    if ckpt_names and names and ckpt_names != names:
        problems.append(f"classes: checkpoint {ckpt_names}, data {names}")
    n_ckpt = (hp.get("backbone") or {}).get("num_classes")
    if n_ckpt and names and int(n_ckpt) != len(names):
        problems.append(f"number of classes: checkpoint {n_ckpt}, data {len(names)}")
    if problems:
        raise CheckpointMismatchError(
            f"{meta['path']} was trained with another config:\n  - " + "\n  - ".join(problems)
            + "\nDrop experiment=/data= to use the checkpoint's own config, or pick the matching experiment."
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

    meta = load_checkpoint_meta(cfg.get("ckpt_path"))
    user_data = merge_run_config(cfg, meta)
    if cfg.get("extras", {}).get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    log.info("data <%s> (%s)", cfg.data._target_, "from config" if user_data else "from the checkpoint's run config")
    chosen = runtime.configure(cfg.get("runtime"), *runtime.trainer_placement(cfg.trainer),
                               data_workers=cfg.data.get("num_workers"))
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data, **runtime.loader_kwargs(cfg.data, chosen))
    if user_data:
        check_compatible(cfg, meta, datamodule)
    model = LiveDeadClassifier.from_checkpoint(meta["path"])

    artifacts = TestArtifacts(out_subdir=cfg.get("report_subdir", "eval"), output_dir=cfg.paths.output_dir,
                              tsne_max_points=int(cfg.get("tsne_max_points", 2000)))
    callbacks = [artifacts] + instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in trainer.loggers:
        lg.log_hyperparams(dict(OmegaConf.to_container(cfg, resolve=True), ckpt_path=meta["path"]))
    logged = trainer.test(model=model, datamodule=datamodule, verbose=True)
    metrics = {k: float(v) for k, v in (logged[0] if logged else {}).items()}
    report = artifacts.last_metrics or {}
    if report:
        ci = report["bal_acc_ci"]
        log.info(
            "balanced accuracy %.4f (%d%% CI %.4f-%.4f), AUROC %.4f, accuracy %.4f; report in %s",
            report["bal_acc"], round(100 * ci["level"]), ci["lower"], ci["upper"], report["auroc"],
            report["acc"], report["report_dir"],
        )
    return metrics, dict(cfg=cfg, datamodule=datamodule, model=model, trainer=trainer, report=report)
