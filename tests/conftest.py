"""Shared fixtures: Hydra configs composed against temporary folders, offline environment."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from stainfree.utils.env import configure_offline_environment  # noqa: E402

configure_offline_environment()
os.environ["WANDB_MODE"] = "offline"  # tests never log online, whatever the machine has

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402


def compose_config(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with all outputs and data under ``tmp_path``.

    Sets HydraConfig so ``${hydra:...}`` interpolations resolve as in a real run.
    """
    GlobalHydra.instance().clear()
    base = [
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=base + overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture
def shared_dir() -> Path:
    """../shared next to the repo (absent in a user's clone: tests using it skip)."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (only the project's own machines have it)")
    return SHARED
