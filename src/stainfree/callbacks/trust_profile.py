"""After training: fit the temperature and the OOD reference on the BEST weights, store them in best.ckpt.

Runs once at the end of ``trainer.fit`` (rank zero; other ranks wait at a barrier), before
train.py tests the best checkpoint, so the test report already shows calibrated ECE and every
checkpoint predict.py gets carries ``stainfree.calibration`` and ``stainfree.ood``.
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from stainfree.inference.trust_fit import ProfileLimits, fit_trust_profile
from stainfree.trust.checkpoint import write_trust_blocks
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)


class TrustProfile(pl.Callback):
    """Fit ``calibration`` + ``ood`` for the best checkpoint (or the final weights when none was saved).

    ``max_images``/``max_patches`` cap the OOD fit (seeded subsamples) so it stays short on big data.
    """

    def __init__(self, max_images: int = 200, max_patches: int = 20000, batch_size: int = 64, seed: int | None = 0) -> None:
        super().__init__()
        self.limits = ProfileLimits(max_images=int(max_images), max_patches=int(max_patches),
                                    batch_size=int(batch_size), seed=int(seed or 0))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._fit(trainer, pl_module)
        trainer.strategy.barrier("trust_profile")

    def _fit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "val_dataloader"):
            log.warning("TrustProfile: no DataModule attached; no calibration or OOD reference fitted")
            return
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        if best and Path(best).is_file():
            from stainfree.models.classifier import LiveDeadClassifier

            model = LiveDeadClassifier.from_checkpoint(best, map_location=pl_module.device)
            blocks = fit_trust_profile(model, datamodule, limits=self.limits)
            write_trust_blocks(best, blocks)
            log.info("calibration and OOD reference stored in %s", best)
            del model
        else:  # no checkpoint: the final weights are what gets tested
            log.warning("TrustProfile: no best checkpoint saved; fitting on the final weights (kept in memory only)")
            blocks = fit_trust_profile(pl_module, datamodule, limits=self.limits)
            pl_module.run_metadata.update(blocks)
