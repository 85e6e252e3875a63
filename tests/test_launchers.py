"""Scaling-out configs: launcher=slurm|submitit_local|local and hparams_search=optuna.

Composition tests are fast; the real sweeps (2 Optuna trials, a 2-job submitit_local sweep) train
a tiny model on the demo data and are marked slow.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
TINY = ["experiment=demo", "data.synthetic.frames_notreat=6", "data.stride=224", "data.num_workers=0",
        "model.backbone.name=test_resnet", "model.input_size=32", "trainer.max_epochs=1", "test=false",
        "logger=csv", "callbacks=none", "+callbacks.model_checkpoint._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        "+callbacks.model_checkpoint.dirpath=${paths.output_dir}/checkpoints"]


def _compose(overrides: list[str]):
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_one_task_per_gpu():
    cfg = _compose(["launcher=slurm", "trainer=ddp", "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["partition"] == "gpu"
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == cfg.trainer.devices == 2
    assert launcher["nodes"] == cfg.trainer.num_nodes == 1
    single = OmegaConf.to_container(_compose(["launcher=slurm", "trainer=gpu"]).hydra.launcher, resolve=True)
    assert single["gpus_per_node"] == single["tasks_per_node"] == 1


def test_local_launchers_and_optuna_compose():
    assert _compose(["launcher=submitit_local"]).hydra.launcher._target_.endswith("LocalLauncher")
    assert _compose(["launcher=local"]).hydra.launcher._target_.endswith("BasicLauncher")
    cfg = _compose(["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/bal_acc_best"
    assert set(sweeper.params) == {"model.optimizer.lr", "model.optimizer.weight_decay", "data.batch_size"}


def _prepare_demo(tmp: Path) -> None:
    """Build the tiny demo set once here, so parallel jobs do not race to generate it."""
    import hydra

    cfg = _compose([*TINY, f"paths.data_dir={tmp / 'data'}", f"paths.output_dir={tmp}"])
    hydra.utils.instantiate(cfg.data).prepare_data()


def _run_train(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *TINY, f"paths.data_dir={tmp / 'data'}",
           f"paths.log_dir={tmp / 'logs'}", f"hydra.sweep.dir={tmp / 'sweep'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the sweep alone may take 900 s
@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_optuna_two_trials(tmp_path, storage):
    import pandas as pd

    _prepare_demo(tmp_path)
    db = tmp_path / "optuna.db"
    extra = [f"hydra.sweeper.storage=sqlite:///{db}"] if storage == "sqlite" else []
    done = _run_train(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    values = []
    for job in ("0", "1"):
        run = tmp_path / "sweep" / job
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        assert 1e-6 <= cfg.model.optimizer.lr <= 1e-2 and 1e-6 <= cfg.model.optimizer.weight_decay <= 1e-1
        assert cfg.data.batch_size in (4, 8, 16, 32, 64)
        assert (run / "checkpoints").is_dir()
        values.append(pd.read_csv(run / "csv" / "metrics.csv")["val/bal_acc_best"].dropna().iloc[-1])
    best = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert best.name == "optuna"
    assert best.best_value == pytest.approx(max(values), abs=1e-6)
    assert set(best.best_params) == {"model.optimizer.lr", "model.optimizer.weight_decay", "data.batch_size"}
    if storage == "sqlite":  # the study is in the database, so an interrupted search can continue
        import optuna

        study = optuna.load_study(study_name="train_demo", storage=f"sqlite:///{db}")  # task_experiment
        assert len(study.trials) == 2 and study.best_value == pytest.approx(best.best_value, abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the sweep alone may take 900 s
def test_submitit_local_two_job_sweep(tmp_path):
    _prepare_demo(tmp_path)
    done = _run_train(tmp_path, "launcher=submitit_local", "hydra.launcher.timeout_min=15",
                      "model.optimizer.lr=1e-3,1e-4")
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2, list((tmp_path / "sweep").rglob("*"))[:20]
    for path in results:
        status, value = pickle.loads(path.read_bytes())
        assert status == "success", value
        assert 0.0 <= value.return_value <= 1.0
    lrs = sorted(OmegaConf.load(tmp_path / "sweep" / job / ".hydra" / "config.yaml").model.optimizer.lr
                 for job in ("0", "1"))
    assert lrs == [1e-4, 1e-3]
