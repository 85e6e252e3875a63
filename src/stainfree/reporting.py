"""The few lines a user reads at the end of a run: headline metrics and where everything is."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

HEADLINE = ("test/bal_acc", "test/auroc", "test/acc", "val/bal_acc_best")


def format_run_summary(cfg: DictConfig, metrics: dict[str, Any]) -> str:
    out = Path(str(cfg.paths.output_dir))
    lines = ["", f"== stainfree run: {cfg.get('task_name', 'train')} ({out}) =="]
    if metrics.get("failed"):
        lines.append(f"FAILED: see {out / 'FAILED.txt'}")
    for key in HEADLINE:
        value = metrics.get(key)
        if isinstance(value, float) and not math.isnan(value):
            lines.append(f"  {key:<18} {value:.4f}")
    if metrics.get("best_ckpt"):
        lines.append(f"  best checkpoint    {metrics['best_ckpt']}")
    eval_dir = out / "eval"
    if eval_dir.is_dir():
        lines.append(f"  plots and tables   {eval_dir}")
    return "\n".join(lines)


def print_run_summary(cfg: DictConfig, metrics: dict[str, Any]) -> None:
    print(format_run_summary(cfg, metrics), flush=True)
