"""How often does a checkpoint's OOD detector flag in- and out-of-distribution images?

    python benchmarks/ood_check.py --ckpt logs/train/runs/<run>/checkpoints/best.ckpt

Scores, with the same API predict.py uses (``stainfree.trust.scoring.score_image``), images of
these kinds and prints the flagged share per kind (and which checks fired):
- ``heldout``: fresh synthetic JIMT-1 frames from another seed (in distribution: should NOT be flagged)
- ``u2os``: the real U2OS celldeath fields (another microscope, cell line and bit depth)
- ``inverted``, ``blurred`` (Gaussian, ``--blur-sigma`` px), ``noise`` (Gaussian noise with each
  frame's own mean and standard deviation), ``downscaled`` (``--downscale`` x, area interpolation):
  made from the held-out frames.
The checkpoint must carry the ``stainfree.ood`` block (train.py writes it; for an older
checkpoint run eval.py and pass its ``calibrated.ckpt``). Results also go to ``--out``/ood_check.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

Kind = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _inverted(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (np.iinfo(raw.dtype).max - raw).astype(raw.dtype)


def _blurred(sigma: float) -> Kind:
    def blur(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        return cv2.GaussianBlur(raw, (0, 0), sigma)
    return blur


def _noise(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    info = np.iinfo(raw.dtype)
    noise = rng.normal(float(raw.mean()), float(raw.std()), raw.shape)
    return np.clip(noise, info.min, info.max).round().astype(raw.dtype)


def _downscaled(factor: int) -> Kind:
    def down(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = raw.shape
        return cv2.resize(raw, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    return down


def heldout_frames(out: Path, n_frames: int, seed: int) -> list[Path]:
    """Fresh synthetic frames (bright-field only are scored), generated once into ``out``."""
    from stainfree.data.jimt.manifest import load_manifest
    from stainfree.data.jimt.synthetic import generate_dataset

    manifest = out / "manifest.csv"
    if not manifest.is_file():
        generate_dataset(out, frames_notreat=n_frames, frames_doxo=0, seed=seed, examples_per_class=1, verbose=False)
    return [Path(p) for p in load_manifest(manifest)["bf_abs"]]


def images_by_kind(args: argparse.Namespace) -> Iterator[tuple[str, str, np.ndarray]]:
    """(kind, image name, raw array) for every image to score."""
    from stainfree.data.imageio import list_images, read_image

    frames = heldout_frames(Path(args.out) / f"heldout_seed{args.seed}", args.frames, args.seed)
    kinds: dict[str, Kind | None] = {"heldout": None, "inverted": _inverted, "blurred": _blurred(args.blur_sigma),
                                     "noise": _noise, "downscaled": _downscaled(args.downscale)}
    rng = np.random.default_rng(args.seed)
    for kind, make in kinds.items():
        for path in frames:
            raw = read_image(path, grey=True)
            yield kind, path.name, raw if make is None else make(raw, rng)
    u2os = Path(args.u2os)
    if u2os.is_dir():
        for path in list_images(u2os):
            yield "u2os", path.name, read_image(path, grey=True)
    else:
        print(f"note: {u2os} not found, the u2os kind is skipped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint with a stainfree.ood block")
    p.add_argument("--out", default="logs/ood_check", help="folder for the generated frames and ood_check.json")
    p.add_argument("--frames", type=int, default=12, help="held-out synthetic frames to generate")
    p.add_argument("--seed", type=int, default=7, help="seed of the held-out frames (the demo trains on seed 0)")
    p.add_argument("--u2os", default=str(ROOT.parent / "shared" / "data" / "celldeath-u2os" / "full"))
    p.add_argument("--blur-sigma", type=float, default=3.0, help="Gaussian blur sigma in pixels")
    p.add_argument("--downscale", type=int, default=4)
    args = p.parse_args(argv)

    import torch

    from stainfree.inference.predictor import load_model
    from stainfree.inference.tiling import build_tiler
    from stainfree.models.checkpoint import read_checkpoint_meta
    from stainfree.trust.scoring import OODScorer, score_image

    model, meta = load_model(read_checkpoint_meta(args.ckpt), torch.device("cpu"))
    if OODScorer.from_meta(meta) is None:
        print(f"error: {args.ckpt} has no OOD reference; train with the current train.py or pass the "
              "calibrated.ckpt that eval.py writes", file=sys.stderr)
        return 2
    tiler = build_tiler(meta["preprocess"])
    rows, start = [], time.time()
    for kind, name, raw in images_by_kind(args):
        verdict = score_image(meta, model, raw, tiler(raw))
        fired = [f.check for f in verdict.findings if f.flagged]
        rows.append(dict(kind=kind, image=name, ood_score=round(verdict.ood_score, 3), ood_flag=verdict.ood_flag,
                         checks=fired, severity={f.check: round(f.severity, 3) for f in verdict.findings},
                         ood_reason=verdict.ood_reason))
    summary = {}
    print(f"{'kind':<11} {'n':>3} {'flagged':>8}   checks that fired (images)")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        part = [r for r in rows if r["kind"] == kind]
        rate = float(np.mean([r["ood_flag"] for r in part]))
        fired = Counter(c for r in part for c in r["checks"])
        summary[kind] = dict(n=len(part), flagged=rate, checks=dict(fired))
        print(f"{kind:<11} {len(part):>3} {rate:>7.0%}   " + ", ".join(f"{c} {k}" for c, k in fired.most_common()))
    out = Path(args.out) / "ood_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(ckpt=str(args.ckpt), args=vars(args), summary=summary, images=rows), indent=1))
    print(f"{len(rows)} images in {time.time() - start:.0f} s; details in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
