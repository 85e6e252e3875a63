"""FreezeBody: body frozen (no updates, BN stats fixed) in the first epoch, then trained; lr schedules restart."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader, Dataset

from stainfree.callbacks.freeze_body import FreezeBody, one_cycle_kwargs
from stainfree.models.classifier import LiveDeadClassifier


class _Tiny(Dataset):
    def __init__(self, n: int = 8, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
        self.y = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "target": self.y[i], "index": torch.tensor(i)}


class _Probe(Callback):
    """Records lrs / trainability per batch and body weights at each epoch end."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.body_at_epoch_end: list[torch.Tensor] = []
        self.bn_stats_at_epoch_end: list[torch.Tensor] = []
        self.head_at_epoch_end: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        groups = trainer.optimizers[0].param_groups
        bns = [m for m in pl_module.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        self.rows.append(dict(epoch=trainer.current_epoch, body_lr=groups[0]["lr"], head_lr=groups[1]["lr"],
                              body_grad=any(p.requires_grad for p in pl_module.body_parameters()),
                              bn_training=any(m.training for m in bns)))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.body_at_epoch_end.append(torch.cat([p.detach().flatten() for p in pl_module.body_parameters()]).clone())
        self.head_at_epoch_end.append(torch.cat([p.detach().flatten() for p in pl_module.head_parameters()]).clone())
        bns = [m for m in pl_module.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        self.bn_stats_at_epoch_end.append(torch.cat([m.running_mean.flatten() for m in bns]).clone())


def _model(scheduler: dict | None) -> LiveDeadClassifier:
    return LiveDeadClassifier(
        backbone=dict(name="test_resnet", num_classes=2, in_chans=3),
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "weight_decay": 0.01},
        scheduler=scheduler, body_lr_ratio=0.1, input_size=32)


def _fit(scheduler: dict | None, epochs: int = 3) -> tuple[_Probe, torch.Tensor, torch.Tensor]:
    pl.seed_everything(0)
    model = _model(scheduler)
    body0 = torch.cat([p.detach().flatten() for p in model.body_parameters()]).clone()
    bn0 = torch.cat([m.running_mean.flatten() for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]).clone()
    probe = _Probe()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[FreezeBody(frozen_epochs=1, frozen_lr=1e-2), probe])
    trainer.fit(model, DataLoader(_Tiny(), batch_size=2), DataLoader(_Tiny(4), batch_size=4))
    return probe, body0, bn0


def test_freeze_then_unfreeze_with_one_cycle() -> None:
    probe, body0, bn0 = _fit({"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True, "_convert_": "all",
                      "pct_start": 0.3})
    epoch0 = [r for r in probe.rows if r["epoch"] == 0]
    later = [r for r in probe.rows if r["epoch"] > 0]
    assert len(epoch0) == 4 and len(later) == 8
    assert not any(r["body_grad"] or r["bn_training"] for r in epoch0)
    assert all(r["body_grad"] and r["bn_training"] for r in later)
    # body weights and BN running stats untouched in the frozen epoch, trained afterwards
    assert torch.equal(probe.body_at_epoch_end[0], body0)
    assert torch.equal(probe.bn_stats_at_epoch_end[0], bn0)
    assert not torch.equal(probe.body_at_epoch_end[1], body0)
    assert not torch.equal(probe.head_at_epoch_end[0], probe.head_at_epoch_end[1])
    # frozen phase: a one-cycle over its 4 steps up to frozen_lr; then the module's cycle over the other 8
    assert [r["head_lr"] for r in epoch0] == pytest.approx(_reference_cycle(1e-2, 4))
    assert [r["head_lr"] for r in later] == pytest.approx(_reference_cycle(1e-3, 8))
    assert [r["body_lr"] for r in later] == pytest.approx(_reference_cycle(1e-4, 8))


def _reference_cycle(max_lr: float, steps: int) -> list[float]:
    """lr per step of a fresh OneCycleLR with the module's shape (pct_start 0.3, torch defaults)."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.3)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_freeze_without_scheduler_sets_and_restores_head_lr() -> None:
    probe, body0, _ = _fit(None, epochs=2)
    assert [r["head_lr"] for r in probe.rows] == [1e-2] * 4 + [1e-3] * 4
    assert all(r["body_lr"] == pytest.approx(1e-4) for r in probe.rows)
    assert torch.equal(probe.body_at_epoch_end[0], body0)


def test_one_cycle_kwargs_reproduce_the_schedule() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    a = OneCycleLR(opt, max_lr=0.5, total_steps=20, pct_start=0.25, div_factor=10, final_div_factor=100,
                   anneal_strategy="linear")
    kw = one_cycle_kwargs(a)
    assert kw["pct_start"] == pytest.approx(0.25) and kw["anneal_strategy"] == "linear"
    assert kw["div_factor"] == pytest.approx(10) and kw["final_div_factor"] == pytest.approx(100)
    lrs_a = []
    for _ in range(20):
        lrs_a.append(opt.param_groups[0]["lr"])
        opt.step()
        a.step()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    b = OneCycleLR(opt2, max_lr=0.5, total_steps=20, **kw)
    lrs_b = []
    for _ in range(20):
        lrs_b.append(opt2.param_groups[0]["lr"])
        opt2.step()
        b.step()
    assert lrs_a == pytest.approx(lrs_b)


def test_rejects_bad_arguments_and_modules_without_body() -> None:
    with pytest.raises(ValueError, match="frozen_epochs"):
        FreezeBody(frozen_epochs=-1)
    with pytest.raises(ValueError, match="frozen_lr"):
        FreezeBody(frozen_lr=0)

    class NoBody(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def training_step(self, batch, i):
            return self.lin(batch["x"]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[FreezeBody()])
    with pytest.raises(TypeError, match="body_parameters"):
        trainer.fit(NoBody(), DataLoader([{"x": torch.zeros(2)}] * 2, batch_size=2))
