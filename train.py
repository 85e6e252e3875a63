"""Train a live/dead classifier: `python train.py experiment=doxo_inception -m model=resnet18,squeezenet`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without `pip install -e`

from stainfree.utils.cli import multirun_flag_first  # noqa: E402
from stainfree.utils.env import configure_offline_environment  # noqa: E402

configure_offline_environment()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stainfree.tasks.train import optimized_value, print_run_summary, train  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    print_run_summary(cfg, metrics)
    return optimized_value(cfg, metrics)


if __name__ == "__main__":
    multirun_flag_first()  # `python train.py experiment=x -m model=a,b` works as documented
    main()
