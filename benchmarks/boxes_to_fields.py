"""Does a model trained on boxed cells give the right dead fraction on whole fields?

    python benchmarks/boxes_to_fields.py --out /tmp/boxes_bench [--epochs 15] [--min-r 0.9]

1. generates the synthetic boxed set (``stainfree.data.jimt.synthetic --export voc``, seed 42) and a
   held-out one (seed 7), each 12 + 12 frames with per-frame truth (``annotated/truth.csv``);
2. trains ``experiment=cells_from_boxes`` on the VOC boxes (group-aware splits, CPU);
3. runs ``predict.py`` with best.ckpt on the FULL frames of both sets;
4. prints Pearson r and the mean absolute error of images.csv's ``dead_fraction`` (cells counted,
   inference/cell_fraction) and of ``window_dead_fraction`` (dead / non-empty windows) against the
   true fraction, per set; writes ``boxes_to_fields.json``; exits 1 when the held-out r < ``--min-r``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
    return time.perf_counter() - start


def agreement(images_csv: Path, truth_csv: Path, column: str) -> dict[str, float]:
    """Pearson r, MAE and n frames of one images.csv column against the generator's truth."""
    from scipy.stats import pearsonr

    pred = pd.read_csv(images_csv)[["image", column]]
    truth = pd.read_csv(truth_csv)[["image", "dead_fraction"]].rename(columns={"dead_fraction": "truth"})
    both = truth.merge(pred, on="image").dropna()
    return {"r": float(pearsonr(both[column], both["truth"])[0]),
            "mae": float(np.abs(both[column] - both["truth"]).mean()), "n_frames": int(len(both))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--min-r", type=float, default=0.9)
    args = parser.parse_args()
    out = args.out.resolve()
    sets = {"training_set": (out / "boxes", 42), "heldout_seed7": (out / "heldout", 7)}
    for folder, seed in sets.values():
        if not (folder / "annotated" / "truth.csv").is_file():
            _run(["-m", "stainfree.data.jimt.synthetic", "--out", str(folder), "--frames-notreat", "12",
                  "--frames-doxo", "12", "--seed", str(seed), "--export", "voc"])
    boxes = sets["training_set"][0] / "annotated"
    train_s = _run(["train.py", "experiment=cells_from_boxes", f"data.annotations={boxes / 'voc'}",
                    f"data.images={boxes / 'images'}", "trainer=cpu", "logger=csv", f"trainer.max_epochs={args.epochs}",
                    f"paths.log_dir={out / 'logs'}", "hydra.run.dir=" + str(out / "logs" / "train_run")])
    ckpt = out / "logs" / "train_run" / "checkpoints" / "best.ckpt"
    result: dict = {"train_seconds": round(train_s, 1), "epochs": args.epochs, "ckpt": str(ckpt)}
    for name, (folder, _) in sets.items():
        pred = out / f"predict_{name}"
        seconds = _run(["predict.py", f"ckpt_path={ckpt}", f"input={folder / 'annotated' / 'images'}",
                        f"hydra.run.dir={pred}", "progress=false", "overlays=false"])
        truth = folder / "annotated" / "truth.csv"
        result[name] = {col: agreement(pred / "images.csv", truth, col)
                        for col in ("dead_fraction", "window_dead_fraction")}
        result[name]["predict_seconds"] = round(seconds, 1)
    (out / "boxes_to_fields.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["heldout_seed7"]["dead_fraction"]["r"] >= args.min_r else 1


if __name__ == "__main__":
    raise SystemExit(main())
