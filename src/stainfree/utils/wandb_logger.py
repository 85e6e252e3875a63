"""Lightning's W&B logger with one fix for ``log_model``: only the best checkpoint is published.

Runs keep two checkpoint callbacks: ``best.ckpt`` (monitors ``val/bal_acc``) and ``last.ckpt``
(no monitor, rewritten every epoch for resuming). Lightning's logger would upload both as
versions of ``model-<run id>`` and alias each "best" (a monitor-less callback's best path is
its last file), so the "best" alias would end on last.ckpt. Here only callbacks with a monitor
are uploaded: ``log_model=true`` publishes best.ckpt at the end of training (aliases best,
latest); ``log_model=all`` publishes each new best during training.
"""
from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """``pytorch_lightning.loggers.WandbLogger`` that ignores monitor-less checkpoints for upload."""

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        if getattr(checkpoint_callback, "monitor", None) is None:
            return  # last.ckpt: for resuming, not a model to publish
        super().after_save_checkpoint(checkpoint_callback)
