"""Write the evaluation report (metrics with CI, per-patch CSV, figures) right after ``trainer.test``.

So every training run ends with the same artefacts ``eval.py`` makes from a checkpoint, computed
from the very predictions behind the logged ``test/*`` numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from stainfree.evaluation.report import write_report
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)


class EvalReport(pl.Callback):
    """At the end of each test pass: ``write_report`` into ``<run dir>/<out_subdir>`` (rank zero).

    The run dir is ``output_dir`` when given (Hydra's ``${paths.output_dir}``), else the trainer's
    ``default_root_dir``. A second test pass writes ``eval_1/`` and so on: nothing is overwritten.
    """

    def __init__(self, out_subdir: str = "eval", output_dir: str | None = None, tsne_max_points: int = 2000,
                 wandb_table_rows: int = 500) -> None:
        super().__init__()
        self.out_subdir = out_subdir
        self.output_dir = output_dir
        self.tsne_max_points = tsne_max_points
        self.wandb_table_rows = wandb_table_rows  # W&B predictions table cap (0: no table)
        self.last_metrics: dict[str, Any] | None = None

    def report_dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir or trainer.default_root_dir) / self.out_subdir

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "split_table"):
            log.warning(
                "EvalReport: no DataModule with split_table() attached to the trainer; "
                "call trainer.test(datamodule=...) to get the evaluation report"
            )
            return
        self.last_metrics = write_report(
            pl_module, datamodule, self.report_dir(trainer), stage="test",
            logger=trainer.loggers, tsne_max_points=self.tsne_max_points,
            wandb_table_rows=self.wandb_table_rows,
        )
