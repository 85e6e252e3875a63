"""The numbers a run is compared by in the W&B runs table: best validation score, time, speed.

W&B's summary keeps the last value of each metric by default; ``val/bal_acc_best`` is declared
with summary ``max`` so the table shows the run's best epoch even if a later epoch logs less, and
the fit's wall time and training throughput are logged once at the end (``train/time_s``,
``train/images_per_s``) for every logger, W&B and CSV alike.
"""
from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

# metric -> W&B summary aggregate ("max", "min", "last", ...)
SUMMARIES = {"val/bal_acc_best": "max"}


class RunSummary(pl.Callback):
    """Declare W&B summaries before the first log; time the fit and count training images.

    Images per second = training images / (fit wall time - validation time), counted on rank zero
    and multiplied by the number of processes (each rank sees its share of every batch).
    """

    def __init__(self, summaries: dict[str, str] | None = None) -> None:
        super().__init__()
        self.summaries = dict(SUMMARIES if summaries is None else summaries)
        self._start = 0.0
        self._val_start = 0.0
        self._val_time = 0.0
        self._images = 0

    @rank_zero_only
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name, summary in self.summaries.items():
                    # keep Lightning's x-axis for the metric (its "*" glob no longer applies to it)
                    logger.experiment.define_metric(name, summary=summary, step_metric="trainer/global_step")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._val_time, self._images = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._images += int(len(batch["target"])) if isinstance(batch, dict) else 0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self._start:
            self._val_time += time.perf_counter() - self._val_start

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        elapsed = time.perf_counter() - self._start
        training = max(elapsed - self._val_time, 1e-9)
        metrics = {"train/time_s": elapsed, "train/images_per_s": self._images * trainer.world_size / training}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
