"""celldeath "ImageNet mode": train the head alone for a first epoch, then unfreeze and train everything.

The original tool ran fastai's ``fit_one_cycle(1, 1e-2)`` on a frozen body, then ``unfreeze()``
and ``fit_one_cycle(epochs, slice(1e-4, 1e-3))``. Here the same happens inside ONE Lightning fit:
for the first ``frozen_epochs`` the body's parameters get ``requires_grad=False`` (no gradients,
no weight decay, no optimizer updates) and its BatchNorm layers stay in eval mode (running stats
frozen), while a one-cycle schedule drives the head up to ``frozen_lr``. At unfreeze the module's
own one-cycle schedule (its max lr per group, pct_start, div factors, annealing) restarts over the
remaining steps. With no scheduler, the head's lr is ``frozen_lr`` while frozen and is restored after.

Works with any LightningModule exposing ``body_parameters()`` and ``head_parameters()``.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from stainfree.models.schedules import one_cycle_pct_start

log = logging.getLogger(__name__)


def one_cycle_kwargs(scheduler: OneCycleLR) -> dict[str, Any]:
    """The shape arguments of a live OneCycleLR (all but max_lr/total_steps), so it can be restarted."""
    phases = scheduler._schedule_phases
    group = scheduler.optimizer.param_groups[0]
    kwargs: dict[str, Any] = dict(
        pct_start=(phases[0]["end_step"] + 1) / scheduler.total_steps,
        three_phase=len(phases) == 3,
        anneal_strategy=getattr(scheduler, "_anneal_func_type", "cos"),
        div_factor=group["max_lr"] / group["initial_lr"],
        final_div_factor=group["initial_lr"] / group["min_lr"],
        cycle_momentum=bool(scheduler.cycle_momentum),
    )
    if scheduler.cycle_momentum:
        kwargs.update(base_momentum=group["base_momentum"], max_momentum=group["max_momentum"])
    return kwargs


class FreezeBody(Callback):
    """Freeze the body for ``frozen_epochs`` epochs (head lr up to ``frozen_lr``), then unfreeze.

    ``train_bn=True`` keeps the body's BatchNorm layers training while frozen (fastai's default);
    the celldeath recipe here keeps them in eval mode.
    """

    def __init__(self, frozen_epochs: int = 1, frozen_lr: float = 1e-2, train_bn: bool = False) -> None:
        if frozen_epochs < 0:
            raise ValueError(f"FreezeBody(frozen_epochs={frozen_epochs}) must be >= 0")
        if frozen_lr <= 0:
            raise ValueError(f"FreezeBody(frozen_lr={frozen_lr}) must be > 0")
        self.frozen_epochs = int(frozen_epochs)
        self.frozen_lr = float(frozen_lr)
        self.train_bn = bool(train_bn)
        self.frozen = False
        self._body: list[nn.Parameter] = []
        self._bn: list[nn.Module] = []
        self._head_groups: list[int] = []
        self._group_lrs: list[float] = []
        self._cycle: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def _collect(self, pl_module: pl.LightningModule) -> None:
        for name in ("body_parameters", "head_parameters"):
            if not callable(getattr(pl_module, name, None)):
                raise TypeError(f"FreezeBody needs {type(pl_module).__name__}.{name}(); use "
                                "stainfree.models.classifier.LiveDeadClassifier or add that method")
        self._body = [p for p in pl_module.body_parameters() if p.requires_grad]
        body_ids = {id(p) for p in self._body}
        self._bn = [m for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and any(True for _ in m.parameters()) and all(id(p) in body_ids for p in m.parameters())]
        head_ids = {id(p) for p in pl_module.head_parameters()}
        if not self._body or not head_ids:
            raise ValueError("FreezeBody: the module reports no body or no head parameters; nothing to freeze")
        self._head_groups = [i for i, g in enumerate(self._optimizer(pl_module).param_groups)
                             if any(id(p) in head_ids for p in g["params"])]

    @staticmethod
    def _optimizer(pl_module: pl.LightningModule) -> Any:
        optimizers = pl_module.trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(f"FreezeBody supports one optimizer, the module has {len(optimizers)}")
        return optimizers[0]

    @staticmethod
    def _scheduler(trainer: pl.Trainer) -> Any:
        configs = trainer.lr_scheduler_configs
        if not configs:
            return None
        if len(configs) > 1 or not isinstance(configs[0].scheduler, OneCycleLR):
            raise ValueError("FreezeBody restarts a OneCycleLR schedule (or works without a scheduler); set "
                             "model.scheduler to torch.optim.lr_scheduler.OneCycleLR or null, or drop callbacks.freeze_body")
        if configs[0].interval != "step":
            raise ValueError("FreezeBody expects the OneCycleLR to step per batch (interval 'step')")
        return configs[0].scheduler

    def _set_body(self, trainable: bool) -> None:
        for p in self._body:
            p.requires_grad_(trainable)
        if not self.train_bn:
            for m in self._bn:
                m.train(trainable)

    def _cycle_over(self, total_steps: int) -> dict[str, Any]:
        """The module's one-cycle shape over ``total_steps`` (pct_start kept off a zero-length phase)."""
        cycle = dict(self._cycle or {})
        cycle["pct_start"] = one_cycle_pct_start(cycle["pct_start"], total_steps, cycle.get("three_phase", False))
        return dict(cycle, total_steps=total_steps)

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.frozen_epochs == 0 or trainer.current_epoch >= self.frozen_epochs:
            return
        self._collect(pl_module)
        optimizer = self._optimizer(pl_module)
        scheduler = self._scheduler(trainer)
        steps_per_epoch = math.ceil(trainer.num_training_batches / max(1, trainer.accumulate_grad_batches))
        frozen_steps = steps_per_epoch * (self.frozen_epochs - trainer.current_epoch)
        if scheduler is not None:
            self._cycle = one_cycle_kwargs(scheduler)
            self._group_lrs = [g["max_lr"] for g in optimizer.param_groups]
            max_lr = [self.frozen_lr if i in self._head_groups else lr for i, lr in enumerate(self._group_lrs)]
            trainer.lr_scheduler_configs[0].scheduler = OneCycleLR(optimizer, max_lr=max_lr,
                                                                   **self._cycle_over(max(1, frozen_steps)))
        else:
            self._group_lrs = [g["lr"] for g in optimizer.param_groups]
            for i in self._head_groups:
                optimizer.param_groups[i]["lr"] = self.frozen_lr
        self._set_body(False)
        self.frozen = True
        if self.frozen_epochs >= trainer.max_epochs > 0:
            log.warning("FreezeBody: frozen_epochs=%d >= max_epochs=%d, the body is never trained",
                        self.frozen_epochs, trainer.max_epochs)
        log.info("FreezeBody: body frozen for %d epoch(s) (%d steps), head lr up to %g",
                 self.frozen_epochs, frozen_steps, self.frozen_lr)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        # Lightning puts the whole module back in train mode after validation; keep frozen BN in eval.
        if self.frozen and not self.train_bn:
            for m in self._bn:
                if m.training:
                    m.eval()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.frozen or trainer.current_epoch < self.frozen_epochs:
            return
        self._set_body(True)
        self.frozen = False
        optimizer = self._optimizer(pl_module)
        if self._cycle is not None:
            remaining = max(1, int(trainer.estimated_stepping_batches) - trainer.global_step)
            trainer.lr_scheduler_configs[0].scheduler = OneCycleLR(optimizer, max_lr=self._group_lrs,
                                                                   **self._cycle_over(remaining))
        else:
            for group, lr in zip(optimizer.param_groups, self._group_lrs):
                group["lr"] = lr
        log.info("FreezeBody: body unfrozen at epoch %d; schedule restarted", trainer.current_epoch)
