"""The one LightningModule: any backbone, any number of classes, both studies.

Images arrive as uint8 so host->device copies are 4x smaller; scaling, normalisation and the
grey->RGB expansion run on the device. Validation and test metrics are computed once per epoch
from the gathered, de-duplicated predictions, so DDP's sampler padding never skews them.
"""
from __future__ import annotations

import os
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc

from stainfree.models.backbones import build_backbone
from stainfree.models.checkpoint import (
    CheckpointMeta,
    checkpoint_meta,
    read_checkpoint_meta,
    write_checkpoint_meta,
)
from stainfree.models.schedules import one_cycle_pct_start, one_cycle_total_steps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _plain(value: Any) -> Any:
    """Hydra configs -> plain containers, so checkpoints unpickle with ``weights_only=True``."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


class LiveDeadClassifier(pl.LightningModule):
    """Image classifier with per-stage balanced accuracy / AUROC and paper-style optimisation.

    ``optimizer`` and ``scheduler`` are Hydra ``_partial_`` configs (plain dicts here). The
    optimizer's ``lr`` is the head's; the body gets ``lr * body_lr_ratio`` (discriminative
    learning rates of the celldeath recipe; 1.0 for the JIMT-1 paper).
    """

    def __init__(
        self,
        backbone: dict,
        optimizer: dict,
        scheduler: dict | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        body_lr_ratio: float = 1.0,
        input_size: int = 224,
        normalize: str = "imagenet",
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        backbone, optimizer, scheduler = _plain(backbone), _plain(optimizer), _plain(scheduler)
        class_names = list(_plain(class_names)) if class_names is not None else None
        self.save_hyperparameters(
            dict(
                backbone=backbone,
                optimizer=optimizer,
                scheduler=scheduler,
                scheduler_interval=scheduler_interval,
                scheduler_monitor=scheduler_monitor,
                body_lr_ratio=body_lr_ratio,
                input_size=input_size,
                normalize=normalize,
                label_smoothing=label_smoothing,
                channels_last=channels_last,
                compile=compile,
                class_names=class_names,
            )
        )
        self.net = build_backbone(**backbone)
        self.num_classes = int(backbone["num_classes"])
        self.in_chans = int(backbone.get("in_chans", 3))
        self.class_names = class_names or [str(i) for i in range(self.num_classes)]
        # Identity the feature map passes through: one Grad-CAM hook point for every backbone.
        self.feature_map = nn.Identity()
        mean, std = self._normalisation(normalize, self.in_chans)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.train_loss = MeanMetric()
        self.train_bal_acc = MulticlassAccuracy(num_classes=self.num_classes, average="macro")
        self.val_bal_acc_best = MaxMetric()
        self.val_bal_acc_best.persistent(True)  # in checkpoints: a resumed run keeps the best of its earlier epochs
        self._features_fn = self.net.forward_features
        self._epoch_outputs: list[dict[str, torch.Tensor]] = []
        self.test_outputs: dict[str, torch.Tensor] = {}
        self.run_metadata: dict[str, Any] = {}

    @staticmethod
    def _normalisation(kind: str, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
        if kind == "imagenet":
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            if in_chans != 3:
                mean, std = mean.mean().repeat(in_chans), std.mean().repeat(in_chans)
        elif kind == "unit":
            mean, std = torch.full((in_chans,), 0.5), torch.full((in_chans,), 0.25)
        else:
            raise ValueError(f"model.normalize={kind!r}: choose 'imagenet' or 'unit'")
        return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    # ---------------------------------------------------------------- forward
    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] (C = 1 or in_chans) -> normalised float on the module's device."""
        x = image.to(self.pixel_mean.device, non_blocking=True).float().div_(255.0)
        if x.shape[1] != self.in_chans:
            x = x.expand(-1, self.in_chans, -1, -1)
        x = (x - self.pixel_mean) / self.pixel_std
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        fmap = self.feature_map(self._features_fn(self.preprocess(image)))
        return self.net.forward_head(fmap)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Penultimate (pooled, pre-logits) features, e.g. 2048-d for Inception-v3 (t-SNE)."""
        fmap = self._features_fn(self.preprocess(image))
        return self.net.forward_head(fmap, pre_logits=True)

    def logits_and_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate features from ONE backbone pass (predict + OOD scoring)."""
        fmap = self.feature_map(self._features_fn(self.preprocess(image)))
        return self.net.forward_head(fmap), self.net.forward_head(fmap, pre_logits=True)

    # ---------------------------------------------------------------- calibration (stainfree.trust)
    @property
    def temperature(self) -> float:
        """Temperature fitted on validation after training (checkpoint ``stainfree.calibration``); 1.0 if none."""
        return float((self.run_metadata.get("calibration") or {}).get("temperature", 1.0))

    def calibrated_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax(logits / T): probabilities whose confidence matches validation accuracy."""
        return (logits.float() / self.temperature).softmax(dim=1)

    def gradcam_layer(self) -> nn.Module:
        """Module whose output is the last convolutional feature map (hook it for Grad-CAM)."""
        return self.feature_map

    def body_parameters(self) -> list[nn.Parameter]:
        head_ids = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head_ids]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters())

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and getattr(datamodule, "class_names", None):
            names = list(datamodule.class_names)
            if len(names) != self.num_classes:
                raise ValueError(
                    f"the data has {len(names)} classes {names} but the model was built for "
                    f"{self.num_classes}; set data.num_classes={len(names)}"
                )
            self.class_names = names
            self.hparams["class_names"] = names
        if stage == "fit" and datamodule is not None and hasattr(datamodule, "preprocess_config"):
            # stored in every checkpoint so predict.py tiles raw frames exactly like the training data
            self.run_metadata["preprocess"] = datamodule.preprocess_config()
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.compile and stage == "fit" and self._features_fn == self.net.forward_features:
            # Compile the feature extractor only: the state_dict keys stay those of self.net,
            # so checkpoints load with or without compile.
            self._features_fn = torch.compile(self.net.forward_features)

    # ---------------------------------------------------------------- steps
    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self._loss(logits, batch["target"])
        self.train_loss(loss.detach())
        self.train_bal_acc(logits.detach().argmax(dim=1), batch["target"])
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/bal_acc", self.train_bal_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor]) -> None:
        logits = self(batch["image"])
        self._epoch_outputs.append(
            dict(
                logits=logits.detach().float(),
                target=batch["target"].detach(),
                index=batch["index"].detach(),
            )
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self(batch["image"]).float()
        return dict(probs=logits.softmax(dim=1), calibrated_probs=self.calibrated_probs(logits), logits=logits,
                    target=batch.get("target"), index=batch.get("index"))

    def on_validation_epoch_start(self) -> None:
        self._epoch_outputs = []

    def on_test_epoch_start(self) -> None:
        self._epoch_outputs = []

    def _gather_epoch(self) -> dict[str, torch.Tensor]:
        """All ranks' outputs, sorted by sample index, padded duplicates removed."""
        if not self._epoch_outputs:
            empty = torch.empty(0, device=self.device)
            return dict(logits=empty.view(0, self.num_classes), target=empty.long(), index=empty.long())
        local = {k: torch.cat([o[k] for o in self._epoch_outputs]) for k in self._epoch_outputs[0]}
        self._epoch_outputs = []
        if self.trainer.world_size > 1:
            local = {k: self.all_gather(v).flatten(0, 1) for k, v in local.items()}
        order = torch.argsort(local["index"], stable=True)
        local = {k: v[order] for k, v in local.items()}
        keep = torch.ones_like(local["index"], dtype=torch.bool)
        keep[1:] = local["index"][1:] != local["index"][:-1]
        return {k: v[keep] for k, v in local.items()}

    def _epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        out = self._gather_epoch()
        logits, target = out["logits"], out["target"]
        metrics = {f"{stage}/loss": self._loss(logits, target) if len(target) else torch.tensor(float("nan"))}
        metrics[f"{stage}/bal_acc"] = multiclass_accuracy(
            logits, target, num_classes=self.num_classes, average="macro"
        )
        metrics[f"{stage}/acc"] = multiclass_accuracy(logits, target, num_classes=self.num_classes, average="micro")
        # AUROC is undefined when a class is absent (e.g. a sanity-check batch); log NaN then.
        if len(target) and torch.unique(target).numel() == self.num_classes:
            metrics[f"{stage}/auroc"] = multiclass_auroc(
                logits.softmax(dim=1), target, num_classes=self.num_classes, average="macro"
            )
        else:
            metrics[f"{stage}/auroc"] = torch.tensor(float("nan"), device=logits.device)
        if stage == "test":
            self.test_outputs = dict(
                probs=logits.softmax(dim=1).cpu(), logits=logits.cpu(), target=target.cpu(), index=out["index"].cpu()
            )
        return metrics

    def on_validation_epoch_end(self) -> None:
        metrics = self._epoch_metrics("val")
        self.log_dict(metrics, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_bal_acc_best(metrics["val/bal_acc"])
        self.log("val/bal_acc_best", self.val_bal_acc_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._epoch_metrics("test"))

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        lr = float(self.hparams.optimizer["lr"])
        groups = [
            dict(params=self.body_parameters(), lr=lr * float(self.hparams.body_lr_ratio), name="body"),
            dict(params=self.head_parameters(), lr=lr, name="head"),
        ]
        groups = [g for g in groups if g["params"]]
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params=groups)
        if not self.hparams.scheduler:
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        interval = self.hparams.scheduler_interval
        extra: dict[str, Any] = {}
        if scheduler_cfg["_target_"].endswith("OneCycleLR"):
            # passed at call time: Hydra would turn a list given in the config into a ListConfig,
            # which OneCycleLR cannot divide
            scheduler_cfg.pop("max_lr", None)
            scheduler_cfg.pop("total_steps", None)
            total_steps = one_cycle_total_steps(self.trainer.estimated_stepping_batches)
            scheduler_cfg["pct_start"] = one_cycle_pct_start(float(scheduler_cfg.get("pct_start", 0.3)), total_steps,
                                                             bool(scheduler_cfg.get("three_phase", False)))
            extra = dict(max_lr=[g["lr"] for g in groups], total_steps=total_steps)
            interval = "step"
        scheduler = hydra.utils.instantiate(scheduler_cfg)(optimizer=optimizer, **extra)
        return dict(
            optimizer=optimizer,
            lr_scheduler=dict(scheduler=scheduler, interval=interval, monitor=self.hparams.scheduler_monitor),
        )

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        write_checkpoint_meta(checkpoint, self.run_metadata, self.class_names)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint_meta(checkpoint)
        self.run_metadata = meta.block()
        # checkpoints written before val_bal_acc_best was stored: start its max afresh
        checkpoint.get("state_dict", {}).setdefault("val_bal_acc_best.max_value", self.val_bal_acc_best.max_value)
        if meta.class_names:
            self.class_names = list(meta.class_names)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike | CheckpointMeta,
                        map_location: str | torch.device = "cpu") -> "LiveDeadClassifier":
        """Load for inference: never asks for pretrained weights (the checkpoint has them all).

        The stored arguments may only name allowed classes (``models.checkpoint.check_targets``):
        Lightning would otherwise build whatever a shared checkpoint names.
        """
        meta = checkpoint if isinstance(checkpoint, CheckpointMeta) else read_checkpoint_meta(checkpoint)
        backbone = dict(meta.checked_hyper_parameters()["backbone"], pretrained=False, pretrained_path=None)
        model = cls.load_from_checkpoint(meta.path, map_location=map_location, backbone=backbone, compile=False)
        model.eval()
        return model
