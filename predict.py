"""Predict live/dead on raw frames: `python predict.py ckpt_path=<run>/checkpoints/best.ckpt input=<folder|file>`.

Optional: `plate_map=plate.csv` (columns image, well, compound[, dose][, control]) for per-well
dead fractions with CIs, dose-response curves (IC50) and Z'. Outputs go to a fresh run folder
under logs/predict/runs/; see conf/predict.yaml for all options.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without `pip install -e`

from stainfree.utils.env import configure_offline_environment  # noqa: E402

configure_offline_environment()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from stainfree.inference.platemap import PlateMapError
    from stainfree.inference.predictor import PredictError, predict, resolve_device
    from stainfree.utils import runtime

    try:
        chosen = runtime.configure(cfg.get("runtime"), resolve_device(str(cfg.device)).type,
                                   data_workers=cfg.get("num_workers"))
        summary = predict(
            ckpt_path=cfg.ckpt_path,
            input=cfg.input,
            output_dir=cfg.paths.output_dir,
            plate_map=cfg.get("plate_map"),
            batch_size=int(cfg.batch_size),
            device=str(cfg.device),
            num_workers=chosen.workers,
            positive_class=cfg.get("positive_class"),
            overlays=bool(cfg.overlays),
            precision=str(cfg.precision),
            n_boot=int(cfg.n_boot),
            seed=int(cfg.seed),
            progress=bool(cfg.progress),
        )
    except (PredictError, PlateMapError, runtime.RuntimeSettingError) as exc:
        # a user-facing problem: one clear line and a non-zero exit, not a traceback
        print(f"predict: {exc}", file=sys.stderr)
        sys.exit(1)
    print(summary.report())


if __name__ == "__main__":
    main()
