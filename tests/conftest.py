"""Shared fixtures: Hydra configs composed against temporary folders, CLIs run in-process, offline environment."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # this checkout's code, whatever `pip install -e` points at

from stainfree.utils.env import configure_offline_environment  # noqa: E402

configure_offline_environment()
os.environ["WANDB_MODE"] = "offline"  # tests never log online, whatever the machine has

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict, read_write  # noqa: E402

ComposeConfig = Callable[..., DictConfig]


def _compose(tmp: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` as ``@hydra.main`` hands it to a task, all outputs and data under ``tmp``.

    HydraConfig holds the ``hydra`` node (so ``${hydra:...}`` resolves as in a real single run);
    the returned config has none, like a real task's.
    """
    GlobalHydra.instance().clear()
    run_dir = tmp / "run"
    base = [f"paths.data_dir={tmp / 'data'}", f"paths.log_dir={tmp / 'logs'}", f"hydra.run.dir={run_dir}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=base + overrides)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.hydra.mode = "RUN"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = str(run_dir)
    return cfg


@pytest.fixture(scope="session")
def compose_cfg_in() -> ComposeConfig:
    """``compose_cfg_in(folder, overrides, config_name="train")``, for fixtures wider than one test."""
    return _compose


@pytest.fixture
def compose_cfg(tmp_path: Path) -> ComposeConfig:
    """``compose_cfg(overrides, config_name="train")``: a task's config with everything under ``tmp_path``."""
    def compose_in_tmp(overrides: list[str], config_name: str = "train") -> DictConfig:
        return _compose(tmp_path, overrides, config_name)

    return compose_in_tmp


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., tuple[Any, str, str]]:
    """``cli(entry, prog, *args) -> (exit status, stdout, stderr)``: a CLI run in-process through run_cli.

    ``entry`` is what the script passes to run_cli (a module name or a callable); the environment,
    ``sys.argv`` and Hydra's global state are restored afterwards.
    """
    from stainfree.utils.cli import run_cli

    def run(entry: str | Callable[[], Any], prog: str, *args: str) -> tuple[Any, str, str]:
        monkeypatch.setattr(sys, "argv", [str(ROOT / prog), *args])
        monkeypatch.setenv("HYDRA_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR", "0"))  # restored at teardown
        GlobalHydra.instance().clear()
        capsys.readouterr()
        try:
            with pytest.raises(SystemExit) as stop:
                run_cli(entry)
        finally:
            GlobalHydra.instance().clear()
        out = capsys.readouterr()
        return stop.value.code, out.out, out.err

    return run


@pytest.fixture
def shared_dir() -> Path:
    """../shared next to the repo (absent in a user's clone: tests using it skip)."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (only the project's own machines have it)")
    return SHARED
