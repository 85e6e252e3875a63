"""Evaluate a checkpoint: `python eval.py ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt`.

Test metrics with the Brodersen 95% interval, per-patch predictions and the papers' figures
(ROC, confusion, PI scatter/histogram, t-SNE, Grad-CAM) in logs/eval/runs/<time>/eval/.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without `pip install -e`

from stainfree.utils.cli import multirun_flag_first  # noqa: E402
from stainfree.utils.env import configure_offline_environment  # noqa: E402

configure_offline_environment()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stainfree.evaluation.evaluate import CheckpointMismatchError, evaluate  # noqa: E402
from stainfree.evaluation.report import ReportError  # noqa: E402
from stainfree.utils.runtime import RuntimeSettingError  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, objects = evaluate(cfg)
    except (FileNotFoundError, CheckpointMismatchError, ReportError, RuntimeSettingError) as exc:
        # A wrong path or a checkpoint/config mismatch: the message says what to do; no traceback.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    report = objects.get("report") or {}
    return report.get("bal_acc", metrics.get("test/bal_acc"))


if __name__ == "__main__":
    multirun_flag_first()  # `python eval.py experiment=x -m ...` works like train.py
    main()
