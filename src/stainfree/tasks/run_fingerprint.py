"""What makes two training configs the SAME run: the fingerprint a resumed checkpoint must match.

A resume continues the epochs a checkpoint has already trained, so everything that shaped them
(experiment, data, model, optimiser, seed, numerics) must be what the resumed command asks for;
where the files live, how many workers load them, loggers, callbacks and the epoch budget may
change. The one-cycle schedule is the exception to the last: its shape is fixed by the epoch
budget the run started with (see :func:`check_schedule_budget`).
"""
from __future__ import annotations

from typing import Any, Mapping

from stainfree.utils.errors import UserError

# top-level config keys that may change on resume (locations, logging, callbacks, machine, what to run)
NOT_FINGERPRINTED = frozenset({"trainer", "logger", "paths", "callbacks", "runtime", "hydra", "extras", "tags",
                               "ckpt_path", "run", "train", "test", "optimized_metric", "task_name"})
# the trainer keys that change the optimisation itself (the rest: budget, devices, logging cadence)
TRAINER_FINGERPRINT = ("precision", "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm")
# keys inside fingerprinted groups that only say where or how fast
VOLATILE = frozenset({"data.num_workers", "data.pin_memory", "data.persistent_workers", "data.prefetch_factor",
                      "data.cache_dir", "data.report_dir", "data.verify", "model.compile", "model.channels_last",
                      "model.backbone.pretrained_path"})
PATH_KEYS = ("output_dir", "log_dir", "data_dir", "work_dir", "root_dir")  # most specific first
MAX_SHOWN = 60


class ResumeMismatchError(UserError):
    """The checkpoint being resumed was trained with a different experiment, data or model."""


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run-defining values of a resolved config, flattened to dotted keys, paths made relative.

    Paths under ``paths.*`` are written as ``${paths.<key>}/...`` so a run moved to another
    machine (other data_dir) keeps its fingerprint.
    """
    paths = {k: str(v).rstrip("/") for k, v in (config.get("paths") or {}).items()
             if k in PATH_KEYS and v and str(v) not in ("/", ".")}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key not in NOT_FINGERPRINTED:
            _flatten(key, value, flat)
    for key in TRAINER_FINGERPRINT:
        if key in (config.get("trainer") or {}):
            flat[f"trainer.{key}"] = config["trainer"][key]
    return {k: _relative(v, paths) for k, v in flat.items() if k not in VOLATILE}


def fingerprint_diff(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every fingerprinted value that differs (absent keys included)."""
    old, new = fingerprint(stored), fingerprint(current)
    return [f"{key}: {_shown(old.get(key, '<absent>'))} -> {_shown(new.get(key, '<absent>'))}"
            for key in sorted(set(old) | set(new)) if old.get(key, "<absent>") != new.get(key, "<absent>")]


def check_same_run(stored: Mapping[str, Any], current: Mapping[str, Any], ckpt: str) -> None:
    """Refuse to resume ``ckpt`` with a config whose fingerprint differs, naming every difference."""
    diff = fingerprint_diff(stored, current)
    if diff:
        raise ResumeMismatchError(
            f"ckpt_path={ckpt} was trained with other settings than this command ({'; '.join(diff)}); "
            "resume with the run's own experiment/data/model options, or start a new run without ckpt_path")


def check_schedule_budget(stored: Mapping[str, Any], current: Mapping[str, Any], ckpt: str) -> None:
    """A one-cycle schedule cannot be stretched: refuse a larger epoch/step budget than it was laid out for.

    OneCycleLR's warm-up and annealing are spread over the total steps known when the run
    started; the checkpoint restores that layout, so more epochs would step past its end (a
    crash), and re-laying it out would change the epochs already trained.
    """
    scheduler = (stored.get("model") or {}).get("scheduler") or {}
    if not str(scheduler.get("_target_", "")).endswith("OneCycleLR"):
        return
    old, new = stored.get("trainer") or {}, current.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        before, after = _budget(old.get(key)), _budget(new.get(key))
        if after > before:
            shown = "unlimited" if after == float("inf") else int(after)
            raise ResumeMismatchError(
                f"trainer.{key}={shown}: the one-cycle lr schedule of ckpt_path={ckpt} was laid out for "
                f"trainer.{key}={old.get(key)} and ends there (stretching it would change the epochs already "
                f"trained); resume with trainer.{key}={old.get(key)} or less, or start a new run for more")


def _budget(value: Any) -> float:
    """max_epochs/max_steps as a number (None and -1 mean no limit from that key)."""
    return float("inf") if value is None or int(value) < 0 else float(value)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = list(value) if isinstance(value, tuple) else value


def _relative(value: Any, paths: Mapping[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    for key in PATH_KEYS:
        root = paths.get(key)
        if root and (value == root or value.startswith(root + "/")):
            return "${paths." + key + "}" + value[len(root):]
    return value


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."
