"""Resume continues THE run: which run, its folder for Hydra, and the checks before its epochs go on.

A run is named by ``ckpt_path=<run folder>``, ``ckpt_path=<run folder>/checkpoints/last.ckpt`` or
``ckpt_path=last run=<run folder | its name under logs/<task>/ | its W&B id>``; ``ckpt_path=last``
alone means the run folder this command writes to (``hydra.run.dir=<folder>``) and is refused,
listing this task's resumable runs, when that folder has none. The resumed process writes into
the run's own folder (Hydra's run dir comes from :func:`hydra_run_dir`, a config resolver, so it
is known before Hydra creates anything) and W&B run, and Lightning restores the checkpoint
callbacks' best score and path there. A checkpoint that is not in a run folder resumes into a
new folder.
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import CSVLogger

from stainfree.models.checkpoint import CheckpointError, CheckpointMeta, read_checkpoint_meta
from stainfree.tasks.run_fingerprint import ResumeMismatchError, check_same_run, check_schedule_budget
from stainfree.utils.atomic import atomic_path
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)

LAST = "last.ckpt"
RUN_MARKER = ".hydra"  # every Hydra run folder has it
MAX_LISTED = 6


class ResumeError(CheckpointError):
    """The run to resume cannot be found, is ambiguous, or would be resumed somewhere else."""


@dataclass(frozen=True)
class ResumeTarget:
    """The checkpoint to resume and the run folder it belongs to (None: a loose file, new folder)."""

    ckpt: Path
    run_dir: Path | None


def run_dir_of(ckpt: Path) -> Path | None:
    """``<run>`` for ``<run>/checkpoints/<file>.ckpt`` when ``<run>`` is a Hydra run folder."""
    run = ckpt.resolve().parent.parent
    return run if ckpt.resolve().parent.name == "checkpoints" and (run / RUN_MARKER).is_dir() else None


def find_target(ckpt_path: Any, run: Any, task_root: Path, own_dir: Path | None = None) -> ResumeTarget | None:
    """The checkpoint and run a command resumes (None: no resume), or a one-line ResumeError."""
    ckpt = None if ckpt_path in (None, "") else str(ckpt_path)
    if run not in (None, ""):
        if ckpt not in (None, "last"):
            raise ResumeError(f"run={run} with ckpt_path={ckpt}: name the run once, as ckpt_path=last run={run} "
                              f"or as ckpt_path=<its folder>")
        return _in_run(_named_run(str(run), task_root), f"run={run}")
    if ckpt is None:
        return None
    if ckpt == "last":
        if own_dir is not None and (own_dir / "checkpoints" / LAST).is_file():
            return ResumeTarget((own_dir / "checkpoints" / LAST).resolve(), own_dir.resolve())
        raise ResumeError(f"ckpt_path=last: name the run to resume, as ckpt_path=last run=<run folder or W&B id> "
                          f"(runs of this task under {task_root}: {describe_runs(task_root)})")
    path = Path(ckpt).expanduser()
    if path.is_dir():
        return _in_run(path.resolve(), f"ckpt_path={ckpt}")
    if not path.is_file():
        raise ResumeError(f"ckpt_path={ckpt} does not exist; pass a run folder, its checkpoints/last.ckpt, "
                          "or ckpt_path=last run=<run folder or W&B id>")
    run_dir = run_dir_of(path)
    if run_dir is not None and path.name != LAST:
        raise ResumeError(f"ckpt_path={ckpt}: a run resumes from its newest epoch, checkpoints/last.ckpt "
                          f"(resuming from {path.name} would overwrite the epochs after it); pass "
                          f"ckpt_path={run_dir / 'checkpoints' / LAST}")
    return ResumeTarget(path.resolve(), run_dir)


def _in_run(run_dir: Path, named: str) -> ResumeTarget:
    ckpt = run_dir / "checkpoints" / LAST
    if not ckpt.is_file():
        raise ResumeError(f"{named}: {run_dir} has no checkpoints/{LAST} to resume (it stopped before its first "
                          "epoch ended, or is not a training run folder); start it again without ckpt_path")
    return ResumeTarget(ckpt.resolve(), run_dir.resolve())


def _named_run(name: str, task_root: Path) -> Path:
    """A run folder given as a path, as its name under the task's folder, or by its W&B run id."""
    for candidate in (Path(name).expanduser(), task_root / name, task_root / "runs" / name,
                      task_root / "multiruns" / name):
        if candidate.is_dir():
            return candidate.resolve()
    by_id = sorted({p.parent.parent for p in task_root.glob(f"**/wandb/*run-*-{name}") if p.is_dir()}
                   ) if name.isalnum() else []  # W&B ids are letters and digits
    if len(by_id) == 1:
        return by_id[0].resolve()
    if len(by_id) > 1:
        raise ResumeError(f"run={name}: several run folders hold W&B run {name} ({', '.join(map(str, by_id))}); "
                          "pass the folder instead")
    raise ResumeError(f"run={name}: no such run folder and no run with that W&B id under {task_root} "
                      f"(runs of this task: {describe_runs(task_root)})")


