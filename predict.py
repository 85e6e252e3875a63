"""Predict live/dead on raw frames: `python predict.py ckpt_path=<run>/checkpoints/best.ckpt input=<folder|file>`.

Optional: `plate_map=plate.csv` (columns image, well, compound[, dose][, control]) for per-well
dead fractions with CIs, dose-response curves (IC50) and Z'. Outputs go to a fresh run folder
under logs/predict/runs/. The task is stainfree.tasks.predict; see conf/predict.yaml for the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # a checkout works without `pip install -e`
from stainfree.utils.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli("stainfree.tasks.predict")
