"""Who a W&B run is: a sweep's jobs share a group and are named by what differs between them.

So the dashboard compares a sweep without extra code: the group is the multirun folder
(``train/multiruns/<time>``), each job is named by the overrides that differ between the sweep's
jobs (the rule `compare` names its table rows by, ``stainfree.utils.overrides``), and the overrides
every job shares become tags. Single runs keep the names the logger config gives them. An
``eval.py`` run joins the group of the run whose checkpoint it evaluates. A ``logger.wandb.<field>``
given on the command line is left as given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from stainfree.utils.overrides import describing_overrides, distinct_overrides, shared_overrides
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)

MAX_TAG = 64  # W&B refuses longer tags


@dataclass(frozen=True)
class RunIdentity:
    """W&B group, display name and tags of one run."""

    group: str
    name: str
    tags: list[str]


def _hydra_config() -> Any | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _is_multirun(hydra_cfg: Any) -> bool:
    mode = hydra_cfg.get("mode")
    return mode is not None and getattr(mode, "name", str(mode)) == "MULTIRUN"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _sweep_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """Every job's overrides, expanded by Hydra itself from the sweep's ``multirun.yaml``.

    The basic sweeper writes that file before the first job; other sweepers (Optuna) do not,
    and their jobs are not known in advance: None then.
    """
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep = OmegaConf.load(path).hydra
    params = OmegaConf.select(sweep, "sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(sweep.overrides.task)
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception as exc:  # noqa: BLE001 - e.g. a glob() sweep needing the config loader
        log.warning("W&B run name: could not expand the sweep in %s (%s); naming by sweeper params", path, exc)
        return None
    return [list(job) for batch in batches for job in batch]


def sweep_identity(cfg: DictConfig) -> RunIdentity | None:
    """Group, name and tags for a job of a multirun; None for a single run."""
    hydra_cfg = _hydra_config()
    if hydra_cfg is None or not _is_multirun(hydra_cfg):
        return None
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    own = describing_overrides(hydra_cfg.overrides.task)
    jobs = _sweep_jobs(sweep_dir)
    if jobs is not None:
        shared = shared_overrides([describing_overrides(job) for job in jobs])
    else:  # the searched keys are the sweeper's params (Optuna's search space)
        swept = {_key(str(k)) for k in (OmegaConf.select(hydra_cfg, "sweeper.params") or {})}
        shared = {o for o in own if _key(o) not in swept}
    try:
        group = str(sweep_dir.resolve().relative_to(Path(str(cfg.paths.log_dir)).resolve()))
    except ValueError:  # a sweep folder outside logs/: its own path names it
        group = str(sweep_dir)
    tags = list(dict.fromkeys([*map(str, cfg.get("tags") or []), *(o for o in own if o in shared)]))
    name = " ".join(distinct_overrides(own, shared)) or str(cfg.logger.wandb.get("name") or f"job {hydra_cfg.job.num}")
    return RunIdentity(group=group, name=name, tags=[_tag(t) for t in tags])


def _tag(text: str) -> str:
    """A tag W&B accepts (at most 64 characters): long values keep their key and their tail."""
    if len(text) <= MAX_TAG:
        return text
    key, sep, value = text.partition("=")
    if sep and len(key) < MAX_TAG - 8:
        return f"{key}=…{value[-(MAX_TAG - len(key) - 2):]}"
    return text[: MAX_TAG - 1] + "…"


def _user_set(field: str) -> bool:
    """Whether the command line set ``logger.wandb.<field>`` (the user's choice wins)."""
    hydra_cfg = _hydra_config()
    task = hydra_cfg.overrides.task if hydra_cfg is not None else []
    return any(_key(str(o)) == f"logger.wandb.{field}" for o in task)


def _set_wandb(cfg: DictConfig, **values: Any) -> None:
    with open_dict(cfg):
        for key, value in values.items():
            if not _user_set(key):
                cfg.logger.wandb[key] = value


def _uses_wandb(cfg: DictConfig) -> bool:
    return isinstance(cfg.get("logger"), DictConfig) and "wandb" in cfg.logger


def apply_sweep_identity(cfg: DictConfig) -> RunIdentity | None:
    """Inside a multirun, set ``logger.wandb.group/name/tags`` (before the logger is built)."""
    if not _uses_wandb(cfg):
        return None
    identity = sweep_identity(cfg)
    if identity is not None:
        _set_wandb(cfg, group=identity.group, name=identity.name, tags=identity.tags)
        log.info("W&B: group %s, run '%s', tags %s", identity.group, identity.name, identity.tags)
    return identity


def join_evaluated_run(cfg: DictConfig, meta: Any) -> str | None:
    """An eval run joins the evaluated run's group (that run's group, else its W&B id).

    ``meta`` is the checkpoint's ``CheckpointMeta`` (``config``: the resolved training config, ``wandb_id``).
    Returns the group, or None when the training run was not logged to W&B.
    """
    if not _uses_wandb(cfg):
        return None
    trained = ((meta.config or {}).get("logger") or {}).get("wandb") or {}
    group = trained.get("group") or meta.wandb_id
    if not group:
        return None
    name = trained.get("name") or meta.wandb_id
    _set_wandb(cfg, group=str(group), name=f"{name} (eval)", job_type="eval")
    return str(group)

