"""Evaluate a checkpoint: `python eval.py ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt`.

Test metrics with the Brodersen 95% interval, per-patch predictions and the papers' figures
(ROC, confusion, PI scatter/histogram, t-SNE, Grad-CAM) in logs/eval/runs/<time>/eval/.
The task is stainfree.tasks.evaluate; see conf/eval.yaml for the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # a checkout works without `pip install -e`
from stainfree.utils.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli("stainfree.tasks.evaluate")
