"""W&B group/name/tags of sweep jobs and eval runs, decided from Hydra's config alone (no W&B run)."""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

from stainfree.utils.wandb_identity import apply_sweep_identity, join_evaluated_run

LONG = "data.manifest=/a/very/long/folder/name/that/goes/on/and/on/for/ever/synthetic/manifest.csv"


def _as_job(cfg, sweep_dir: Path, task: list[str], params: dict | None = None):  # type: ignore[no-untyped-def]
    """Make the current Hydra config say: job 0 of a multirun in ``sweep_dir`` with these overrides."""
    hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    with read_write(hydra_cfg.hydra), open_dict(hydra_cfg.hydra):
        hydra_cfg.hydra.mode = RunMode.MULTIRUN
        hydra_cfg.hydra.sweep.dir = str(sweep_dir)
        hydra_cfg.hydra.overrides.task = task
        hydra_cfg.hydra.sweeper.params = params
        hydra_cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(hydra_cfg)
    return cfg


def test_basic_sweep_job_named_by_what_differs(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["experiment=demo", "logger=wandb"])
    single = OmegaConf.to_container(cfg.logger.wandb, resolve=True)
    assert apply_sweep_identity(cfg) is None  # a single run keeps today's name and group
    assert OmegaConf.to_container(cfg.logger.wandb, resolve=True) == single

    sweep = tmp_path / "logs" / "train" / "multiruns" / "2026-12-01_10-00-00"
    sweep.mkdir(parents=True)
    command = ["experiment=demo", "model=resnet18,squeezenet", "trainer.max_epochs=1,2", LONG, "paths.log_dir=/x"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": command}}}))
    job = ["experiment=demo", "model=squeezenet", "trainer.max_epochs=1", LONG, "paths.log_dir=/x"]
    identity = apply_sweep_identity(_as_job(cfg, sweep, job))
    assert identity is not None
    assert cfg.logger.wandb.group == "train/multiruns/2026-12-01_10-00-00"
    assert cfg.logger.wandb.name == "model=squeezenet trainer.max_epochs=1"
    tags = list(cfg.logger.wandb.tags)
    assert tags[:2] == ["demo", "synthetic"] and "experiment=demo" in tags  # experiment tags + shared overrides
    assert not any(t.startswith(("model=", "trainer.", "paths.")) for t in tags)
    long_tag = next(t for t in tags if t.startswith("data.manifest="))
    assert len(long_tag) <= 64 and long_tag.endswith("synthetic/manifest.csv")  # W&B's limit, key and tail kept


def test_optuna_trial_named_by_the_searched_params(compose_cfg, tmp_path: Path) -> None:
    """The Optuna sweeper writes no multirun.yaml: its search space names the trial."""
    cfg = compose_cfg(["experiment=demo", "logger=wandb"])
    sweep = tmp_path / "logs" / "train" / "multiruns" / "optuna"
    job = ["experiment=demo", "model.optimizer.lr=0.0003", "data.batch_size=16"]
    apply_sweep_identity(_as_job(cfg, sweep, job, {"model.optimizer.lr": "interval(1e-6, 1e-2)",
                                                   "data.batch_size": "choice(8, 16)"}))
    assert cfg.logger.wandb.name == "model.optimizer.lr=0.0003 data.batch_size=16"
    assert "experiment=demo" in cfg.logger.wandb.tags
    # a group the user names on the command line is kept
    with open_dict(cfg):
        cfg.logger.wandb.group = "my-search"
    apply_sweep_identity(_as_job(cfg, sweep, [*job, "logger.wandb.group=my-search"], {"data.batch_size": "x"}))
    assert cfg.logger.wandb.group == "my-search" and cfg.logger.wandb.name == "data.batch_size=16"


def test_eval_run_joins_the_evaluated_runs_group(compose_cfg) -> None:
    cfg = compose_cfg(["logger=wandb", "ckpt_path=x.ckpt", "+model.backbone.name=resnet18"],
                         config_name="eval")
    trained = {"logger": {"wandb": {"group": "train/multiruns/t", "name": "model=resnet18"}}}
    assert join_evaluated_run(cfg, SimpleNamespace(config=trained, wandb_id="abc123")) == "train/multiruns/t"
    assert (cfg.logger.wandb.group, cfg.logger.wandb.name, cfg.logger.wandb.job_type) == (
        "train/multiruns/t", "model=resnet18 (eval)", "eval")
    # a single run logged without a group: its W&B id is the group
    assert join_evaluated_run(cfg, SimpleNamespace(config={"logger": {"wandb": {"group": ""}}}, wandb_id="abc123")) == "abc123"
    # trained without W&B: nothing to join
    assert join_evaluated_run(cfg, SimpleNamespace(config={"logger": {"csv": {}}}, wandb_id=None)) is None