def resumable_runs(task_root: Path) -> list[Path]:
    """Run folders of a task that hold a last.ckpt, newest first."""
    ckpts = [p for p in task_root.glob(f"**/checkpoints/{LAST}") if (p.parent.parent / RUN_MARKER).is_dir()]
    return [p.parent.parent for p in sorted(ckpts, key=lambda p: p.stat().st_mtime, reverse=True)]


def describe_runs(task_root: Path) -> str:
    """``runs/<time> (experiment=.. data=.. model=..)`` for the resumable runs, on one line."""
    runs = resumable_runs(task_root)
    if not runs:
        return "none has a checkpoints/last.ckpt"
    shown = [f"{_relative(run, task_root)} ({_choices(run)})" for run in runs[:MAX_LISTED]]
    more = f", and {len(runs) - MAX_LISTED} more" if len(runs) > MAX_LISTED else ""
    return ", ".join(shown) + more


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _choices(run: Path) -> str:
    """The experiment/data/model a run was started with (its .hydra/hydra.yaml)."""
    try:
        hydra_cfg = yaml.safe_load((run / RUN_MARKER / "hydra.yaml").read_text()) or {}
        choices = hydra_cfg["hydra"]["runtime"]["choices"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "settings unknown"
    return " ".join(f"{group}={choices.get(group)}" for group in ("experiment", "data", "model"))


# ---------------------------------------------------------------- Hydra: the resumed run's folder
def hydra_run_dir(ckpt_path: Any, run: Any, task_root: str, new_dir: str) -> str:
    """``hydra.run.dir``: the resumed run's own folder, else ``new_dir``.

    Never raises: a run that cannot be found gets a new folder here, and train() then refuses
    it with the one-line reason before anything is written there but Hydra's own files.
    """
    target = _quiet_target(ckpt_path, run, Path(task_root))
    return str(target.run_dir) if target is not None and target.run_dir is not None else new_dir


def hydra_output_subdir(ckpt_path: Any, run: Any, task_root: str) -> str:
    """``hydra.output_subdir``: a resumed run keeps the .hydra/ it was started with; the resume's goes beside."""
    target = _quiet_target(ckpt_path, run, Path(task_root))
    if target is None or target.run_dir is None:
        return RUN_MARKER
    return f"{RUN_MARKER}/resume_{datetime.now():%Y-%m-%d_%H-%M-%S}"


def _quiet_target(ckpt_path: Any, run: Any, task_root: Path) -> ResumeTarget | None:
    try:
        return find_target(ckpt_path, run, task_root) if ckpt_path != "last" or run else None
    except (CheckpointError, OSError):
        return None


def register_resolvers() -> None:
    """``${resume_run_dir:...}`` and ``${resume_output_subdir:...}`` for conf/hydra/train.yaml."""
    if not OmegaConf.has_resolver("resume_run_dir"):
        OmegaConf.register_new_resolver("resume_run_dir", hydra_run_dir)
    if not OmegaConf.has_resolver("resume_output_subdir"):
        OmegaConf.register_new_resolver("resume_output_subdir", hydra_output_subdir)


register_resolvers()  # the train task imports this module before Hydra composes its config


# ---------------------------------------------------------------- train(): the checks
@dataclass
class Resume:
    """A checked resume: the checkpoint for ``trainer.fit`` and the CSV rows to carry over."""

    ckpt: str
    meta: CheckpointMeta
    csv_history: dict[Path, list[dict[str, str]]] = field(default_factory=dict)

    def restore_csv_history(self, trainer: pl.Trainer) -> None:
        """Put the epochs before the resume back into each CSVLogger's metrics.csv.

        Lightning's CSV writer deletes an existing metrics.csv when it starts; call this right
        after the Trainer is built, before anything is logged. A copy is kept until written back.
        """
        for logger in trainer.loggers:
            if not isinstance(logger, CSVLogger):
                continue
            writer = logger.experiment  # the writer starts (and deletes metrics.csv) here
            path = Path(writer.metrics_file_path).resolve()
            rows = self.csv_history.get(path)
            if not rows:
                continue
            header = sorted({key for row in rows for key in row})
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
                out = csv.DictWriter(file, fieldnames=header)
                out.writeheader()
                out.writerows(rows)
            writer.metrics_keys = header
            _backup(path).unlink(missing_ok=True)


def prepare_resume(cfg: DictConfig, current: dict[str, Any]) -> Resume | None:
    """The checked resume (None: a new run), W&B pointed at its run, or a one-line error.

    ``current`` is the command's resolved config (what would be stored in new checkpoints).
    """
    task_root = Path(str(cfg.paths.log_dir)) / str(cfg.task_name)
    own_dir = Path(str(cfg.paths.output_dir)).resolve()
    target = find_target(cfg.get("ckpt_path"), cfg.get("run"), task_root, own_dir)
    if target is None:
        return None
    if target.run_dir is not None and target.run_dir != own_dir:
        raise ResumeError(f"resuming run {target.run_dir} but this command writes to {own_dir} (hydra.run.dir "
                          "or a multirun); drop hydra.run.dir, or set it to the run folder")
    meta = read_checkpoint_meta(target.ckpt)
    try:
        if meta.config:
            check_same_run(meta.config, current, str(target.ckpt))
            check_schedule_budget(meta.config, current, str(target.ckpt))
        else:
            log.warning("%s stores no config: its experiment/data cannot be checked", target.ckpt)
    except ResumeMismatchError:
        _forget_resume_files(own_dir if target.run_dir is not None else None)
        raise
    point_wandb_at(cfg, meta)
    log.info("resuming %s from %s", target.run_dir or "in a new run folder", target.ckpt)
    history = _csv_history(own_dir, _epoch(target.ckpt)) if target.run_dir is not None else {}
    return Resume(str(target.ckpt), meta, history)


def point_wandb_at(cfg: DictConfig, resumed: CheckpointMeta) -> None:
    """The W&B logger continues the run the checkpoint came from."""
    if "wandb" not in (cfg.get("logger") or {}) or not resumed.wandb_id:
        return
    with open_dict(cfg):
        cfg.logger.wandb.id = resumed.wandb_id
        cfg.logger.wandb.resume = "allow"


def _epoch(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True).get("epoch", -1))


