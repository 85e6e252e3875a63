"""Resume picks THE run the user names, in its own folder, and refuses another run's settings (fast, no training).

The kill -9 + resume run is in test_resume.py (slow).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from stainfree.models.classifier import LiveDeadClassifier
from stainfree.models.schedules import one_cycle_pct_start
from stainfree.tasks.resume import find_target, hydra_run_dir
from stainfree.tasks.run_fingerprint import check_schedule_budget, fingerprint_diff
from stainfree.tasks.train import resolved_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "stainfree.tasks.train"
BASE = ["experiment=demo", "model.backbone.name=test_resnet", "model.input_size=32", "logger=csv"]


def _fake_run(log_dir: Path, name: str, config: dict, experiment: str = "demo", wandb_id: str | None = None) -> Path:
    """A run folder as train.py leaves it: .hydra/hydra.yaml and checkpoints/last.ckpt with a stainfree block."""
    run = log_dir / "train" / "runs" / name
    (run / ".hydra").mkdir(parents=True)
    choices = {"experiment": experiment, "data": config["data"]["_target_"].rsplit(".", 1)[-1], "model": "resnet18"}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (run / "checkpoints").mkdir()
    torch.save({"epoch": 0, "global_step": 3, "hyper_parameters": {"backbone": {"name": "test_resnet"}},
                "stainfree": {"config": config, "wandb_id": wandb_id}}, run / "checkpoints" / "last.ckpt")
    if wandb_id:
        (run / "wandb" / f"offline-run-20260101_000000-{wandb_id}").mkdir(parents=True)
    return run


@pytest.fixture
def stored(compose_cfg) -> dict:
    """The resolved config train.py stores for BASE (what a checkpoint of that run holds)."""
    return resolved_config(compose_cfg(BASE))


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [*BASE, f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", *extra]


def test_last_alone_refuses_and_lists_the_runs_of_this_task(tmp_path, stored, cli):
    other = dict(stored, experiment_name="celldeath", data=dict(stored["data"], _target_="x.CellDeathDataModule"))
    _fake_run(tmp_path / "logs", "2026-01-01_00-00-00", stored)
    _fake_run(tmp_path / "logs", "2026-01-02_00-00-00", other, experiment="celldeath_recipe")  # the newest
    status, _, err = cli(TRAIN, "train.py", *_args(tmp_path, "ckpt_path=last"))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "ckpt_path=last run=<run folder or W&B id>" in err
    assert "runs/2026-01-02_00-00-00 (experiment=celldeath_recipe data=CellDeathDataModule" in err
    assert "runs/2026-01-01_00-00-00 (experiment=demo data=JimtDataModule" in err


def test_a_run_is_named_by_folder_name_path_or_wandb_id_and_hydra_writes_there(tmp_path, stored):
    logs = tmp_path / "logs"
    run = _fake_run(logs, "2026-01-01_00-00-00", stored, wandb_id="abc123")
    _fake_run(logs, "2026-01-02_00-00-00", stored, wandb_id="zzz999")
    last = run / "checkpoints" / "last.ckpt"
    for named in ("2026-01-01_00-00-00", "runs/2026-01-01_00-00-00", str(run), "abc123"):
        assert find_target("last", named, logs / "train").ckpt == last.resolve(), named
    assert find_target(str(run), None, logs / "train").run_dir == run.resolve()
    job = logs / "train" / "multiruns" / "2026-01-03_00-00-00" / "1"  # a sweep job, resumed on its own
    job.parent.mkdir(parents=True)
    _fake_run(logs, "x", stored).rename(job)
    assert find_target("last", "multiruns/2026-01-03_00-00-00/1", logs / "train").run_dir == job.resolve()
    assert find_target(str(last), None, logs / "train").run_dir == run.resolve()
    assert hydra_run_dir("last", "abc123", str(logs / "train"), "NEW") == str(run.resolve())
    assert hydra_run_dir(None, None, str(logs / "train"), "NEW") == "NEW"
    # the wiring in conf/: Hydra's run dir for the resumed command is the run's folder
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True,
                      overrides=[f"paths.log_dir={logs}", "ckpt_path=last", "run=abc123"])
    assert OmegaConf.select(cfg, "hydra.run.dir") == str(run.resolve())
    assert OmegaConf.select(cfg, "hydra.output_subdir").startswith(".hydra/resume_")


def test_best_ckpt_of_a_run_and_an_unknown_run_are_refused(tmp_path, stored, cli):
    run = _fake_run(tmp_path / "logs", "2026-01-01_00-00-00", stored)
    (run / "checkpoints" / "best.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    status, _, err = cli(TRAIN, "train.py", *_args(tmp_path, f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}"))
    assert status == 2 and "a run resumes from its newest epoch, checkpoints/last.ckpt" in err, err
    status, _, err = cli(TRAIN, "train.py", *_args(tmp_path, "ckpt_path=last", "run=nope"))
    assert status == 2 and "run=nope: no such run folder and no run with that W&B id" in err, err


def test_another_experiments_checkpoint_is_refused_with_a_one_line_diff(tmp_path, stored, cli):
    other = dict(stored, data=dict(stored["data"], manifest="/elsewhere/b.csv"),
                 model=dict(stored["model"], backbone=dict(stored["model"]["backbone"], name="squeezenet")))
    run = _fake_run(tmp_path / "logs", "2026-01-01_00-00-00", other)
    status, _, err = cli(TRAIN, "train.py", *_args(tmp_path, "ckpt_path=last", f"run={run}"))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    manifest = stored["data"]["manifest"].replace(str(tmp_path / "data"), "${paths.data_dir}")
    assert f"(data.manifest: /elsewhere/b.csv -> {manifest}; model.backbone.name: squeezenet -> test_resnet)" in err
    assert not list((run / ".hydra").glob("resume_*")), "a refused resume left files in the run folder"


def test_fingerprint_ignores_what_may_change_on_resume(stored):
    moved = OmegaConf.to_container(OmegaConf.create(stored))
    moved["trainer"]["max_epochs"] = 99
    moved["trainer"]["devices"] = 4
    moved["data"]["num_workers"] = 7
    moved["logger"] = {}
    moved["callbacks"] = {}
    moved["runtime"] = {"threads": 3}
    old_data = moved["paths"]["data_dir"]
    moved["paths"]["data_dir"] = "/mnt/other"  # the run moved to another machine
    moved["data"]["manifest"] = moved["data"]["manifest"].replace(old_data, "/mnt/other")
    assert fingerprint_diff(stored, moved) == []
    moved["trainer"]["precision"] = "16-mixed"
    moved["seed"] = 7
    assert fingerprint_diff(stored, moved) == ["seed: 42 -> 7", "trainer.precision: 32-true -> 16-mixed"]


def test_one_cycle_refuses_a_larger_epoch_budget_on_resume(tmp_path, stored, cli):
    more = OmegaConf.to_container(OmegaConf.create(stored))
    planned = stored["trainer"]["max_epochs"]
    more["trainer"]["max_epochs"] = planned + 5
    with pytest.raises(ValueError, match=rf"trainer.max_epochs={planned + 5}: the one-cycle lr schedule .* laid out "
                                         rf"for trainer.max_epochs={planned} .* resume with trainer.max_epochs={planned} "
                                         "or less"):
        check_schedule_budget(stored, more, "last.ckpt")
    fewer = dict(more, trainer=dict(more["trainer"], max_epochs=3))
    check_schedule_budget(stored, fewer, "last.ckpt")  # ends the schedule early: allowed
    plain = dict(stored, model=dict(stored["model"], scheduler=None))
    check_schedule_budget(plain, more, "last.ckpt")  # no one-cycle: nothing to stretch
    run = _fake_run(tmp_path / "logs", "2026-01-01_00-00-00", stored)
    status, _, err = cli(TRAIN, "train.py", *_args(tmp_path, f"ckpt_path={run}", "trainer.max_epochs=17"))
    assert status == 2 and "the one-cycle lr schedule" in err, err


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_one_cycle_of_a_few_steps_trains(steps):
    """pct_start=0.25 over 4 steps made OneCycleLR divide by zero (a warm-up phase of length 0)."""
    model = LiveDeadClassifier(backbone=dict(name="test_resnet", num_classes=2), input_size=32,
                               optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
                               scheduler={"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True,
                                          "pct_start": 0.25})
    batches = [dict(image=torch.randint(0, 255, (2, 1, 32, 32), dtype=torch.uint8),
                    target=torch.tensor([0, 1]), index=torch.arange(2) + 2 * i) for i in range(steps)]
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(batches, batch_size=None), DataLoader(batches[:1], batch_size=None))
    assert trainer.global_step == steps
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == steps


def test_one_cycle_pct_start_moves_only_a_degenerate_value():
    assert one_cycle_pct_start(0.25, 4) == pytest.approx(0.375)
    assert one_cycle_pct_start(0.25, 1000) == 0.25
    assert one_cycle_pct_start(0.3, 4) == 0.3


def test_val_bal_acc_best_is_in_checkpoints_and_old_checkpoints_still_load(tmp_path):
    model = LiveDeadClassifier(backbone=dict(name="test_resnet", num_classes=2), input_size=32,
                               optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    model.val_bal_acc_best(torch.tensor(0.75))
    state = model.state_dict()
    assert float(state["val_bal_acc_best.max_value"]) == 0.75  # a resumed run keeps its best so far
    old = {k: v for k, v in state.items() if not k.startswith("val_bal_acc_best")}
    checkpoint = {"state_dict": old, "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": "2.6.0",
                  "stainfree": {"config": {}, "class_names": ["a", "b"]}}
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = LiveDeadClassifier.from_checkpoint(tmp_path / "old.ckpt")
    assert loaded.class_names == ["a", "b"]