def _csv_history(run_dir: Path, last_epoch: int) -> dict[Path, list[dict[str, str]]]:
    """The metrics.csv rows of the epochs the checkpoint holds (a partly trained epoch after it is dropped).

    Each file is copied aside first, so a crash between the writer deleting it and
    :meth:`Resume.restore_csv_history` loses nothing.
    """
    history: dict[Path, list[dict[str, str]]] = {}
    for path in run_dir.glob("**/metrics.csv"):
        if "wandb" in path.parts:
            continue
        shutil.copy2(path, _backup(path))
        with path.open(newline="") as file:
            rows = [row for row in csv.DictReader(file) if _row_epoch(row) <= last_epoch]
        history[path.resolve()] = rows
    return history


def _row_epoch(row: dict[str, str]) -> float:
    try:
        return float(row.get("epoch") or -1)
    except ValueError:
        return -1


def _backup(path: Path) -> Path:
    return path.with_name(path.name + ".before_resume")


def _forget_resume_files(run_dir: Path | None) -> None:
    """A refused resume leaves nothing in the run folder: drop the .hydra/resume_<time>/ Hydra just wrote."""
    if run_dir is None or not HydraConfig.initialized():
        return
    subdir = HydraConfig.get().output_subdir
    if subdir and str(subdir).startswith(f"{RUN_MARKER}/resume_"):
        shutil.rmtree(run_dir / str(subdir), ignore_errors=True)
